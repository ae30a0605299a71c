// Thousands of seeded fault schedules against the pure election core.
// Replay one: SIM_SEED=123 npx bun test test/core/election.sim.test.ts
// More:       SIM_SEEDS=20000 npx bun test test/core/election.sim.test.ts
import { expect, test } from "bun:test";
import { DEFAULT_PARAMS, runSim, type SimResult } from "./sim.ts";

const only = process.env.SIM_SEED ? [Number(process.env.SIM_SEED)] : null;
const count = Number(process.env.SIM_SEEDS ?? 2000);
const seeds = only ?? Array.from({ length: count }, (_, i) => i + 1);

/** Vary the cluster shape with the seed so one run covers 3 and 5 voters, witnesses and spares. */
export function paramsFor(seed: number) {
  const shape = seed % 4;
  return {
    ...DEFAULT_PARAMS,
    seed,
    initial: shape === 3 ? 5 : 3,
    spares: shape === 3 ? 1 : 2,
    witnesses: shape === 1 ? 1 : 0,
  };
}

test(`election core holds its invariants over ${seeds.length} seeded fault schedules`, () => {
  const results: SimResult[] = [];
  for (const seed of seeds) results.push(runSim(paramsFor(seed)));
  const settle = results.map((r) => r.settleMs).sort((a, b) => a - b);
  const sum = (f: (r: SimResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const minGap = Math.min(...results.map((r) => r.minGapMs));
  console.log(
    `sim: ${results.length} schedules, ${sum((r) => r.steps)} steps, ${sum((r) => r.leadersElected)} leaders elected, ` +
      `${sum((r) => r.membershipChanges)} membership changes, ${sum((r) => r.violationsChecked)} lease-pair checks; ` +
      `smallest gap between two leases ${minGap.toFixed(1)} ms (after fencing budget); ` +
      `leader after faults stop: median ${settle[Math.floor(settle.length / 2)]!.toFixed(0)} ms, max ${settle[settle.length - 1]!.toFixed(0)} ms`,
  );
  expect(minGap).toBeGreaterThanOrEqual(0);
  expect(sum((r) => r.leadersElected)).toBeGreaterThan(results.length); // faults really forced re-elections
  expect(sum((r) => r.membershipChanges)).toBeGreaterThan(results.length);
}, 600_000);
