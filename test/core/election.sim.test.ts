// Thousands of seeded fault schedules against the pure election core.
// Replay one: SIM_SEED=123 npx bun test test/core/election.sim.test.ts
// More:       SIM_SEEDS=20000 npx bun test test/core/election.sim.test.ts
// The schedules are independent and deterministic per seed: they are split over one worker thread
// per core (sim-worker.ts), which gives the same results as one thread in a fraction of the time.
import { expect, test } from "bun:test";
import { availableParallelism } from "node:os";
import { paramsFor, runSim, SimViolation, type SimParams, type SimResult } from "./sim.ts";
import type { SimJob, SimReply } from "./sim-worker.ts";

const only = process.env.SIM_SEED ? [Number(process.env.SIM_SEED)] : null;
const count = Number(process.env.SIM_SEEDS ?? 2000);
const seeds = only ?? Array.from({ length: count }, (_, i) => i + 1);

/** runSim over `seeds`, split round-robin over `threads` workers; a violation in any is thrown here. */
async function runAll(seeds: number[], threads: number): Promise<SimResult[]> {
  const chunks = Array.from({ length: Math.max(1, Math.min(threads, seeds.length)) }, (_, w) => seeds.filter((_, i) => i % threads === w));
  const replies = await Promise.all(chunks.map((chunk) => new Promise<SimReply>((resolve, reject) => {
    const worker = new Worker(new URL("./sim-worker.ts", import.meta.url).href);
    worker.onmessage = (e: MessageEvent<SimReply>) => { resolve(e.data); worker.terminate(); };
    worker.onerror = (e) => { reject(new Error(`simulation worker: ${e.message}`)); worker.terminate(); };
    worker.postMessage({ seeds: chunk } satisfies SimJob);
  })));
  const bad = replies.find((r) => !r.ok);
  if (bad && !bad.ok) throw bad.violation ? new SimViolation(bad.message) : new Error(bad.message);
  return replies.flatMap((r) => (r.ok ? r.results : []));
}

