// The health endpoints, /metrics and HAProxy against a live three-node cluster (compiled agents,
// real PostgreSQL, loopback): the primary, a streaming standby, a standby lagging behind (WAL
// replay paused), a stopped PostgreSQL; then HAProxy configured from docs/haproxy.cfg.example
// follows a switchover on its write port.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { ROOT } from "../../scripts/build.ts";
import { freePort, pgBins, pgSkipReason } from "../helpers/pg.ts";
import { primaryTimeline } from "../helpers/cluster.ts";
import { Proc, run } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { HOST, http, settled, startLoopCluster, until, type LoopCluster, type LoopNode } from "./loopback.ts";
import { parseProm, sample } from "./prom.ts";

const haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => { try { readFileSync(p); return true; } catch { return false; } });
requireReal("api cluster e2e", pgSkipReason);

const LAG = 20 * 1024 * 1024;
/** From switchover answered to the write port reaching the new primary (HAProxy checks every 500 ms, fall 2 rise 1). */
const HAPROXY_FOLLOW_MS = 10_000;

let c: LoopCluster;
let primary: LoopNode;
let standbys: LoopNode[];
const code = async (n: LoopNode, path: string) => (await http(`${n.api}${path}`)).status;
const codes = async (n: LoopNode, paths: string[]) => Object.fromEntries(await Promise.all(paths.map(async (p) => [p, await code(n, p)] as const)));
const auth = () => ({ authorization: `Bearer ${c.token}`, "content-type": "application/json" });
const lagOf = async (n: LoopNode) => ((await http(`${n.api}/node`)).json() as { postgres: { lagBytes: number | null } }).postgres.lagBytes;
const metrics = async (n: LoopNode) => parseProm((await http(`${n.api}/metrics`)).body);

function pgCtl(n: LoopNode, ...args: string[]) {
  if (!pgBins) throw new Error("no PostgreSQL binaries");
  // cwd "/": the checkout may sit where postgres cannot enter (pg_ctl refuses to start there).
  return run(["runuser", "-u", "postgres", "--", join(pgBins.dir, "pg_ctl"), ...args, "-D", n.agent.dataDir], { timeoutMs: 60_000, cwd: "/" });
}

