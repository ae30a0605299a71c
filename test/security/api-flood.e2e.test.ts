// Issue 10 finding 5 on a live cluster: 2,000 slow (slowloris) connections to a standby's agent API
// with the agent's descriptor limit at 1024, the setting where commit 0e501cd got EMFILE in every
// monitoring round. While they are held, rows written on the primary must show up in the leader's
// view of the flooded standby (its agent keeps probing PostgreSQL and reporting), the agent logs no
// EMFILE and holds a bounded number of descriptors.
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import type { ClusterNode } from "../helpers/cluster.ts";
import { PgCluster, poll } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { mustRun, type Proc } from "../helpers/proc.ts";

const API_PORT = 7402; // the default api.listen, 127.0.0.1 of the node's namespace
const SLOW_CONNECTIONS = 2000;
const ROUNDS = 5;

// Opens `n` connections from 3 loopback addresses and sends each an unfinished request; reports progress.
const SLOW = `
const net = require("node:net");
const [port, n] = process.argv.slice(-2).map(Number);
let connected = 0, closed = 0;
for (let i = 0; i < n; i++) {
  const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0." + (2 + (i % 3)) });
  s.on("error", () => {});
  s.on("connect", () => { connected++; s.write("GET /node HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"); });
  s.on("close", () => closed++);
}
setInterval(() => console.log("connected " + connected + " closed " + closed), 200);
`;

/** "X/Y" LSNs as numbers (64-bit: BigInt). */
const lsn = (s: string) => { const [hi, lo] = s.split("/"); return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`); };

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

describeCluster("2,000 slow API connections on a live standby", {
  start: async () => {
    const c = await PgCluster.create({ test: "security-api-flood", tag: "secapi", nodes: 3 });
    await c.start();
    await c.waitHealthy(120_000);
    return { c, slow: undefined as Proc | undefined };
  },
  beforeDestroy: async (fx) => { await fx.slow?.stop(2_000); },
}, (fx) => {
  test("monitoring rounds keep running: the flooded standby's replay position keeps reaching the leader", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const { primary, standbys } = await c.waitHealthy(30_000);
    const victim = standbys[0]!;
    const viewer: ClusterNode = primary;
    const pid = victim.agent!.pid;
    // As the agent's own user: root here may lack CAP_SYS_RESOURCE, which changing another user's limits takes.
    await mustRun(["prlimit", `--pid=${pid}`, "--nofile=1024:1024"], { user: PG_OS_USER });
    const mark = victim.mark();
    const before = fdCount(pid);
    await primary.query("create table api_flood (id int)");

    fx.slow = victim.host.spawn([process.execPath, "-e", SLOW, "--", String(API_PORT), String(SLOW_CONNECTIONS)]);
    const progress = () => fx.slow!.lines.at(-1) ?? "";
    await poll(async () => Number(/connected (\d+)/.exec(progress())?.[1] ?? 0) >= 1000 || undefined, { timeoutMs: 20_000, intervalMs: 100, what: "1,000 slow connections" });
    let most = 0;
    const rounds: number[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      const t0 = performance.now();
      const [row] = await primary.query(`insert into api_flood values (${i}); select pg_current_wal_lsn()::text as lsn`).then((r) => (r as unknown as Record<string, unknown>[][])[1] ?? []);
      const want = lsn(String(row?.lsn));
      await poll(async () => {
        most = Math.max(most, fdCount(pid));
        const m = (await viewer.clusterLs()).view.members.find((x) => x.name === victim.name);
        if (!m?.lsn || m.state !== "streaming") throw new Error(`${victim.name} in the leader's view: ${JSON.stringify(m)}`);
        return lsn(m.lsn) >= want || undefined;
      }, { timeoutMs: 15_000, intervalMs: 200, what: `${victim.name}'s reported position to reach ${row?.lsn}` });
      rounds.push(performance.now() - t0);
    }
    console.log(`slow clients: ${progress()}; agent descriptors ${before} before, at most ${most} during (limit 1024); ` +
      `write → reported on ${victim.name} in ${rounds.map((ms) => `${Math.round(ms)} ms`).join(", ")}`);
    expect(victim.lines(/EMFILE|too many open files/i, mark)).toEqual([]);
    expect(most).toBeLessThan(1024);
    expect(victim.agent!.exited).toBe(false);
  }), 180_000);
});
