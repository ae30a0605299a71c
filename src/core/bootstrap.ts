// Forming the first membership from discovered peers, and which voter change comes next. Pure.
//
// Each node, once it has seen `expect` nodes (itself included) for a settle
// period (or a peer voted for the set it would choose) and no node already
// belongs to a cluster, votes for the `expect` lowest node ids it knows. The vote is persisted and never changes, and the
// membership forms only when every member of the set voted for exactly that
// set. Two different sets could only both form if they share no node, which
// needs at least 2 × expect nodes starting at the same moment with a broken
// view of each other: docs/design.md says to start exactly bootstrap_expect.

import { isNodeId } from "./messages.ts";

export interface PeerView {
  id: string;
  role: "database" | "witness";
  /** The peer's bootstrap vote, if it cast one. */
  vote: readonly string[] | null;
  /** True when the peer already holds a membership: the cluster exists, we wait to be added. */
  member: boolean;
}

export interface BootstrapState {
  vote: readonly string[] | null;
}

export type BootstrapDecision =
  | { kind: "wait"; reason: string }
  | { kind: "vote"; voters: string[] }
  | { kind: "form"; voters: string[] };

export function decideBootstrap(opts: {
  self: string;
  expect: number;
  state: BootstrapState;
  peers: readonly PeerView[];
  /** ms since the set of seen peers last changed */
  stableForMs: number;
  settleMs: number;
}): BootstrapDecision {
  const { self, expect, state, peers } = opts;
  if (!state.vote) {
    if (peers.some((p) => p.member)) return { kind: "wait", reason: "the cluster already exists: waiting for its leader to add this node" };
    const seen = [self, ...peers.map((p) => p.id)];
    if (seen.length < expect) return { kind: "wait", reason: `waiting for bootstrap_expect=${expect} nodes, seen ${seen.length}` };
    const chosen = [...new Set(seen)].sort().slice(0, expect);
    // A peer already voted for the very set this node would choose: joining it now can only help
    // that set form (settling might show a node that changes the choice, and then no set forms).
    const agreed = peers.some((p) => p.vote?.join(",") === chosen.join(","));
    if (opts.stableForMs < opts.settleMs && !agreed) return { kind: "wait", reason: "letting discovery settle before voting" };
    const databases = chosen.filter((id) => id === self || peers.find((p) => p.id === id)?.role !== "witness");
    if (databases.length === 0) return { kind: "wait", reason: "no database node among the first voters" };
    return { kind: "vote", voters: chosen };
  }
  const mine = state.vote;
  const key = mine.join(",");
  const missing = mine.filter((id) => id !== self && peers.find((p) => p.id === id)?.vote?.join(",") !== key);
  if (missing.length > 0) return { kind: "wait", reason: `bootstrap vote for ${key} not yet confirmed by ${missing.join(",")}` };
  if (!mine.includes(self)) return { kind: "wait", reason: `not among the first voters ${key}: waiting to be added` };
  return { kind: "form", voters: [...mine] };
}

/**
 * After bootstrap: the next voter change the leader should make, one at a time. Removals an
 * operator asked for come first (in the order asked); then a connected node joins when an operator
 * approved it, or when `auto_join` admits every authenticated node (except one an operator removed:
 * the membership's `removed`, or a removal asked of this leader). Ids that are not node ids never join. Pure.
 */
export function nextVoterChange(o: {
  voters: readonly string[];
  /** Approved, not yet voters (the membership's `approved`). */
  approved: readonly string[];
  autoJoin: boolean;
  peers: readonly { id: string; connected: boolean }[];
  /** Voters an operator asked to remove. */
  removals: readonly string[];
  /** Nodes an operator removed before (the membership's `removed`): not re-added by auto_join. */
  removed?: readonly string[];
}): { op: "add" | "remove"; node: string } | null {
  const gone = o.removals.find((id) => o.voters.includes(id));
  if (gone) return { op: "remove", node: gone };
  const joiner = o.peers.find((p) => p.connected && isNodeId(p.id) && !o.voters.includes(p.id) &&
    (o.approved.includes(p.id) || (o.autoJoin && !o.removals.includes(p.id) && !o.removed?.includes(p.id))));
  return joiner ? { op: "add", node: joiner.id } : null;
}
