// A standby tagged nofailover is never a synchronous standby, and never keeps the cluster without
// a primary (docs/design.md, "Standbys that cannot lead"). Compiled agents on loopback, real
// PostgreSQL, quorum commit, three database nodes: n2 is tagged nofailover.
//  (a) once n2's state is known, the primary's synchronous_standby_names never names it;
//  (b) n2 is AHEAD of the other standby C when the primary dies (C's walreceiver frozen while the
//      primary commits with synchronous_commit = local, which n2 receives and C does not): C still
//      becomes the writable primary with every acknowledged write. n2 votes with its position
//      capped at the point from which the primary confirmed n2 no longer acknowledges commits.
//      Before this rule n2 refused C as behind it and could not stand itself: no primary.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { http, settled, startLoopCluster, until, type LoopCluster, type LoopNode } from "../api/loopback.ts";
import { pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("nofailover-sync e2e", pgSkipReason);

let c: LoopCluster;
const B = "n2";
const ACKED = 20;

const one = async (n: LoopNode, sql: string) => (await n.query(sql))[0] ?? {};
const idOf = async (n: LoopNode) => ((await http(`${n.api}/node`)).json() as { node: { id: string } }).node.id;
const syncNames = async (p: LoopNode) => String((await one(p, "SELECT current_setting('synchronous_standby_names') AS v")).v);
/** Bytes `a` is ahead of `b` (LSN text), computed by PostgreSQL on `on`. */
const diff = async (on: LoopNode, a: string, b: string) => Number((await one(on, `SELECT pg_wal_lsn_diff('${a}', '${b}')::bigint::text AS d`)).d);
const receiveLsn = async (n: LoopNode) => String((await one(n, "SELECT pg_last_wal_receive_lsn()::text AS l")).l);
const isPrimary = async (n: LoopNode) => (await http(`${n.api}/primary`, { timeoutMs: 2000 }).catch(() => null))?.status === 200;

function pidsOf(dataDir: string): number[] {
  const pm = Number(readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0]);
  const kids = Bun.spawnSync(["pgrep", "-P", String(pm)]).stdout.toString().split("\n").filter(Boolean).map(Number);
  return [pm, ...kids];
}

