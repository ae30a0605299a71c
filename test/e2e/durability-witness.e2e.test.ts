// Two database nodes plus a witness (an agent without PostgreSQL), quorum commit: k = 3 voters −
// majority 2 = 1 synchronous standby. In order, on one cluster:
//  1. kill the primary's host → the standby is promoted with zero loss (the witness and the
//     standby form the majority; the standby held every acknowledged commit);
//  2. kill the witness's host → nothing changes for clients: same primary, writes go on, zero-loss;
//  3. kill the standby's host → writes stall until the witness stored the "block" guard, then go on
//     without a synchronous standby; cluster ls says "degraded";
//  4. the standby comes back lagging and cannot stream (PostgreSQL traffic to the primary dropped),
//     then the primary's host dies too → the stale standby is NOT promoted (the witness refuses it:
//     no eligible node holds every acknowledged write; only the guard stands between it and
//     promotion, as standby and witness are a majority) and cluster ls says why;
//  5. `pgherd failover --to <standby> --accept-data-loss` promotes it; the writes it lacks (all
//     acknowledged while it was away) are counted.
import { expect, test } from "bun:test";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { durabilityView, storedGuard, waitGuarantee, waitSynchronous } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { blockPostgres, startWitnessCluster } from "../helpers/witness.ts";
import { describeAnalysis, faultRound, pgherd, secs, Writer } from "../helpers/writer.ts";

const NO_HOLDER = /no candidate is known to hold every acknowledged write/;
/**
 * Writes the primary acknowledges while the standby is away (what the forced failover loses): a
 * count, not a duration; the writer acknowledges about 20 a second.
 */
const WRITES_WHILE_AWAY = 25;

/** Longest gap between consecutive acknowledgements ending in [from, to]. */
function longestGap(w: Writer, from: number, to = Infinity): number {
  const acks = w.acked();
  let gap = 0;
  for (let i = 1; i < acks.length; i++) if (acks[i]!.end >= from && acks[i]!.end <= to) gap = Math.max(gap, acks[i]!.end - acks[i - 1]!.end);
  return gap;
}

