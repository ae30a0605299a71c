// `pgherd failover --to X` and a switchover to X let X promote even while the cluster is paused.
// The permit is for the leadership the request leads to: the first term X leads within its
// validity, never a later one, so a pause set after that holds again (a new leader of a later
// term, promoting on an old permit, was found by test/e2e/failover-manual.e2e.test.ts). It ends
// as well when another node leads a term after the one it was granted in (the request's election
// went elsewhere), and a repeated request does not unbind a permit already in use.

/** Valid until `until` (ms); granted while `grantedTerm` was the newest term known; `term`: the term it was used in. */
export interface PromotionPermit { until: number; grantedTerm: number; term: number | null }

export const PERMIT_MS = 60_000;

export interface Leadership { leading: boolean; term: number; leaderId: string | null }

export function grantPermit(now: number, term: number, current: PromotionPermit | null = null): PromotionPermit {
  if (current && current.term !== null && now < current.until) return current; // in use: a late duplicate request changes nothing
  return { until: now + PERMIT_MS, grantedTerm: term, term: null };
}

/** Whether the permit allows a promotion now, and the permit to keep (bound to the term led). */
export function checkPermit(p: PromotionPermit | null, now: number, l: Leadership): { allowed: boolean; permit: PromotionPermit | null } {
  if (!p || now >= p.until) return { allowed: false, permit: null };
  if (!l.leading) {
    if (l.leaderId !== null && l.term > p.grantedTerm) return { allowed: false, permit: null }; // another node won after the request
    return { allowed: p.term === null, permit: p };
  }
  const bound = p.term ?? l.term;
  return bound === l.term ? { allowed: true, permit: { ...p, term: bound } } : { allowed: false, permit: null };
}
