// Randomized fault injection against a three-node quorum-commit cluster in network namespaces
// (root, PostgreSQL installed):  npx bun scripts/chaos.ts [--rounds 30] [--seed N]
// (CHAOS_SEED=N also replays a run). Prints a table of faults, outages and losses; exits 1 if an
// acknowledged write was lost, two nodes acknowledged writes in the same period, or the cluster was
// not fully streaming within 60 s of the last fault.
import { parseArgs } from "node:util";
import { z } from "zod";
import { runChaos } from "../test/helpers/chaos.ts";
import { clusterSkipReason } from "../test/helpers/cluster.ts";
import { seedFrom } from "../test/helpers/durability.ts";
import { ensureBuilt } from "./build.ts";

const FINAL_HEAL_MS = 60_000;

const { values } = parseArgs({ options: { rounds: { type: "string", default: "30" }, seed: { type: "string" } } });
const opts = z.object({
  rounds: z.coerce.number({ error: "--rounds must be a number" }).int("--rounds must be a whole number").min(1, "--rounds must be at least 1").max(1000, "--rounds must be at most 1000"),
  seed: z.coerce.number({ error: "--seed must be a number" }).int("--seed must be a whole number").min(0, "--seed must be ≥ 0").optional(),
}).safeParse(values);
if (!opts.success) {
  console.error(`chaos: ${opts.error.issues.map((i) => i.message).join("; ")}`);
  process.exit(2);
}
const why = clusterSkipReason();
if (why) {
  console.error(`chaos: cannot run here: ${why}`);
  process.exit(2);
}
process.on("unhandledRejection", (e) => console.error(`chaos: unhandled rejection: ${(e as Error)?.message ?? String(e)}`));

ensureBuilt();
const seed = opts.data.seed ?? seedFrom(process.env.CHAOS_SEED);
try {
  const r = await runChaos({ rounds: opts.data.rounds, seed, test: "chaos-script", tag: "chaoss" });
  const problems = [
    ...(r.lost.length ? [`${r.lost.length} acknowledged writes lost: ${r.lost.slice(0, 20).map((l) => `${l.id}@${l.node}`).join(", ")}`] : []),
    ...r.overlaps.map((o) => `two nodes acknowledging at once: ${o}`),
    ...(r.finalHealMs > FINAL_HEAL_MS ? [`fully streaming only ${(r.finalHealMs / 1000).toFixed(1)} s after the last fault (bound ${FINAL_HEAL_MS / 1000} s)`] : []),
  ];
  for (const p of problems) console.error(`FAIL: ${p}`);
  console.log(problems.length ? `chaos: FAILED (seed ${seed})` : `chaos: ok (seed ${seed})`);
  process.exit(problems.length ? 1 : 0);
} catch (e) {
  console.error(`chaos: aborted: ${(e as Error).message}`);
  console.error(`replay: CHAOS_SEED=${seed} npx bun scripts/chaos.ts --rounds ${opts.data.rounds}`);
  process.exit(1);
}
