import { expect, test } from "bun:test";
import { decideBootstrap, type PeerView } from "../../src/core/bootstrap.ts";

const peer = (id: string, vote: string[] | null = null, member = false): PeerView => ({ id, role: "database", vote, member });
const base = { self: "b", expect: 3, state: { vote: null }, stableForMs: 5000, settleMs: 2000 };

test("waits until bootstrap_expect nodes are seen and discovery settled", () => {
  expect(decideBootstrap({ ...base, peers: [peer("a")] })).toMatchObject({ kind: "wait" });
  expect(decideBootstrap({ ...base, peers: [peer("a"), peer("c")], stableForMs: 100 })).toMatchObject({ kind: "wait" });
  expect(decideBootstrap({ ...base, peers: [peer("a"), peer("c")] })).toEqual({ kind: "vote", voters: ["a", "b", "c"] });
});

test("before discovery settled, joins a peer's vote for the very set it would choose, and only that", () => {
  const early = { ...base, stableForMs: 100 };
  expect(decideBootstrap({ ...early, peers: [peer("a", ["a", "b", "c"]), peer("c")] })).toEqual({ kind: "vote", voters: ["a", "b", "c"] });
  // Another set (this node sees a lower id the voter did not): it waits out the settle period as before.
  expect(decideBootstrap({ ...early, peers: [peer("a", ["a", "c", "d"]), peer("c"), peer("d")] })).toMatchObject({ kind: "wait", reason: "letting discovery settle before voting" });
  expect(decideBootstrap({ ...early, peers: [peer("0", null), peer("a", ["a", "b", "c"]), peer("c")] })).toMatchObject({ kind: "wait" });
});

test("votes for the lowest ids when more nodes than expected are seen", () => {
  expect(decideBootstrap({ ...base, peers: [peer("d"), peer("a"), peer("c")] })).toEqual({ kind: "vote", voters: ["a", "b", "c"] });
});

test("forms only when every member voted for the same set; the vote never changes", () => {
  const state = { vote: ["a", "b", "c"] };
  expect(decideBootstrap({ ...base, state, peers: [peer("a", ["a", "b", "c"]), peer("c", ["a", "b", "d"])] })).toMatchObject({ kind: "wait" });
  expect(decideBootstrap({ ...base, state, peers: [peer("a", ["a", "b", "c"]), peer("c", ["a", "b", "c"])] })).toEqual({ kind: "form", voters: ["a", "b", "c"] });
  // a node seen later with a lower id does not change a cast vote
  expect(decideBootstrap({ ...base, state, peers: [peer("0"), peer("a", ["a", "b", "c"]), peer("c", ["a", "b", "c"])] })).toEqual({ kind: "form", voters: ["a", "b", "c"] });
});

test("never bootstraps a second cluster next to an existing one", () => {
  expect(decideBootstrap({ ...base, peers: [peer("a", null, true), peer("c")] })).toMatchObject({ kind: "wait", reason: expect.stringContaining("already exists") });
});

test("a node outside the chosen set waits to be added instead of forming", () => {
  const d = decideBootstrap({ ...base, self: "z", state: { vote: ["a", "b", "c"] }, peers: [peer("a", ["a", "b", "c"]), peer("b", ["a", "b", "c"]), peer("c", ["a", "b", "c"])] });
  expect(d).toMatchObject({ kind: "wait", reason: expect.stringContaining("waiting to be added") });
});

test("a set made only of witnesses is not voted for", () => {
  const w = (id: string): PeerView => ({ id, role: "witness", vote: null, member: false });
  expect(decideBootstrap({ ...base, self: "x", expect: 1, peers: [w("a")] })).toEqual({ kind: "wait", reason: "no database node among the first voters" });
});

test("a node whose vote is confirmed forms even when a peer formed first", () => {
  const state = { vote: ["a", "b", "c"] };
  expect(decideBootstrap({ ...base, state, peers: [peer("a", ["a", "b", "c"], true), peer("c", ["a", "b", "c"])] })).toEqual({ kind: "form", voters: ["a", "b", "c"] });
});