describe("health checks, metrics and HAProxy on a live cluster", () => {
  beforeAll(async () => {
    // Short loops: standbys see a new primary quickly; HAProxy's checks below are 500 ms apart.
    c = await startLoopCluster({ test: "api-cluster", size: 3, extra: "loop_ms = 250" });
    ({ primary, standbys } = await settled(c));
    console.log(`primary ${primary.name}, standbys ${standbys.map((s) => s.name).join(", ")}`);
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`api cluster e2e logs: ${c.dir}`);
  }, 60_000);

  const ALL = ["/primary", "/read-write", "/leader", "/replica", "/read-only", "/async", "/sync", "/health", "/liveness", "/readiness", "/replica?replication_state=streaming", "/replica?lag=16MB", "/replica?lag=1h", "/quorum", "/read-only-quorum"];

  test("primary and streaming standbys", async () => {
    expect(await codes(primary, ALL)).toEqual({
      "/primary": 200, "/read-write": 200, "/leader": 200, "/replica": 503, "/read-only": 200, "/async": 503, "/sync": 503,
      "/health": 200, "/liveness": 200, "/readiness": 200, "/replica?replication_state=streaming": 503, "/replica?lag=16MB": 503, "/replica?lag=1h": 503, "/quorum": 503, "/read-only-quorum": 200,
    });
    // Quorum commit (the default) makes both standbys synchronous candidates (sync_state quorum):
    // /sync 200, /async 503. Their sync state comes from the primary's report: allow a round for it.
    const want = {
      "/primary": 503, "/read-write": 503, "/leader": 503, "/replica": 200, "/read-only": 200, "/async": 503, "/sync": 200,
      "/health": 200, "/liveness": 200, "/readiness": 200, "/replica?replication_state=streaming": 200, "/replica?lag=16MB": 200, "/replica?lag=1h": 200, "/quorum": 200, "/read-only-quorum": 200,
    };
    for (const s of standbys) {
      let got = await codes(s, ALL);
      for (let i = 0; i < 40 && !Bun.deepEquals(got, want); i++) {
        await Bun.sleep(250);
        got = await codes(s, ALL);
      }
      expect(got).toEqual(want);
    }
  }, 30_000);

  test("metrics carry the known state", async () => {
    const tl = await primaryTimeline(primary);
    const node = (await http(`${primary.api}/node`)).json() as { election: { term: number }; node: { id: string } };
    const m = await metrics(primary);
    expect(sample(m, "pgherd_leading")).toBe(1);
    expect(sample(m, "pgherd_term")).toBe(node.election.term);
    expect(sample(m, "pgherd_postgres_role", { role: "primary" })).toBe(1);
    expect(sample(m, "pgherd_postgres_role", { role: "replica" })).toBe(0);
    expect(sample(m, "pgherd_postgres_up")).toBe(1);
    expect(sample(m, "pgherd_timeline")).toBe(tl);
    expect(sample(m, "pgherd_info", { node: primary.name, node_id: node.node.id })).toBe(1);
    expect(sample(m, "pgherd_leaderships_won_total")).toBeGreaterThanOrEqual(1);
    expect(sample(m, "pgherd_leader_changes_total")).toBeGreaterThanOrEqual(1);
    expect(sample(m, "pgherd_fencing_events_total")).toBe(0);
    expect(sample(m, "pgherd_failovers_total")).toBe(0);
    expect(sample(m, "pgherd_loops_total")).toBeGreaterThan(0);
    expect(sample(m, "pgherd_loop_duration_seconds")).toBeGreaterThanOrEqual(0);
    expect(sample(m, "pgherd_peers_connected")).toBe(2);
    expect(sample(m, "pgherd_beacon_rejects_total", { reason: "self" })).toBeGreaterThan(0);
    const [lsn] = await primary.query("select pg_current_wal_lsn() - '0/0' as b");
    expect(sample(m, "pgherd_wal_position_bytes")).toBeLessThanOrEqual(Number(lsn!.b));
    expect(sample(m, "pgherd_wal_position_bytes")).toBeGreaterThan(0);
    for (const s of standbys) {
      expect(sample(m, "pgherd_replication_lag_bytes", { standby: s.name })).toBeGreaterThanOrEqual(0);
      expect(sample(m, "pgherd_replication_lag_seconds", { standby: s.name })).toBeGreaterThanOrEqual(0);
      expect(sample(m, "pgherd_member_up", { member: s.name, role: "standby", state: "streaming" })).toBe(1);
    }
    expect(sample(m, "pgherd_member_up", { member: primary.name, role: "primary" })).toBe(1);
    // A standby exports its own facts and leaves the cluster-wide series to the leader.
    const sm = await metrics(standbys[0]!);
    expect(sample(sm, "pgherd_leading")).toBe(0);
    expect(sample(sm, "pgherd_postgres_role", { role: "replica" })).toBe(1);
    expect(sample(sm, "pgherd_postgres_streaming")).toBe(1);
    expect(sample(sm, "pgherd_timeline")).toBe(tl);
    expect(sample(sm, "pgherd_standby_lag_bytes")).toBeGreaterThanOrEqual(0);
    expect(sm.has("pgherd_replication_lag_bytes")).toBe(false);
  }, 30_000);

  test("a lagging standby (replay paused, 20+ MB behind) fails ?lag=16MB and passes ?lag=1GB", async () => {
    const [lagging, other] = standbys as [LoopNode, LoopNode];
    await lagging.query("select pg_wal_replay_pause()");
    try {
      await primary.query("create table api_lag as select repeat('x', 1000) as pad from generate_series(1, 30000)", 60_000);
      await until(async () => ((await lagOf(lagging)) ?? 0) > LAG, `${lagging.name} to report more than ${LAG} bytes of lag`, 60_000);
      expect(await codes(lagging, ["/replica", "/replica?lag=16MB", "/replica?lag=1GB", "/async?lag=16MB", "/read-only?lag=16MB", "/replica?replication_state=streaming", "/readiness", "/readiness?lag=1GB"])).toEqual({
        "/replica": 200, "/replica?lag=16MB": 503, "/replica?lag=1GB": 200, "/async?lag=16MB": 503, "/read-only?lag=16MB": 503,
        "/replica?replication_state=streaming": 200, "/readiness": 503, "/readiness?lag=1GB": 200,
      });
      // Received (written) but not replayed: ready by the write position once the receiver caught up.
      await until(async () => (await code(lagging, "/readiness?mode=write")) === 200, `${lagging.name} ready by its receive position`);
      expect(await code(lagging, "/readiness")).toBe(503);
      expect((await http(`${lagging.api}/replica?lag=16MB`)).json()).toMatchObject({ ok: false, reason: expect.stringMatching(/^replication lag \d+ bytes exceeds 16777216$/) });
      await until(async () => (await code(other, "/replica?lag=16MB")) === 200, `${other.name} (replaying) within 16MB`);
      await until(async () => sample(await metrics(primary), "pgherd_replication_lag_bytes", { standby: lagging.name }) > LAG, "the leader's metrics to show the lag");
    } finally {
      await lagging.query("select pg_wal_replay_resume()");
    }
    await until(async () => (await code(lagging, "/replica?lag=1MB")) === 200, `${lagging.name} to catch up`, 60_000);
  }, 180_000);

  test("a stopped PostgreSQL (cluster paused so the agent leaves it stopped)", async () => {
    const s = standbys[0]!;
    const paused = await http(`${primary.api}/pause`, { method: "POST", body: "{}", headers: auth() });
    expect(paused.status).toBe(200);
    await until(async () => s.agent.linesMatching(/the leader paused the cluster/).length > 0, `${s.name} to adopt the pause`);
    try {
      const r = await pgCtl(s, "stop", "-m", "fast", "-w", "-t", "30");
      expect(r.code).toBe(0);
      await until(async () => ((await http(`${s.api}/health`)).json() as { state: string }).state === "stopped", `${s.name}'s agent to see PostgreSQL stopped`);
      expect(await codes(s, ["/health", "/replica", "/read-only", "/async", "/primary", "/readiness", "/replica?lag=1GB", "/liveness"])).toEqual({
        "/health": 503, "/replica": 503, "/read-only": 503, "/async": 503, "/primary": 503, "/readiness": 503, "/replica?lag=1GB": 503, "/liveness": 200,
      });
      expect((await http(`${s.api}/health`)).json()).toMatchObject({ ok: false, state: "stopped", reason: "PostgreSQL is not running" });
      expect(sample(await metrics(s), "pgherd_postgres_up")).toBe(0);
      // Never more than one node down: a restart of the other standby, asked on it directly (not
      // through `pgherd restart`'s plan), is refused by the leader while this one is stopped.
      const other = standbys[1]!;
      const refused = await http(`${other.api}/node/restart`, { method: "POST", body: "{}", headers: auth(), timeoutMs: 30_000 });
      expect(refused.status).toBe(409);
      expect((refused.json() as { message: string }).message).toMatch(new RegExp(`${s.name} is \\w+, stopped: restarting ${other.name} now would take a second node down`));
    } finally {
      expect((await http(`${primary.api}/resume`, { method: "POST", body: "{}", headers: auth() })).status).toBe(200);
    }
    await until(async () => (await code(s, "/replica?replication_state=streaming")) === 200, `${s.name} to stream again after resume`, 60_000);
  }, 180_000);

  describe("HAProxy from docs/haproxy.cfg.example", () => {
    let hap: Proc | undefined;
    let writePort = 0;
    let readPort = 0;

    beforeAll(() => requireReal("HAProxy test", haproxy ? null : "haproxy is not installed (/usr/sbin/haproxy)"));

    afterAll(async () => {
      await hap?.stop();
    });

    /** Which server answers on `port`: its PostgreSQL port and whether it is in recovery. */
    async function whoAnswers(port: number): Promise<{ port: number; recovery: boolean }> {
      const secrets = JSON.parse(readFileSync(join(primary.agent.stateDir, "cluster.json"), "utf8")) as { monitorPassword: string };
      // pgherd's roles connect only over TLS (hostssl): verified against the cluster CA.
      const ca = readFileSync(`${primary.agent.dataDir}.tls/ca.crt`, "utf8");
      const sql = postgres({ host: HOST, port, user: "pgherd_monitor", pass: secrets.monitorPassword, database: "postgres", ssl: { ca }, max: 1, connect_timeout: 3, idle_timeout: 0, fetch_types: false, prepare: false, onnotice: () => {} });
      try {
        const rows = await Promise.race([sql`select inet_server_port() as port, pg_is_in_recovery() as rec`, Bun.sleep(5000).then(() => { throw new Error("no answer in 5 s"); })]);
        return { port: Number(rows[0]!.port), recovery: rows[0]!.rec as boolean };
      } finally {
        await sql.end({ timeout: 0 }).catch(() => {});
      }
    }

    test("the write port reaches the primary, and the new primary within a bound after a switchover", async () => {
      writePort = await freePort(c.nodes.flatMap((n) => [n.apiPort, n.pgPort]));
      readPort = await freePort([writePort, ...c.nodes.flatMap((n) => [n.apiPort, n.pgPort])]);
      const cfgFile = join(c.dir, "haproxy.cfg");
      writeFileSync(cfgFile, renderHaproxy(readFileSync(join(ROOT, "docs", "haproxy.cfg.example"), "utf8"), { write: writePort, read: readPort }, c.nodes));
      const check = await run([haproxy!, "-c", "-f", cfgFile], { timeoutMs: 10_000 });
      expect(`${check.code} ${check.stderr}${check.stdout}`).toStartWith("0 ");
      hap = new Proc([haproxy!, "-db", "-f", cfgFile], { logFile: join(c.dir, "haproxy.log") });

      const before = await until(async () => {
        const w = await whoAnswers(writePort);
        return w.port === primary.pgPort ? w : undefined;
      }, "HAProxy's write port to reach the primary", 20_000);
      expect(before.recovery).toBe(false);
      // The read backend falls back to the primary while no standby passes /replica (e.g. one still
      // re-attaching after the previous test): wait for a standby to take the reads.
      const r = await until(async () => {
        const w = await whoAnswers(readPort);
        return w.recovery ? w : undefined;
      }, "HAProxy's read port to reach a standby", 30_000);
      expect(r.recovery).toBe(true);
      expect(standbys.map((s) => s.pgPort)).toContain(r.port);

      const target = standbys[1]!;
      const sw = await http(`${standbys[0]!.api}/switchover`, { method: "POST", body: JSON.stringify({ to: target.name }), headers: auth(), timeoutMs: 60_000 });
      expect(`${sw.status} ${sw.body}`).toStartWith("200 ");
      const t0 = performance.now();
      const after = await until(async () => {
        const w = await whoAnswers(writePort);
        return w.port === target.pgPort && !w.recovery ? w : undefined;
      }, `HAProxy's write port to reach the new primary ${target.name}`, HAPROXY_FOLLOW_MS);
      const ms = Math.round(performance.now() - t0);
      console.log(`HAProxy write port reached the new primary ${target.name} ${ms} ms after the switchover answered`);
      expect(after.port).toBe(target.pgPort);
      expect(await code(target, "/primary")).toBe(200);
      expect(await code(primary, "/primary")).toBe(503);
      const m = await metrics(target);
      expect(sample(m, "pgherd_leading")).toBe(1);
      expect(sample(m, "pgherd_postgres_role", { role: "primary" })).toBe(1);
      const history = (await http(`${target.api}/history`)).json() as { kind: string }[];
      expect(history.some((h) => h.kind === "switchover")).toBe(true);
    }, 120_000);
  });
});

