// The shortened chaos run of `npm test`: 8 random faults (kill postmaster, kill agent, host crash,
// cut the primary, cut a standby, cut the leader from one peer, restart a node) against three
// database nodes in quorum mode with a writer on every node. Asserts zero lost acknowledged writes,
// never two nodes acknowledging in the same period, and a fully streaming cluster within a bound
// after the last fault. Replay with CHAOS_SEED=<n> (printed). The full run: scripts/chaos.ts.
import { describe, expect, test } from "bun:test";
import { ensureBuilt } from "../../scripts/build.ts";
import { runChaos } from "../helpers/chaos.ts";
import { clusterSkipReason } from "../helpers/cluster.ts";
import { requireReal } from "../helpers/require.ts";
import { seedFrom } from "../helpers/durability.ts";

const ROUNDS = 8;
/** Last fault undone → one primary and two streaming standbys (pg_rewind of a former primary included). */
const FINAL_HEAL_MS = 60_000;

requireReal("chaos e2e", clusterSkipReason());

describe("chaos (8 rounds)", () => {
  test("random faults: zero lost, no overlapping primaries, fully streaming after the last fault", async () => {
    ensureBuilt();
    const r = await runChaos({ rounds: ROUNDS, seed: seedFrom(process.env.CHAOS_SEED), test: "chaos", tag: "chaos", healMs: 120_000 });
    expect(r.lost).toEqual([]);
    expect(r.overlaps).toEqual([]);
    expect(r.finalHealMs).toBeLessThanOrEqual(FINAL_HEAL_MS);
  }, 360_000);
});
