// `pgherd member force`: the way out when a majority of the voters is gone for good (two of three
// hosts destroyed). The survivors cannot elect anyone and `pgherd member remove` needs a leader, so
// an operator rewrites a stopped survivor's stored election state: the voters become the survivors
// named, the others are removed. Pure: the stored state and the operator's list in, the state to
// store (or why not) out. docs/operations.md "A majority lost for good" says when this is safe.
import { majority } from "./quorum.ts";
import type { Guard, Membership } from "./messages.ts";

export interface ForceInput {
  term: number;
  membership: Membership | null;
  /** This node's id. */
  self: string;
  /** false on a witness: it cannot be the one voter. */
  canLead: boolean;
  /** The voters to keep, ids (this node's included). */
  keep: readonly string[];
}

export type ForcePlan =
  | {
    ok: true;
    /** What to store: a term past every one this node saw, no vote, the forced membership. */
    term: number;
    membership: Membership;
    /** The voters removed. */
    lost: string[];
  }
  | { ok: false; reason: string };

/**
 * The forced membership, or why not. Its version (term, index) is newer than any this node holds,
 * so a survivor that did not run the command adopts it from the first heartbeat of a leader elected
 * with it; the term moves on with it (a new leader stamps its membership in its own term, and no
 * earlier term's leader may lead this one). Refused when the kept voters are a majority of the
 * current ones: the cluster elects a leader without it, and `pgherd member remove` goes through
 * that leader (a forced change beside a working majority could make two).
 */
export function planForcedMembership(x: ForceInput): ForcePlan {
  const m = x.membership;
  if (!m) return { ok: false, reason: "this node holds no membership: it never joined a cluster (nothing to recover)" };
  const keep = [...new Set(x.keep)].sort();
  const unknown = keep.filter((id) => !m.voters.includes(id));
  if (unknown.length > 0) return { ok: false, reason: `not a voter of the membership this node holds: ${unknown.join(", ")} (voters: ${m.voters.join(", ")})` };
  if (!keep.includes(x.self)) return { ok: false, reason: `this node (${x.self}) is not among the voters to keep: run the command on a surviving voter, naming itself` };
  if (keep.length >= majority(m.voters.length)) {
    return { ok: false, reason: `${keep.length} of ${m.voters.length} voters are a majority: they elect a leader without this; take the lost ones out with \`pgherd member remove\`` };
  }
  if (keep.length === 1 && !x.canLead) return { ok: false, reason: "this node is a witness: it cannot lead alone; keep a database node with it" };
  const lost = m.voters.filter((v) => !keep.includes(v));
  const term = Math.max(x.term, m.term) + 1;
  const approved = (m.approved ?? []).filter((a) => !lost.includes(a));
  const removed = [...(m.removed ?? []).filter((r) => !lost.includes(r) && !keep.includes(r)), ...lost].slice(-64);
  const membership: Membership = {
    term, index: m.index + 1, voters: keep,
    ...(approved.length > 0 ? { approved } : {}),
    removed,
  };
  return { ok: true, term, membership, lost };
}

/**
 * The guard stored past `--accept-data-loss`: no block nor floor, as a forced election leaves, and
 * the timeline reservation kept (no two histories share a number). Stamped in the forced term (seq
 * + 1), newer than any guard a survivor holds, so that one that did not run the command takes it
 * from this node's first pre-vote request, as a forced election's winner re-stamps its guard in its
 * term: left at its version, a survivor's own copy of the block went on refusing every candidate
 * but the lost holder (review).
 */
export function clearedGuard(g: Guard, term: number): Guard {
  return { ...g, term, seq: g.seq + 1, block: false, holder: null, floor: null };
}
