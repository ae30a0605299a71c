// The cluster's shared state in etcd, under a three-node PostgreSQL cluster on the etcd backend:
// after `pgherd pause`, `config set` and a switchover the keys `flags`, `config` and `history` under
// <prefix>/<cluster>/ hold what was done (read with etcdctl, JSON that validates); a change based on a
// version someone else replaced meanwhile is refused (409, nothing stored); a value edited by hand
// that does not validate is logged and ignored by every agent, and the leader's next write replaces it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { BINARY, ensureBuilt } from "../../scripts/build.ts";
import { dynamicDoc } from "../../src/config/schema-dynamic.ts";
import type { Config } from "../../src/config/schema.ts";
import { SharedFlagsSchema } from "../../src/agent/flags.ts";
import { StoredHistorySchema } from "../../src/agent/history.ts";
import { useBackend } from "../helpers/backend.ts";
import { type ClusterNode, clusterSkipReason, type PgCluster } from "../helpers/cluster.ts";
import { etcdSkipReason } from "../helpers/etcd.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { API_TOKEN, pgherd, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

requireReal("cluster state in etcd", clusterSkipReason() ?? etcdSkipReason());
describe("cluster state in etcd [etcd]", () => {
  let c: PgCluster | undefined;
  let cfg: Config;
  let etcdHost: Host;
  let root = "";

  beforeAll(async () => {
    useBackend("etcd");
    ensureBuilt();
    ({ c, cfg } = await startFailoverCluster("etcd-state-keys", "estate"));
    etcdHost = c.lab.hosts.find((h) => !c!.nodes.some((n) => n.host === h))!;
    root = `${cfg.consensus.prefix.replace(/\/+$/, "")}/${cfg.cluster}/`;
  }, 150_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`logs: ${c.artifacts}`);
    useBackend(null);
  }, 120_000);

  /** Every key under the cluster's prefix, as etcdctl prints them (key line, value line). */
  async function keys(): Promise<Map<string, string>> {
    const r = await etcdHost.exec(["etcdctl", `--endpoints=http://${etcdHost.ip}:2379`, "get", "--prefix", root], { timeoutMs: 10_000, env: { ETCDCTL_API: "3" } });
    if (r.code !== 0) throw new Error(`etcdctl get: ${r.stderr}`);
    const lines = r.stdout.split("\n");
    const out = new Map<string, string>();
    for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i]!.slice(root.length), lines[i + 1]!);
    return out;
  }

  async function put(key: string, value: string): Promise<void> {
    const r = await etcdHost.exec(["etcdctl", `--endpoints=http://${etcdHost.ip}:2379`, "put", `${root}${key}`, value], { timeoutMs: 10_000, env: { ETCDCTL_API: "3" } });
    if (r.code !== 0) throw new Error(`etcdctl put: ${r.stderr}`);
  }

  /** The maintenance flag a node's agent shows (`pgherd status --json`). */
  async function paused(n: ClusterNode): Promise<boolean> {
    const r = await n.host.exec([BINARY, "status", "--config", n.configPath, "--json"], { timeoutMs: 10_000 });
    return z.object({ paused: z.boolean() }).parse(JSON.parse(r.stdout)).paused;
  }

  const flags = async () => SharedFlagsSchema.parse(JSON.parse((await keys()).get("flags") ?? "null"));
  const config = async () => dynamicDoc.parse(JSON.parse((await keys()).get("config") ?? "null"));
  const history = async () => StoredHistorySchema.parse(JSON.parse((await keys()).get("history") ?? "null"));
  const ok = (r: { code: number; text: string }, what: string) => {
    if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.text}`);
    return r.text;
  };

  test("pause, config set and a switchover are stored in etcd; every node follows the keys", () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    // Version 1 of the configuration is made by the first leader and stored in etcd.
    await waitFor(async () => (await keys()).has("config"), { timeoutMs: 20_000, intervalMs: 250, what: "the config key" });
    const v0 = (await config()).version;

    ok(await pgherd(h.standbys[0]!, ["pause"]), "pause (forwarded to the leader)");
    expect(await flags()).toEqual({ paused: true, scheduled: null });
    for (const n of c!.nodes) await waitFor(async () => (await paused(n)), { timeoutMs: 5000, intervalMs: 100, what: `${n.name} paused` });
    ok(await pgherd(h.primary, ["resume"]), "resume");
    expect((await flags()).paused).toBe(false);

    console.log(ok(await pgherd(h.standbys[1]!, ["config", "set", "postgres.parameters.work_mem=40MB"]), "config set"));
    const doc = await config();
    expect(doc.version).toBe(v0 + 1);
    expect(doc.settings.postgres.parameters.work_mem).toBe("40MB");
    for (const n of c!.nodes) await waitFor(async () => String((await n.query("select current_setting('work_mem') as v"))[0]?.v) === "40MB", { timeoutMs: 15_000, intervalMs: 100, what: `work_mem on ${n.name}` });

    const target = h.standbys[0]!;
    ok(await pgherd(h.primary, ["switchover", "--to", target.name]), "switchover");
    await waitFor(async () => (await history()).some((e) => e.kind === "switchover" && e.newPrimary === target.name), { timeoutMs: 20_000, intervalMs: 250, what: "the switchover in the history key" });
    const all = await keys();
    console.log(`keys under ${root}: ${[...all.keys()].sort().join(", ")}`);
    for (const k of ["flags", "config", "history", "leader", "membership"]) expect(all.has(k)).toBe(true);
    // Every value but the two leader keys (a node id each) is JSON.
    for (const [k, v] of all) if (k !== "leader" && k !== "last-leader") expect(() => JSON.parse(v)).not.toThrow();
    const kinds = (await history()).map((e) => e.kind);
    for (const k of ["pause", "resume", "config", "switchover"] as const) expect(kinds).toContain(k);
    // Every node shows the history from etcd, also the one that was not involved.
    await waitFor(async () => (await pgherd(h.standbys[1]!, ["cluster", "history", "--json"])).stdout.includes("planned switchover"), { timeoutMs: 10_000, intervalMs: 250, what: "the history on a bystander" });
  }), 120_000);

  test("a change based on a version replaced meanwhile is refused with 409 and nothing is stored", () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    const n = h.standbys[0]!;
    const before = await config();
    // The operator's editor takes long; meanwhile someone else makes the next version.
    const script = join(c!.scratch, "slow-editor.sh");
    writeFileSync(script, `#!/bin/sh\n${BINARY} config set postgres.parameters.work_mem=24MB --config ${n.configPath} >/dev/null || exit 9\nexec sed -i 's/^work_mem = .*/work_mem = "8MB"/' "$1"\n`);
    chmodSync(script, 0o755);
    const r = await n.host.exec([BINARY, "config", "edit", "--yes", "--config", n.configPath], { env: { EDITOR: script, VISUAL: script }, timeoutMs: 60_000 });
    const text = `${r.stdout}${r.stderr}`;
    console.log(`config edit on a stale version: exit ${r.code}: ${text.trim()}`);
    expect(r.code).not.toBe(0);
    expect(text).toContain(`the change was based on version ${before.version}, the cluster is at version ${before.version + 1}`);
    // The same through the API: PATCH /config naming the replaced version answers 409.
    const patch = "const r = await fetch('http://127.0.0.1:7402/config', { method: 'PATCH', headers: { authorization: 'Bearer ' + process.env.T, 'content-type': 'application/json' }, body: process.env.B }); console.log(r.status, await r.text());";
    const api = await n.host.exec([process.execPath, "-e", patch], { env: { T: API_TOKEN, B: JSON.stringify({ base: before.version, set: { "postgres.parameters.work_mem": "8MB" } }) }, timeoutMs: 30_000 });
    console.log(`PATCH /config with base ${before.version}: ${api.stdout.trim()}`);
    expect(api.stdout.trim()).toStartWith("409 ");
    const after = await config();
    expect(after.version).toBe(before.version + 1);
    expect(after.settings.postgres.parameters.work_mem).toBe("24MB");
  }), 90_000);

  test("a value written by hand that does not validate is ignored; the leader's next write replaces it", () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    const marks = c!.nodes.map((n) => [n, n.mark()] as const);
    await put("flags", '{"paused":"yes"}');
    for (const [n, m] of marks) await waitFor(() => n.lines(/etcd: ignoring .*\/flags \(revision \d+\): paused/, m).length > 0, { timeoutMs: 5000, intervalMs: 100, what: `${n.name} to log the bad flags value` });
    for (const n of c!.nodes) expect(await paused(n)).toBe(false);
    ok(await pgherd(h.primary, ["pause"]), "pause over a bad value");
    expect(await flags()).toEqual({ paused: true, scheduled: null });
    ok(await pgherd(h.primary, ["resume"]), "resume");
    expect((await flags()).paused).toBe(false);
  }), 60_000);
});
