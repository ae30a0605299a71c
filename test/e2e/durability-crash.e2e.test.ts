// Quorum commit (the default) with three database nodes: a writer commits continuously on every
// node while the primary's host crashes (every process SIGKILLed) at a random moment, ten times in
// a row; the crashed host's agent is restarted and the cluster is whole again before the next
// round. Every acknowledged write must be on the final primary, every round.
// Replay the random moments with DURABILITY_SEED=<n> (printed).
import { expect, test } from "bun:test";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { seededRandom, seedFrom, table, waitGuarantee, waitSynchronous } from "../helpers/durability.ts";
import { describeAnalysis, faultRound, secs, startFailoverCluster } from "../helpers/writer.ts";

const ROUNDS = 10;
/** The crash lands up to this long after the writer's steady state began: anywhere in a commit's life. */
const MAX_DELAY_MS = 1500;

describeCluster("quorum commit: host crash of the primary, 10 rounds", {
  start: () => startFailoverCluster("durability-crash", "dcrash"),
}, (fx) => {
  test("zero acknowledged writes lost, every round", () => fx.c.diagnose(async () => {
    console.log(`durability: ${await waitGuarantee(fx.c.nodes[0]!, /^quorum: zero-loss/, 30_000)}`);
    const seed = seedFrom(process.env.DURABILITY_SEED);
    console.log(`seed ${seed} (replay: DURABILITY_SEED=${seed})`);
    const rnd = seededRandom(seed);
    const rows: (string | number)[][] = [];
    const losses: string[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      const delay = Math.floor(rnd() * MAX_DELAY_MS);
      // Synchronous again after the previous round (a crash while degraded rightly leaves no failover).
      await waitSynchronous((await fx.c.waitHealthy(120_000)).primary);
      const r = await faultRound(fx.c, {
        label: `round ${i}`, expect: "other",
        inject: async (p) => {
          await Bun.sleep(delay); // a random moment, not a wait for a condition
          await p.host.killAll("SIGKILL");
        },
        restore: (old) => old.start(),
      });
      console.log(describeAnalysis(`round ${i} (${r.old.name} -> ${r.neu.name}, crash ${delay} ms into steady writes)`, r.analysis, r.lost));
      rows.push([i, `${r.old.name}->${r.neu.name}`, delay, secs(r.analysis.outageMs), secs(r.analysis.recoveryMs), `${r.analysis.acked}/${r.analysis.attempts}`, r.lost.length, secs(r.healMs)]);
      if (r.lost.length) losses.push(`round ${i}: ${r.lost.map((l) => `${l.id}@${l.node}`).join(", ")}`);
      expect(r.analysis.splitBrain).toEqual([]);
      // The round's fault mark is set before the random delay: the bound starts at the crash.
      expect((r.analysis.recoveryMs ?? Infinity) - delay).toBeLessThanOrEqual(fx.bounds.failoverMs);
    }
    console.log(table(["round", "failover", "crash at ms", "outage", "new primary writes after (incl. delay)", "acked/attempts", "lost", "healed in"], rows));
    expect(losses).toEqual([]);
  }), 1_200_000);
});
