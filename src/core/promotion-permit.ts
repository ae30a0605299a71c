// `pgherd failover --to X` and a switchover to X let X promote even while the cluster is paused.
// The permit is for the leadership the request leads to: the first term X leads within its
// validity, never a later one, so a pause set after that holds again (a new leader of a later
// term, promoting on an old permit, was found by test/e2e/failover-manual.e2e.test.ts).

/** Valid until `until` (ms); `term`: the term it was used in, bound the first time it is asked while leading. */
export interface PromotionPermit { until: number; term: number | null }

export const PERMIT_MS = 60_000;

export function grantPermit(now: number): PromotionPermit {
  return { until: now + PERMIT_MS, term: null };
}

/** Whether the permit allows a promotion now, and the permit to keep (bound to the term led). */
export function checkPermit(p: PromotionPermit | null, now: number, leadership: { leading: boolean; term: number }): { allowed: boolean; permit: PromotionPermit | null } {
  if (!p || now >= p.until) return { allowed: false, permit: null };
  if (!leadership.leading) return { allowed: p.term === null, permit: p };
  const bound = p.term ?? leadership.term;
  return bound === leadership.term ? { allowed: true, permit: { ...p, term: bound } } : { allowed: false, permit: null };
}
