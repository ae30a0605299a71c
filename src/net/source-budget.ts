// How much verification work unauthenticated datagrams may cost: a token bucket per source
// address, refilled over time and charged only for datagrams that fail, plus one bucket shared
// by all sources that have not recently sent anything authentic. Each dropped datagram then costs
// a map lookup, so a flood (many addresses included) cannot starve the event loop the election
// runs on. A source address is not authenticated (UDP sources are easy to forge): failures forged
// with a real peer's address empty that peer's own bucket, so a recently authentic source whose
// own bucket is spent is still verified out of a third bucket shared by such sources (its genuine
// datagrams keep getting through unless that shared budget is spent too). Pure arithmetic over a
// monotonic clock passed in.

export interface BudgetLimits {
  perSourcePerSec: number; perSourceBurst: number; // failures each source may cost
  sharedPerSec: number; sharedBurst: number; // failures all not-recently-authentic sources may cost together
  trustMs: number; // a source that sent an authentic datagram skips the shared bucket this long
  trustedPerSec: number; trustedBurst: number; // verifications of trusted sources whose own bucket is spent, together
  maxSources: number; // buckets kept; the oldest is forgotten first (the shared bucket still bounds)
}

export const BEACON_LIMITS: BudgetLimits = {
  perSourcePerSec: 50, perSourceBurst: 100, sharedPerSec: 500, sharedBurst: 1000, trustMs: 30_000, trustedPerSec: 500, trustedBurst: 1000, maxSources: 4096,
};

interface Bucket {
  tokens: number;
  at: number;
}

export class SourceBudget {
  private readonly sources = new Map<string, Bucket>();
  private readonly trusted = new Map<string, number>(); // source → monotonic ms until which it is trusted
  private readonly shared: Bucket;
  private readonly trustedPool: Bucket;

  constructor(private readonly l: BudgetLimits, now: number) {
    this.shared = { tokens: l.sharedBurst, at: now };
    this.trustedPool = { tokens: l.trustedBurst, at: now };
  }

  /** Whether a datagram from `source` may be verified at all. */
  allows(source: string, now: number): boolean {
    const b = this.sources.get(source);
    const own = !b || refill(b, this.l.perSourcePerSec, this.l.perSourceBurst, now) >= 1;
    if (this.isTrusted(source, now)) return own || refill(this.trustedPool, this.l.trustedPerSec, this.l.trustedBurst, now) >= 1;
    if (!own) return false;
    return refill(this.shared, this.l.sharedPerSec, this.l.sharedBurst, now) >= 1;
  }

  /** A datagram from `source` was verified and refused: charge its buckets. */
  failed(source: string, now: number): void {
    let b = this.sources.get(source);
    if (!b) {
      if (this.sources.size >= this.l.maxSources) this.sources.delete(this.sources.keys().next().value!);
      b = { tokens: this.l.perSourceBurst, at: now };
      this.sources.set(source, b);
    }
    const own = refill(b, this.l.perSourcePerSec, this.l.perSourceBurst, now);
    b.tokens = Math.max(0, own - 1);
    if (!this.isTrusted(source, now)) {
      this.shared.tokens = Math.max(0, refill(this.shared, this.l.sharedPerSec, this.l.sharedBurst, now) - 1);
    } else if (own < 1) {
      this.trustedPool.tokens = Math.max(0, refill(this.trustedPool, this.l.trustedPerSec, this.l.trustedBurst, now) - 1);
    }
  }

  private isTrusted(source: string, now: number): boolean {
    return (this.trusted.get(source) ?? -Infinity) >= now;
  }

  /** Sources with a bucket now (bounded by maxSources). */
  tracked(): number {
    return this.sources.size;
  }

  /** A datagram from `source` was authentic. */
  succeeded(source: string, now: number): void {
    this.trusted.delete(source); // re-inserted last: the map stays ordered by age
    if (this.trusted.size >= this.l.maxSources) this.trusted.delete(this.trusted.keys().next().value!);
    this.trusted.set(source, now + this.l.trustMs);
  }
}

function refill(b: Bucket, perSec: number, burst: number, now: number): number {
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perSec) / 1000);
  b.at = now;
  return b.tokens;
}
