// The cluster-wide configuration on three namespace hosts (compiled agents, real PostgreSQL):
// `config set` of a parameter reaches every node without a restart; `config edit` with a scripted
// $EDITOR applies a valid change and refuses an invalid one naming the key (nothing changes); an
// [[access]] rule set cluster-wide lets a client from h1 log in on every node and removing it
// locks the client out again; a node whose agent was stopped during a change gets it on return,
// and a value of its own pgherd.toml that differs is reported as a conflict, not applied.
import { expect, test } from "bun:test";
import { appendFileSync, chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import type { ClusterNode, PgCluster } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { pgBins } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { pgherd, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

const PASSWORD = "app-password-for-config-cluster";

interface Shown { dynamic: { cluster: { version: number; settings: { postgres: { parameters: Record<string, unknown> } } } | null; conflicts: unknown[] } }

async function shown(n: ClusterNode): Promise<Shown> {
  const r = await pgherd(n, ["config", "show", "--json"]);
  if (r.code !== 0) throw new Error(`config show on ${n.name}: ${r.text}`);
  return JSON.parse(r.stdout) as Shown;
}

const version = async (n: ClusterNode) => (await shown(n)).dynamic.cluster?.version ?? 0;

async function setting(n: ClusterNode, name: string): Promise<string> {
  return String((await n.query(`select current_setting('${name}') as v`))[0]?.v);
}

const startTime = async (n: ClusterNode) => String((await n.query("select pg_postmaster_start_time()::text as v"))[0]?.v);

/** Every node shows `value` for work_mem (PostgreSQL reloaded by its agent). */
async function workMemEverywhere(c: PgCluster, value: string, nodes = c.nodes): Promise<void> {
  for (const n of nodes) await waitFor(async () => (await setting(n, "work_mem")) === value, { timeoutMs: 15_000, intervalMs: 100, what: `work_mem = ${value} on ${n.name}` });
}

/** An $EDITOR: a shell script that rewrites the file it is given with `sed` (the expression given). */
function editor(c: PgCluster, name: string, sedExpr: string): string {
  const path = join(c.scratch, `${name}.sh`);
  writeFileSync(path, `#!/bin/sh\nexec sed -i '${sedExpr}' "$1"\n`);
  chmodSync(path, 0o755);
  return path;
}

async function edit(n: ClusterNode, script: string, args: string[], input?: string) {
  const r = await n.host.exec([BINARY, "config", "edit", ...args, "--config", n.configPath], { env: { EDITOR: script, VISUAL: script }, input, timeoutMs: 60_000 });
  return { ...r, text: `${r.stdout}${r.stderr}`.trim() };
}

/** psql from h1's namespace to `n` as app (password from a 0600 passfile): ok, or the server's refusal. */
async function login(from: ClusterNode, n: ClusterNode, passfile: string): Promise<{ ok: boolean; err: string }> {
  const r = await from.host.exec(["env", `PGPASSFILE=${passfile}`, join(pgBins!.dir, "psql"), `postgresql://app@${n.host.ip}:5432/postgres?connect_timeout=3`, "-XAtc", "select 1"], { timeoutMs: 15_000 });
  return { ok: r.code === 0, err: r.stderr.trim() };
}

describeCluster("cluster-wide configuration", {
  start: async () => {
    const x = await startFailoverCluster("config-cluster", "cfgc");
    return { ...x, passfile: "" };
  },
  ready: async (fx) => {
    // Version 1 is made by the leader from its pgherd.toml a few seconds after it leads.
    for (const n of fx.c.nodes) await waitFor(async () => (await version(n)) >= 1, { timeoutMs: 30_000, intervalMs: 250, what: `${n.name} to store version 1` });
    fx.passfile = join(fx.c.scratch, "client.pgpass");
    writeFileSync(fx.passfile, `*:*:*:app:${PASSWORD}\n`, { mode: 0o600 });
  },
  startMs: 180_000,
}, (fx) => {
  test("config set postgres.parameters.work_mem=64MB reaches every node without a restart", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const h = await waitReplicating(c, 60_000);
    const started = await Promise.all(c.nodes.map(startTime));
    const before = await version(h.standbys[0]!);
    // On a standby's host: the change is forwarded to the leader.
    const r = await pgherd(h.standbys[0]!, ["config", "set", "postgres.parameters.work_mem=64MB"]);
    console.log(`config set: exit ${r.code}: ${r.text}`);
    expect(r.code).toBe(0);
    expect(r.text).toContain(`cluster configuration version ${before + 1}: postgres.parameters.work_mem`);
    await workMemEverywhere(c, "64MB");
    expect(await Promise.all(c.nodes.map(startTime))).toEqual(started); // reloaded, not restarted
    for (const n of c.nodes) expect(await version(n)).toBe(before + 1);
    const text = (await pgherd(h.primary, ["config", "show"])).stdout;
    expect(text).toContain(`# cluster-wide configuration: version ${before + 1}`);
    expect(text).toContain('work_mem = "64MB"');
    // A stale base version is refused (compare-and-set); history names the version.
    const hist = (await pgherd(h.primary, ["cluster", "history", "--json"])).stdout;
    expect(hist).toContain(`cluster configuration version ${before + 1} (based on ${before}): postgres.parameters.work_mem`);
    // A name or value the leader's PostgreSQL refuses is refused in its words, and nothing changes
    // (accepted, every node logged it at the reload and failed at its next start).
    for (const [set, said] of [["postgres.parameters.work_mme=64MB", "unrecognized configuration parameter"], ["postgres.parameters.max_connections=lots", "invalid value for parameter"]] as const) {
      const bad = await pgherd(h.standbys[0]!, ["config", "set", set]);
      console.log(`config set ${set}: exit ${bad.code}: ${bad.text}`);
      expect(bad.code).not.toBe(0);
      expect(bad.text).toContain("PostgreSQL refuses them");
      expect(bad.text).toContain(said);
    }
    for (const n of c.nodes) expect(await version(n)).toBe(before + 1);
  }), 90_000);

  test("config edit: a valid edit applies after the diff; an invalid one names the key and changes nothing", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const n = c.nodes[0]!;
    const v0 = await version(n);
    const ok = await edit(n, editor(c, "valid", 's/^work_mem = .*/work_mem = "32MB"/'), ["--yes"]);
    console.log(`config edit (valid): exit ${ok.code}: ${ok.text}`);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('- postgres.parameters.work_mem = "64MB"\n+ postgres.parameters.work_mem = "32MB"');
    await workMemEverywhere(c, "32MB");
    expect(await version(n)).toBe(v0 + 1);

    const bad = await edit(n, editor(c, "invalid", 's/^work_mem = .*/work_mem = "16MB"\\nport = 6543/'), ["--yes"]);
    console.log(`config edit (invalid): exit ${bad.code}: ${bad.text}`);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('postgres.parameters "port" is managed by pgherd');
    expect(bad.stderr).toContain("nothing changed");
    // Declined at the prompt: nothing changes either.
    const no = await edit(n, editor(c, "declined", 's/^work_mem = .*/work_mem = "16MB"/'), [], "n\n");
    expect(no.code).toBe(1);
    expect(no.stdout).toContain("Apply this as version");
    expect(await version(n)).toBe(v0 + 1);
    for (const x of c.nodes) expect(await setting(x, "work_mem")).toBe("32MB");
  }), 90_000);

  test("an [[access]] rule set cluster-wide lets a client from h1 in on every node; removing it locks it out", () => fx.c.diagnose(async () => {
    const { c, passfile } = fx;
    const h = await waitReplicating(c, 60_000);
    const client = c.nodes[0]!;
    const pw = await h.primary.host.exec([BINARY, "passwd", "app", "--create", "--config", h.primary.configPath], { input: `${PASSWORD}\n` });
    expect(`${pw.stdout}${pw.stderr}`).toContain("created role app");
    for (const n of c.nodes) expect((await login(client, n, passfile)).err).toContain("no pg_hba.conf entry");
    const rule = JSON.stringify([{ database: "postgres", user: "app", address: `${client.host.ip}/32` }]);
    const set = await pgherd(h.standbys[1]!, ["config", "set", `access=${rule}`]);
    expect(set.code).toBe(0);
    for (const n of c.nodes) await waitFor(async () => (await login(client, n, passfile)).ok, { timeoutMs: 15_000, intervalMs: 200, what: `app to log in on ${n.name}` });
    expect((await pgherd(h.primary, ["config", "set", "access=[]"])).code).toBe(0);
    for (const n of c.nodes) await waitFor(async () => (await login(client, n, passfile)).err.includes("no pg_hba.conf entry"), { timeoutMs: 15_000, intervalMs: 200, what: `app locked out of ${n.name}` });
  }), 90_000);

  test("a node whose agent was stopped during a change gets the new version when it comes back; its own differing value is a conflict", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const h = await waitReplicating(c, 60_000);
    const away = h.standbys[0]!;
    await away.stopAgent();
    try {
      const r = await pgherd(h.primary, ["config", "set", "postgres.parameters.work_mem=48MB", "postgres.parameters.maintenance_work_mem=96MB"]);
      console.log(`config set while ${away.name}'s agent is stopped: exit ${r.code}: ${r.text}`);
      expect(r.code).toBe(0);
      await workMemEverywhere(c, "48MB", c.nodes.filter((n) => n !== away));
      expect(await setting(away, "work_mem")).toBe("32MB"); // its PostgreSQL runs on, without the change
      // Meanwhile its pgherd.toml gets a value of its own: reported as a conflict, not applied.
      appendFileSync(away.configPath, `\n[postgres.parameters]\nwork_mem = "1MB"\n`);
    } finally {
      await away.start();
    }
    await workMemEverywhere(c, "48MB", [away]);
    const conflicts = (await shown(away)).dynamic.conflicts;
    expect(conflicts).toEqual([{ key: "postgres.parameters.work_mem", local: '"1MB"', cluster: '"48MB"' }]);
    expect((await pgherd(away, ["config", "show"])).stdout).toContain('# CONFLICT postgres.parameters.work_mem: pgherd.toml says "1MB", the cluster says "48MB"');
    expect(away.lines(/pgherd.toml conflicts with the cluster-wide configuration: postgres.parameters.work_mem/, away.runs.length - 1).length).toBeGreaterThan(0);
    expect(await setting(away, "maintenance_work_mem")).toBe("96MB");
    expect(await version(away)).toBe(await version(h.primary));
    expect(away.lines(/cluster-wide configuration is now version/, away.runs.length - 1).length).toBeGreaterThan(0);
  }), 120_000);
});
