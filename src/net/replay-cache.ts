// Bounded set of recently seen keys, each kept until its own expiry (wall-clock ms).

export class ReplayCache {
  private readonly seen = new Map<string, number>(); // key → expiry; insertion order ≈ age

  constructor(private readonly maxEntries = 10_000) {}

  /** Records `key`; false if it was already present and unexpired (a replay). */
  add(key: string, expiresAt: number, now = Date.now()): boolean {
    if (this.has(key, now)) return false;
    this.prune(now);
    // Only authenticated datagrams get here, so the cap only guards against a misbehaving member;
    // evicting the oldest then merely weakens replay detection for the oldest nonces.
    while (this.seen.size >= this.maxEntries) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, expiresAt);
    return true;
  }

  has(key: string, now = Date.now()): boolean {
    const exp = this.seen.get(key);
    return exp !== undefined && exp >= now;
  }

  size(): number {
    return this.seen.size;
  }

  /** Drops expired entries from the front; stops at the first live one (amortised O(1)). */
  private prune(now: number): void {
    for (const [k, exp] of this.seen) {
      if (exp >= now) break;
      this.seen.delete(k);
    }
  }
}
