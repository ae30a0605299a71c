// The durability plan: k standbys so that every commit meets every election majority.
import { expect, test } from "bun:test";
import { blockInForce, FILL_ECHO_MS, HEAR_STANDBYS_MS, planDurability, syncStandbyNames, type DurabilityInput } from "../../src/core/durability.ts";

const base: DurabilityInput = {
  mode: "quorum", voters: 3, standbyNames: ["pgherd_b", "pgherd_c"], streaming: ["pgherd_b", "pgherd_c"],
  degraded: false, blockCommitted: false, position: { timeline: 1, lsn: "0/5000000" }, maxLagBytes: 1 << 20,
};

test("k = voters − majority: 3 voters → ANY 1, 5 → ANY 2, 2 databases + a witness → ANY 1 of the one standby", () => {
  expect(planDurability(base).syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")');
  expect(planDurability({ ...base, voters: 5, standbyNames: ["a", "b", "c", "d"], streaming: ["a", "b", "c", "d"] }).syncNames).toBe('ANY 2 ("a", "b", "c", "d")');
  expect(planDurability({ ...base, standbyNames: ["pgherd_b"], streaming: ["pgherd_b"] }).syncNames).toBe('ANY 1 ("pgherd_b")');
  expect(planDurability({ ...base, voters: 1, standbyNames: [], streaming: [] }).syncNames).toBe("");
  expect(syncStandbyNames(0, ["x"])).toBe("");
});

test("quorum with too few standbys: block automatic failover first, then write without a sync standby", () => {
  const few = { ...base, streaming: [] };
  const first = planDurability(few);
  expect(first.guard).toEqual({ block: true, floor: null });
  expect(first.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")'); // still synchronous until the voters know
  const then = planDurability({ ...few, blockCommitted: true });
  expect(then.syncNames).toBe("");
  expect(then.degraded).toBe(true);
  expect(then.guarantee).toContain("no automatic failover");
  // a standby is back: synchronous again, and the guard lifts with a floor at the then position
  const back = planDurability({ ...base, degraded: true, blockCommitted: true });
  expect(back.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")');
  expect(back.guard).toBe("resync");
});

test("never \"\" before a majority stored the block, even for an agent that already counts itself degraded (a voter change marks it so first)", () => {
  const few = { ...base, streaming: [] };
  const marked = planDurability({ ...few, degraded: true, blockCommitted: false });
  expect(marked.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")'); // commits wait: a majority may still elect a standby without them
  expect(marked.guard).toEqual({ block: true, floor: null });
  expect(planDurability({ ...few, degraded: true, blockCommitted: true }).syncNames).toBe(""); // stored: writes go on
});

test("quorum waits a grace period before degrading (standbys re-pointing after a failover)", () => {
  const short = planDurability({ ...base, streaming: [], shortForMs: 1000, degradeAfterMs: 5000 });
  expect(short.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")');
  expect(short.guard).toBe("keep");
  expect(planDurability({ ...base, streaming: [], shortForMs: 6000, degradeAfterMs: 5000 }).guard).toEqual({ block: true, floor: null });
});

test("strict blocks writes instead of degrading; async publishes a floor max_lag_bytes behind", () => {
  const s = planDurability({ ...base, mode: "strict", streaming: [] });
  expect(s.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")');
  expect(s.guarantee).toContain("writes blocked");
  const a = planDurability({ ...base, mode: "async" });
  expect(a.syncNames).toBe("");
  expect(a.guard).toEqual({ block: false, floor: { timeline: 1, lsn: "0/4F00000" } });
  expect(a.guarantee).toContain("1048576 bytes at risk");
});

test("an agent restarted beside its running primary does not degrade before it has heard every standby member (bounded)", () => {
  // Nothing heard yet: no standby known to be promotable, so none named and none counted streaming.
  const restarted = { ...base, standbyNames: [], streaming: ["pgherd_b", "pgherd_c"], shortForMs: 60_000, degradeAfterMs: 0 };
  const waiting = planDurability({ ...restarted, unheardStandbys: 2, primaryForMs: 500 });
  expect(waiting.guard).toBe("keep"); // no block stored, so no floor left when it is lifted
  expect(waiting.syncNames).toBe('ANY 1 ("pgherd_none")'); // writes wait meanwhile
  expect(waiting.degraded).toBe(false);
  // every member heard: the usual rules
  expect(planDurability({ ...restarted, unheardStandbys: 0, primaryForMs: 500 }).guard).toEqual({ block: true, floor: null });
  // a member down since the agent started: it degrades after HEAR_STANDBYS_MS
  expect(planDurability({ ...restarted, unheardStandbys: 1, primaryForMs: HEAR_STANDBYS_MS }).guard).toEqual({ block: true, floor: null });
  // an agent already degraded stays so
  expect(planDurability({ ...restarted, degraded: true, blockCommitted: true, unheardStandbys: 1, primaryForMs: 500 }).degraded).toBe(true);
});

test("standbys that cannot lead filling the synchronous set (core/sync-exclusion.ts syncSet): commits are synchronous, strict and quorum", () => {
  const filled = { ...base, standbyNames: ["pgherd_b", "pgherd_c"], streaming: ["pgherd_b"] };
  for (const mode of ["strict", "quorum"] as const) {
    const p = planDurability({ ...filled, mode });
    expect(p.syncNames).toBe('ANY 1 ("pgherd_b", "pgherd_c")');
    expect(p.guarantee).toContain("zero-loss");
    expect(p.guard).toBe("keep");
  }
  // a wanted one not nameable yet counts as not heard: quorum waits (bounded) instead of degrading
  const pending = { ...base, standbyNames: [], streaming: ["pgherd_b"], unheardStandbys: 1, primaryForMs: 500 };
  expect(planDurability(pending).guard).toBe("keep");
  expect(planDurability(pending).syncNames).toBe('ANY 1 ("pgherd_none")');
  // a primary long running when the fill starts wanting one (the promotable standby died): it waits for the echo, bounded
  const later = { ...base, standbyNames: ["pgherd_a"], streaming: [], unheardStandbys: 1, primaryForMs: 600_000, shortForMs: 60_000, degradeAfterMs: 0 };
  expect(planDurability({ ...later, fillPendingForMs: 200 }).guard).toBe("keep");
  expect(planDurability({ ...later, fillPendingForMs: FILL_ECHO_MS }).guard).toEqual({ block: true, floor: null });
  expect(planDurability(later).guard).toEqual({ block: true, floor: null });
});

test("the block a primary degrades behind is its own, stored by a majority, and not being lifted by it (review)", () => {
  const mine = { seq: 4, block: true, holder: "aaaaaaaaaaaaaaaa" };
  expect(blockInForce({ guard: mine, committed: 4 }, "aaaaaaaaaaaaaaaa", false)).toBe(true);
  expect(blockInForce({ guard: mine, committed: 3 }, "aaaaaaaaaaaaaaaa", false)).toBe(false); // not stored by a majority yet
  // Another node's block, left by a forced failover on etcd: it says nothing of this primary's solo writes.
  expect(blockInForce({ guard: { ...mine, holder: "bbbbbbbbbbbbbbbb" }, committed: 4 }, "aaaaaaaaaaaaaaaa", false)).toBe(false);
  // Its own lift sent and not answered yet (etcd): "" now would run with no block stored once the lift lands.
  expect(blockInForce({ guard: mine, committed: 4 }, "aaaaaaaaaaaaaaaa", true)).toBe(false);
  expect(blockInForce({ guard: { ...mine, block: false, holder: null }, committed: 4 }, "aaaaaaaaaaaaaaaa", false)).toBe(false);
  expect(blockInForce({ guard: null, committed: 0 }, "aaaaaaaaaaaaaaaa", false)).toBe(false);
  // planDurability then asks for this node's own block before any "" (above: never "" before a majority stored it).
});
