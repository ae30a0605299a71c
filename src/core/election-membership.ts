// Membership handling for the election (src/core/election.ts): versions, the one-voter change a
// leader may propose, which membership a node adopts, and when a change is committed. Pure.
import { hasMajority } from "./quorum.ts";
import { isNodeId, type Membership, type MembershipVersion } from "./messages.ts";

/**
 * A membership change the leader may propose: add a voter, remove a voter (or withdraw an approval),
 * approve a node (it becomes a voter when the leader adds it).
 */
export type ProposeOp = "add" | "remove" | "approve";

/** (term, index) of a membership; (-1, -1) for none, behind every real one. */
export function versionOf(m: Membership | null): MembershipVersion {
  return m ? { term: m.term, index: m.index } : { term: -1, index: -1 };
}

export function compareVersion(a: MembershipVersion, b: MembershipVersion): number {
  return a.term !== b.term ? a.term - b.term : a.index - b.index;
}

/** `mine` when it is newer than the version `theirs`, so a node that is behind can catch up. */
export function newerMembership(mine: Membership | null, theirs: MembershipVersion): Membership | undefined {
  return mine && compareVersion(versionOf(mine), theirs) > 0 ? mine : undefined;
}

/**
 * Whether a follower adopts membership `m` a voter told it about: only a newer version. Versions are
 * (term, index) and only a leader stamps a new term's version after committing its no-op, so
 * moving to a higher version is what the leader's heartbeat would have done.
 */
export function isNewer(m: Membership | undefined, mine: Membership | null): m is Membership {
  return m !== undefined && compareVersion(versionOf(m), versionOf(mine)) > 0;
}

/** Raft's no-op entry: the new leader re-stamps the membership in its own term. */
export function restamp(m: Membership, term: number): Membership {
  return { ...m, term, index: m.index + 1 };
}

/** The leader's membership after an accepted plan, stamped in its term. */
export function proposed(m: Membership, term: number, plan: MembershipPlan): Membership {
  return { term, index: m.index + 1, voters: plan.voters, ...(plan.approved.length > 0 ? { approved: plan.approved } : {}), ...(plan.removed.length > 0 ? { removed: plan.removed } : {}) };
}

/** The voter set, approvals and removals after one change. */
export interface MembershipPlan {
  voters: string[];
  approved: string[];
  removed: string[];
}

/** Leader: whether a majority of `voters` (itself included) stores exactly `mine`. */
export function storedByMajority(self: string, voters: readonly string[], mine: MembershipVersion, peerVersions: ReadonlyMap<string, MembershipVersion>): boolean {
  const have = new Set([self]);
  for (const [p, v] of peerVersions) if (compareVersion(v, mine) === 0) have.add(p);
  return hasMajority(voters, have);
}

/**
 * The membership after `op node` proposed on leader `self`, or why it is refused. Pure; the caller
 * checks leadership and the one-change-at-a-time rule. An approval never changes the voters; an
 * add consumes the node's approval; a remove drops the voter and any approval of it.
 */
export function planMembershipChange(
  m: Pick<Membership, "voters" | "approved" | "removed">, op: ProposeOp, node: string, self: string,
): MembershipPlan | { reject: string } {
  if (op !== "remove" && !isNodeId(node)) return { reject: "not a node id (16 lowercase hex characters)" };
  const voters = [...m.voters];
  const approved = (m.approved ?? []).filter((a) => a !== node);
  const removed = (m.removed ?? []).filter((r) => r !== node);
  const isVoter = voters.includes(node);
  switch (op) {
    case "add":
      if (isVoter) return { reject: "already a voter" };
      if (voters.length >= 64) return { reject: "64 voters at most" };
      return { voters: [...voters, node].sort(), approved, removed };
    case "approve":
      if (isVoter) return { reject: "already a voter" };
      if (m.approved?.includes(node)) return { reject: "already approved" };
      if (approved.length >= 64) return { reject: "64 pending approvals at most" };
      return { voters, approved: [...approved, node].sort(), removed };
    case "remove":
      if (node === self && isVoter) return { reject: "the leader cannot remove itself; transfer leadership first" };
      if (!isVoter && !m.approved?.includes(node)) return { reject: "not a voter" };
      // Kept out of auto_join by every later leader too (review: a removal lived in one leader's
      // memory, and the next leader added a removed node that still ran straight back).
      return { voters: voters.filter((v) => v !== node), approved, removed: [...removed, node].slice(-64) };
  }
}
