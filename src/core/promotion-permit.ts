// `pgherd failover --to X` and a switchover to X let X promote even while the cluster is paused.
// The permit is for the leadership the request leads to: the first term X leads within its
// validity, never a later one, so a pause set after that holds again (a new leader of a later
// term, promoting on an old permit, was found by test/e2e/failover-manual.e2e.test.ts). It ends
// as well when another node leads a term after the one it was granted in (the request's election
// went elsewhere), and a repeated request does not unbind a permit already in use.

/** Valid until `until` (ms); granted while `grantedTerm` was the newest term known; `term`: the term it was used in. */
export interface PromotionPermit { until: number; grantedTerm: number; term: number | null }

export const PERMIT_MS = 60_000;

/** This node's view: `leading` once it holds the lease; `leaderId` may be its own `self` before that. */
export interface Leadership { leading: boolean; term: number; leaderId: string | null; self: string }

export function grantPermit(now: number, l: Leadership, current: PromotionPermit | null = null): PromotionPermit {
  // In use in the term this node leads: a late duplicate of the request changes nothing. Any other
  // request (this node no longer leads that term) is a new one.
  if (current && current.term !== null && now < current.until && l.leading && current.term === l.term) return current;
  return { until: now + PERMIT_MS, grantedTerm: l.term, term: null };
}

/** Whether the permit allows a promotion now, and the permit to keep (bound to the term led). */
export function checkPermit(p: PromotionPermit | null, now: number, l: Leadership): { allowed: boolean; permit: PromotionPermit | null } {
  if (!p || now >= p.until) return { allowed: false, permit: null };
  if (!l.leading) {
    if (l.leaderId !== null && l.leaderId !== l.self && l.term > p.grantedTerm) return { allowed: false, permit: null }; // another node won after the request
    return { allowed: p.term === null, permit: p };
  }
  const bound = p.term ?? l.term;
  return bound === l.term ? { allowed: true, permit: { ...p, term: bound } } : { allowed: false, permit: null };
}