test(`election core holds its invariants over ${seeds.length} seeded fault schedules`, async () => {
  const threads = only ? 1 : Math.min(4, availableParallelism());
  const results = threads === 1 ? seeds.map((seed) => runSim(paramsFor(seed))) : await runAll(seeds, threads);
  expect(results.map((r) => r.seed).sort((a, b) => a - b)).toEqual(seeds);
  const settle = results.map((r) => r.settleMs).sort((a, b) => a - b);
  const sum = (f: (r: SimResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const minGap = Math.min(...results.map((r) => r.minGapMs));
  console.log(
    `sim: ${results.length} schedules, ${sum((r) => r.steps)} steps, ${sum((r) => r.leadersElected)} leaders elected, ` +
      `${sum((r) => r.membershipChanges)} membership changes, ${sum((r) => r.violationsChecked)} lease-pair checks; ` +
      `smallest gap between two leases ${minGap.toFixed(1)} ms (after fencing budget); ` +
      `leader after faults stop: median ${settle[Math.floor(settle.length / 2)]!.toFixed(0)} ms, max ${settle[settle.length - 1]!.toFixed(0)} ms; ` +
      `${sum((r) => r.ackedWrites)} writes acknowledged; ${sum((r) => r.detaches)} detaches before a vote ` +
      `(${sum((r) => r.detachesFailed)} failed, ${sum((r) => r.detachesHung)} past the bound), ${sum((r) => r.votesRefusedForDetach)} votes refused while one was pending or after it failed; ` +
      `${sum((r) => r.votesRefusedPositionUnknown)} votes and pre-votes refused before the voter's first monitoring round; ` +
      `${sum((r) => r.promotions)} promotions, ${sum((r) => r.promotionsAboveReservation)} of them past a timeline number another leader reserved; ` +
      `${sum((r) => r.slowPersists)} persists held their process up to 3 s (${sum((r) => r.slowCandidacies)} candidacies); ` +
      `standbys that cannot lead: ${sum((r) => r.records)} exclusion records sent, ${sum((r) => r.cappedFeeds)} positions fed capped, ${sum((r) => r.fillNamed)} primary rounds naming one through the fill; ` +
      `${sum((r) => r.transfersToTarget)} of ${sum((r) => r.transfers)} resigns with a target followed by the target's election`,
  );
  expect(minGap).toBeGreaterThanOrEqual(0);
  if (only) return;
  expect(sum((r) => r.leadersElected)).toBeGreaterThan(results.length); // faults really forced re-elections
  expect(sum((r) => r.membershipChanges)).toBeGreaterThan(results.length);
  // the detach model was exercised: votes held, detaches that failed or hung, votes refused for them
  expect(sum((r) => r.detaches)).toBeGreaterThan(results.length);
  expect(sum((r) => r.detachesFailed)).toBeGreaterThan(0);
  expect(sum((r) => r.detachesHung)).toBeGreaterThan(0);
  expect(sum((r) => r.votesRefusedForDetach)).toBeGreaterThan(0);
  // requests that arrived before a new agent's first monitoring round reported its position
  expect(sum((r) => r.votesRefusedPositionUnknown)).toBeGreaterThan(0);
  // persists that held a candidate's process, its round counted from the send
  expect(sum((r) => r.slowCandidacies)).toBeGreaterThan(0);
  // promotions that had to go past another leader's reserved timeline number (core/timelines.ts)
  if (!only) expect(sum((r) => r.promotionsAboveReservation)).toBeGreaterThan(0);
  // standbys that cannot lead: records sent, votes with a capped position, the fill naming them
  expect(sum((r) => r.records)).toBeGreaterThan(results.length);
  expect(sum((r) => r.cappedFeeds)).toBeGreaterThan(0);
  expect(sum((r) => r.fillNamed)).toBeGreaterThan(0);
  // resigns with a target, some followed by the target's election (the transfer path)
  expect(sum((r) => r.transfersToTarget)).toBeGreaterThan(0);
}, 600_000);

/**
 * The first violation runSim reports with `mutation` over seeds `from`..`upTo` (those whose schedule
 * `only` takes), as its first line; null if none. `from` > 1 only for the rarely caught ones: the
 * first seed measured with the model as it is (docs/design.md, "Mutation checks"), so that the suite
 * does not replay the hundreds of seeds below it on every run; a changed model that no longer
 * catches it there scans on to `upTo`, then from 1.
 */
function firstViolation(mutation: NonNullable<SimParams["mutation"]>, upTo = 2000, only: (p: SimParams) => boolean = () => true, from = 1): string | null {
  const order = [...Array.from({ length: upTo - from + 1 }, (_, i) => from + i), ...Array.from({ length: from - 1 }, (_, i) => i + 1)];
  for (const seed of order) {
    const p = paramsFor(seed);
    if (!only(p)) continue;
    try {
      runSim({ ...p, mutation });
    } catch (e) {
      if (!(e instanceof SimViolation)) throw e;
      return e.message.split("\n")[0]!;
    }
  }
  return null;
}

test("mutation check: promotions without a timeline reservation give two histories one timeline number within 2,000 seeds", () => {
  const caught = firstViolation("no-timeline-reservation");
  expect(caught).toMatch(/a number another history/);
  console.log(`mutation no-timeline-reservation caught: ${caught}`);
}, 600_000);

test("mutation check: a vote sent before replication stopped loses acknowledged writes within 2,000 seeds", () => {
  const caught = firstViolation("vote-before-detach");
  expect(caught).toMatch(/acknowledged/);
  console.log(`mutation vote-before-detach caught: ${caught}`);
}, 600_000);

test("mutation check: a new agent voting with ZERO before its first monitoring round loses acknowledged writes within 4,000 seeds", () => {
  // Rare: a voter restarted, asked for its vote before its first round, by a candidate behind an
  // acknowledged write. With the model as it is, seed 3082 is the first of 1–3,100 that reaches it.
  const caught = firstViolation("zero-position-at-boot", 4000, undefined, 3082);
  expect(caught).toMatch(/acknowledged/);
  console.log(`mutation zero-position-at-boot caught: ${caught}`);
}, 600_000);

test("mutation check: a standby that cannot lead voting without defending its writes loses acknowledged writes within 2,000 seeds", () => {
  const caught = firstViolation("cannot-lead-votes-zero", 2000, (p) => p.nofailover > 0); // the others have no such standby
  expect(caught).toMatch(/acknowledged/);
  console.log(`mutation cannot-lead-votes-zero caught: ${caught}`);
}, 600_000);

test("mutation check: a primary counted degraded running with \"\" before its block is stored loses acknowledged writes within 2,000 seeds", () => {
  const caught = firstViolation("async-before-block-stored", 2000, undefined, 467);
  expect(caught).toMatch(/acknowledged/);
  console.log(`mutation async-before-block-stored caught: ${caught}`);
}, 600_000);