describeCluster("quorum commit: two database nodes and a witness", {
  start: async () => {
    const x = await startWitnessCluster("durability-witness", "dwit");
    /** Election timeout + jitter: how long a follower waits before it stands. */
    return { ...x, electMs: x.cfg.election.timeout_ms + x.cfg.election.jitter_ms };
  },
  ready: async ({ db }) => console.log(`durability: ${await waitGuarantee(db.nodes[0]!, /^quorum: zero-loss/, 30_000)}`),
}, (fx) => {
  test("kill the primary: the standby is promoted with zero loss", () => fx.c.diagnose(async () => {
    const r = await faultRound(fx.db, { label: "primary host crash", expect: "other", inject: (p) => p.host.killAll("SIGKILL"), restore: (old) => old.start() });
    console.log(describeAnalysis(`primary host crash (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost));
    expect(r.analysis.recoveryMs ?? Infinity).toBeLessThanOrEqual(fx.bounds.failoverMs);
    expect(r.analysis.splitBrain).toEqual([]);
    expect(r.lost).toEqual([]);
    await waitSynchronous(r.neu);
  }), 300_000);

  test("kill the witness: same primary, writes go on, still zero-loss", () => fx.c.diagnose(async () => {
    const { primary } = await fx.db.waitHealthy(60_000);
    await waitSynchronous(primary);
    const w = new Writer([primary], { table: "witness_w" });
    await w.prepare(primary);
    w.start();
    try {
      await w.waitAck(primary.name, w.mark("warm"), 15_000);
      const at = w.mark("witness killed");
      await fx.witness.host.killAll("SIGKILL");
      // Long enough for any election a lost voter could cause: three election timeouts.
      await waitFor(() => w.acked(primary.name).some((a) => a.start >= at + 3 * fx.electMs), { timeoutMs: 3 * fx.electMs + 15_000, what: `writes on ${primary.name} ${3 * fx.electMs} ms after the witness died` });
      const gap = longestGap(w, at);
      const failed = w.attempts.filter((a) => a.start >= at && !a.ok);
      const v = await durabilityView(primary);
      console.log(`witness killed: longest gap between acknowledged writes ${Math.round(gap)} ms, ${failed.length} failed attempts, leader ${v.leaderName}, durability: ${v.durability}`);
      expect(failed.map((a) => a.error)).toEqual([]);
      expect(gap).toBeLessThan(1000);
      expect(v.leaderName).toBe(primary.name);
      expect(v.durability ?? "").toMatch(/^quorum: zero-loss/);
    } finally {
      await w.stop();
    }
    await fx.witness.start();
    await waitFor(async () => (await durabilityView(fx.witness)).leaderName === primary.name, { timeoutMs: 30_000, what: `${fx.witness.name} to follow ${primary.name} again` });
  }), 300_000);

  test("kill the standby, then the primary while degraded: writes go on, then no automatic promotion of the stale standby, and cluster ls says why; failover --accept-data-loss works", () => fx.c.diagnose(async () => {
    const { primary, standbys } = await fx.db.waitHealthy(60_000);
    const standby = standbys[0]!;
    await waitSynchronous(primary);
    const w = new Writer([primary], { table: "witness_w" });
    w.start();
    try {
      await w.waitAck(primary.name, w.mark("warm"), 15_000);
      const at = w.mark("standby killed");
      await standby.host.killAll("SIGKILL");
      const line = await waitGuarantee(primary, /^quorum: degraded: writes continue/, 60_000);
      const resumed = await waitFor(() => w.acked(primary.name).filter((a) => a.start >= at).at(-1), { timeoutMs: 30_000, what: `a write on ${primary.name} after the standby died` });
      await w.waitAck(primary.name, resumed.end, 15_000);
      await waitFor(() => w.acked(primary.name).filter((a) => a.start >= at).length >= WRITES_WHILE_AWAY, { timeoutMs: 60_000, what: `${WRITES_WHILE_AWAY} writes on ${primary.name} while ${standby.name} is away` });
      console.log(`standby killed: writes stalled ${secs(longestGap(w, at))} (degrading), then continued; durability: ${line}`);
      // The witness stored the guard that let the primary degrade: it names the primary as the only node that may win.
      const g = storedGuard(fx.witness);
      console.log(`guard stored by the witness: ${JSON.stringify(g)}`);
      expect(g?.block).toBe(true);
      expect(g?.holder).toBe(primary.nodeId());

      // The standby returns with old data and cannot catch up.
      await blockPostgres(standby.host, primary.host);
      await standby.start();
      await waitFor(async () => (await standby.query("select pg_is_in_recovery() as r"))[0]?.r === true, { timeoutMs: 60_000, what: `${standby.name}'s PostgreSQL up as a standby` });
      const [p] = await primary.query("select pg_current_wal_lsn()::text as lsn");
      const [s] = await standby.query(`select pg_wal_lsn_diff('${String(p?.lsn)}', pg_last_wal_replay_lsn())::bigint::text as behind`);
      const behind = Number(s?.behind);
      console.log(`${standby.name} back, ${behind} bytes behind ${primary.name} (at ${String(p?.lsn)})`);
      expect(behind).toBeGreaterThan(0);
      const still = await durabilityView(primary);
      expect(still.durability ?? "").toMatch(/^quorum: degraded/);
      const acked = w.acked(primary.name).length;

      const killAt = performance.now();
      await primary.host.killAll("SIGKILL");
      await w.stop();
      const view = await waitFor(async () => {
        const v = await durabilityView(standby);
        return v.leader === null && NO_HOLDER.test(v.note ?? "") ? v : null;
      }, { timeoutMs: 4 * fx.electMs + 30_000, intervalMs: 250, what: `cluster ls on ${standby.name} to say why there is no leader` });
      console.log(`primary killed while degraded (${acked} writes acknowledged by it): ${standby.name} not promoted; cluster ls note: ${view.note}`);
      // Several more election rounds: the standby must stay a standby.
      const until = performance.now() + 3 * fx.electMs;
      while (performance.now() < until) {
        const rec = (await standby.query("select pg_is_in_recovery() as r"))[0]?.r;
        expect(rec).toBe(true);
        expect((await durabilityView(standby)).leader).toBeNull();
        await Bun.sleep(250);
      }
      console.log(`${standby.name} still a standby ${secs(performance.now() - killAt)} after the primary died`);

      const t0 = performance.now();
      const r = await pgherd(standby, ["failover", "--to", standby.name, "--accept-data-loss"]);
      console.log(`pgherd failover --to ${standby.name} --accept-data-loss: exit ${r.code}: ${r.text}`);
      expect(r.code).toBe(0);
      await waitFor(async () => (await standby.query("select pg_is_in_recovery() as r"))[0]?.r === false, { timeoutMs: 30_000, what: `${standby.name} promoted` });
      await standby.query("insert into witness_w (id, node) values (-1, 'forced')");
      console.log(`forced failover: ${standby.name} writable ${secs(performance.now() - t0)} after the command`);
      const lost = await w.lost(standby);
      const lostAfterAway = lost.filter((l) => (w.attempts.find((a) => a.id === l.id)?.end ?? 0) >= at);
      console.log(`forced failover lost ${lost.length} acknowledged writes (${lostAfterAway.length} of them acknowledged while ${standby.name} was away), as accepted`);
      expect(lost.length).toBeGreaterThan(0);
      expect(lostAfterAway.length).toBe(lost.length);
      const after = await waitFor(async () => (await durabilityView(standby)).leaderName === standby.name && (await durabilityView(standby)), { timeoutMs: 30_000, what: `${standby.name} to lead` });
      console.log(`after the forced failover: leader ${after.leaderName}, durability: ${after.durability}`);
    } finally {
      await w.stop();
    }
  }), 400_000);
});