/**
 * The example with its listen addresses and server lists replaced by this cluster's: every
 * other line (checks, timeouts, on-marked-down) is used exactly as documented.
 */
function renderHaproxy(example: string, ports: { write: number; read: number }, nodes: LoopNode[]): string {
  let section = "";
  let serversOf = "";
  const out: string[] = [];
  for (const line of example.split("\n")) {
    const t = line.trim();
    if (/^(global|defaults|listen|frontend|backend)\b/.test(t)) section = t;
    if (section === "listen stats") continue; // the stats page: not needed here
    if (/^server\s/.test(t)) {
      if (serversOf !== section) {
        serversOf = section;
        const opts = t.split(/\s+/).slice(3).filter((x, i, a) => x !== "port" && a[i - 1] !== "port").join(" ");
        for (const n of nodes) out.push(`    server ${n.name} ${HOST}:${n.pgPort} ${opts} port ${n.apiPort}`);
      }
      continue;
    }
    if (/^bind\s/.test(t)) {
      const port = section.includes("write") ? ports.write : section.includes("read") ? ports.read : null;
      if (port === null) throw new Error(`haproxy example: a bind in ${section}, which is neither the write nor the read section`);
      out.push(`    bind ${HOST}:${port}`);
      continue;
    }
    out.push(line);
  }
  return out.join("\n");
}
