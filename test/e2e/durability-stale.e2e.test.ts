// A stale standby must not win. Two database nodes plus a witness, quorum commit:
//  - the standby is stopped (agent, then PostgreSQL); the primary keeps committing: the witness
//    keeps the election majority and stores the "block" guard, so writes go on degraded;
//  - the standby comes back lagging (its PostgreSQL traffic to the primary dropped: it cannot
//    stream) and the primary's host dies before it caught up;
//  - the standby and the witness are a majority, so only the guard stands between the stale
//    standby and promotion: it must NOT be promoted, and cluster ls says why;
//  - `pgherd failover --to <standby> --accept-data-loss` promotes it; the writes it lacks are counted.
import { expect, test } from "bun:test";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { durabilityView, waitGuarantee } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { blockPostgres, startWitnessCluster } from "../helpers/witness.ts";
import { pgherd, secs, Writer } from "../helpers/writer.ts";

const NO_HOLDER = /no candidate is known to hold every acknowledged write/;
/** Writes the primary acknowledges while the standby is away (what the forced failover loses). */
const WRITES_WHILE_AWAY = 100;

describeCluster("quorum commit: stale standby", {
  start: () => startWitnessCluster("durability-stale", "dstale"),
  ready: async ({ db }) => console.log(`durability: ${await waitGuarantee(db.nodes[0]!, /^quorum: zero-loss/, 30_000)}`),
}, (fx) => {
  test("not promoted automatically; cluster ls says why; failover --accept-data-loss works", () => fx.c.diagnose(async () => {
    const electMs = fx.cfg.election.timeout_ms + fx.cfg.election.jitter_ms;
    const { primary, standbys } = await fx.db.waitHealthy(60_000);
    const stale = standbys[0]!;
    const w = new Writer([primary], { table: "stale_w" });
    await w.prepare(primary);
    w.start();
    try {
      await w.waitAck(primary.name, w.mark("warm"), 15_000);
      const away = w.mark("standby stopped");
      await stale.stopAgent();
      const stop = await stale.pgCtl("stop", "-m", "fast", "-w", "-t", "60");
      expect(stop.code).toBe(0);
      console.log(`durability with ${stale.name} stopped: ${await waitGuarantee(primary, /^quorum: degraded: writes continue/, 60_000)}`);
      await waitFor(() => w.acked(primary.name).filter((a) => a.start >= away).length >= WRITES_WHILE_AWAY, { timeoutMs: 60_000, what: `${WRITES_WHILE_AWAY} writes on ${primary.name} while ${stale.name} is away` });

      await blockPostgres(stale.host, primary.host);
      await stale.start();
      await waitFor(async () => (await stale.query("select pg_is_in_recovery() as r"))[0]?.r === true, { timeoutMs: 60_000, what: `${stale.name}'s PostgreSQL up as a standby` });
      const [p] = await primary.query("select pg_current_wal_lsn()::text as lsn");
      const [s] = await stale.query(`select pg_wal_lsn_diff('${String(p?.lsn)}', pg_last_wal_replay_lsn())::bigint::text as behind`);
      const behind = Number(s?.behind);
      console.log(`${stale.name} back, ${behind} bytes behind ${primary.name} (at ${String(p?.lsn)})`);
      expect(behind).toBeGreaterThan(0);

      const killAt = performance.now();
      await primary.host.killAll("SIGKILL");
      await w.stop();
      const view = await waitFor(async () => {
        const v = await durabilityView(stale);
        return v.leader === null && NO_HOLDER.test(v.note ?? "") ? v : null;
      }, { timeoutMs: 4 * electMs + 30_000, intervalMs: 250, what: `cluster ls on ${stale.name} to say why there is no leader` });
      console.log(`primary dead: ${stale.name} not promoted; cluster ls note: ${view.note}; durability: ${view.durability}`);
      const until = performance.now() + 3 * electMs;
      while (performance.now() < until) {
        expect((await stale.query("select pg_is_in_recovery() as r"))[0]?.r).toBe(true);
        await Bun.sleep(250);
      }
      console.log(`${stale.name} still a standby ${secs(performance.now() - killAt)} after the primary died`);

      const t0 = performance.now();
      const r = await pgherd(stale, ["failover", "--to", stale.name, "--accept-data-loss"]);
      console.log(`pgherd failover --to ${stale.name} --accept-data-loss: exit ${r.code}: ${r.text}`);
      expect(r.code).toBe(0);
      await waitFor(async () => (await stale.query("select pg_is_in_recovery() as r"))[0]?.r === false, { timeoutMs: 30_000, what: `${stale.name} promoted` });
      await stale.query("insert into stale_w (id, node) values (-1, 'forced')");
      console.log(`forced failover: ${stale.name} writable ${secs(performance.now() - t0)} after the command`);
      const lost = await w.lost(stale);
      const lostAfterAway = lost.filter((l) => (w.attempts.find((a) => a.id === l.id)?.end ?? 0) >= away);
      console.log(`forced failover lost ${lost.length} acknowledged writes (${lostAfterAway.length} of them acknowledged while ${stale.name} was away), as accepted`);
      expect(lost.length).toBeGreaterThan(0);
      expect(lostAfterAway.length).toBe(lost.length);
      const after = await waitFor(async () => (await durabilityView(stale)).leaderName === stale.name && (await durabilityView(stale)), { timeoutMs: 30_000, what: `${stale.name} to lead` });
      console.log(`after the forced failover: leader ${after.leaderName}, durability: ${after.durability}`);
    } finally {
      await w.stop();
    }
  }), 400_000);
});