describe("a nofailover standby is never synchronous and never blocks failover", () => {
  beforeAll(async () => {
    c = await startLoopCluster({ test: "nofailover-sync", size: 3, nodeExtra: (name) => (name === B ? "[tags]\nnofailover = true" : "") });
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`nofailover-sync e2e logs: ${c.dir}`);
  }, 60_000);

  /** The cluster settled: primary, the nofailover standby, the other one, and their slot names. */
  const roles = async () => {
    const { primary, standbys } = await settled(c);
    const b = c.node(B);
    const other = standbys.find((n) => n !== b)!;
    return { primary, b, other, bSlot: `pgherd_${await idOf(b)}`, cSlot: `pgherd_${await idOf(other)}` };
  };

  test("(a) the primary's synchronous standbys are the promotable standby only", async () => {
    const { primary, b, other, cSlot } = await roles();
    console.log(`primary ${primary.name}, nofailover standby ${b.name}, promotable standby ${other.name} (${cSlot})`);
    await until(async () => (await syncNames(primary)) === `ANY 1 ("${cSlot}")`, `${primary.name} to run synchronous_standby_names = ANY 1 ("${cSlot}")`, 30_000);
    const states = await primary.query("SELECT application_name AS n, sync_state AS s FROM pg_stat_replication ORDER BY 1");
    expect(Object.fromEntries(states.map((r) => [String(r.n), String(r.s)]))).toEqual(Object.fromEntries([[cSlot, "quorum"], [`pgherd_${await idOf(b)}`, "async"]].sort()));
  }, 120_000);

  test("(b) the promotable standby is promoted with every acknowledged write although the nofailover one is ahead of it", async () => {
    const { primary, b, other, bSlot, cSlot } = await roles();
    await until(async () => /^ANY 1 \("pgherd_[0-9a-f]+"/.test(await syncNames(primary)), `${primary.name} to run synchronous standbys`, 30_000);
    const sampled: string[] = [];
    const sample = async () => sampled.push(await syncNames(primary));

    // Acknowledged writes: committed under the synchronous names (C held each).
    await primary.query("CREATE TABLE nf (id int PRIMARY KEY)");
    for (let i = 1; i <= ACKED; i++) await primary.query(`INSERT INTO nf VALUES (${i})`);
    await sample();

    // n2 learns where the primary confirmed it out of the synchronous names (its cap), and C has that much.
    const capLine = await until(async () => b.agent.linesMatching(/not a synchronous standby since \d+\/[0-9A-F]+\/[0-9A-F]+/).at(-1), `${b.name} to log its cap`, 20_000).catch(() => null);
    const cap = capLine?.match(/since \d+\/([0-9A-F]+\/[0-9A-F]+)/)?.[1] ?? null;
    console.log(`${b.name}: ${capLine ?? "no cap logged (a build without the rule)"}`);
    if (cap) await until(async () => (await diff(other, await receiveLsn(other), cap)) >= 0, `${other.name} to have received up to ${cap}`, 20_000);

    // Make n2 ahead of C: freeze C's walreceiver, commit locally (not acknowledged by any standby).
    const wr = Number((await one(other, "SELECT pid FROM pg_stat_wal_receiver")).pid);
    expect(wr).toBeGreaterThan(0);
    process.kill(wr, "SIGSTOP");
    try {
      // Far more WAL than the socket buffers hold: what the frozen walreceiver's socket buffered, C gets on SIGCONT.
      await primary.query("SET synchronous_commit = local; CREATE TABLE pad AS SELECT g AS id, repeat('x', 100) AS t FROM generate_series(1, 300000) g", 60_000);
      const end = String((await one(primary, "SELECT pg_current_wal_lsn()::text AS l")).l);
      await until(async () => (await diff(b, await receiveLsn(b), end)) >= 0, `${b.name} to receive up to ${end}`, 60_000);
      const ahead = await diff(b, await receiveLsn(b), await receiveLsn(other));
      console.log(`${b.name} is ${ahead} bytes ahead of ${other.name} when ${primary.name} dies`);
      expect(ahead).toBeGreaterThan(0);
      await sample();

      // The primary dies: its agent and its server, at once.
      primary.agent.proc.kill("SIGKILL");
      for (const pid of pidsOf(primary.agent.dataDir)) {
        try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      }
    } finally {
      process.kill(wr, "SIGCONT");
    }

    // (b) C becomes the writable primary, with every acknowledged write.
    const t0 = performance.now();
    await until(async () => (await isPrimary(other)) || undefined, `${other.name} to become the writable primary (a nofailover standby ahead of it must not keep the cluster without one)`, 45_000);
    console.log(`${other.name} primary ${Math.round(performance.now() - t0)} ms after the kill`);
    const acked = Number((await one(other, `SELECT count(*)::int AS n FROM nf WHERE id <= ${ACKED}`)).n);
    expect(acked).toBe(ACKED);
    // Writable. Its one standby cannot lead and its promotable peer (the old primary) is unreachable:
    // n2 fills the synchronous set once it echoed the new leader's messages (it first rewinds onto
    // the new timeline); the write waits for that, or until the primary degrades.
    await other.query("INSERT INTO nf VALUES (5000)", 60_000);
    expect(await isPrimary(b)).toBe(false);
    expect(cap).not.toBeNull();
    // The old primary's names never counted n2 during the test.
    expect(sampled.every((s) => s === `ANY 1 ("${cSlot}")`)).toBe(true);
    await until(async () => (await syncNames(other)).includes(bSlot) || undefined, `${other.name} to name ${b.name} (the fill: no reachable promotable standby)`, 60_000);
  }, 240_000);
});
