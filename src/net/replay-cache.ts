// Bounded set of recently seen keys, each kept until its own expiry (wall-clock ms).

export type AddResult = "added" | "seen" | "full";

export class ReplayCache {
  private readonly seen = new Map<string, number>(); // key → expiry; insertion order ≈ age

  /**
   * `whenFull`: "refuse" never drops a live key (a key dropped early could be replayed), so a new
   * one is refused ("full") while maxEntries live keys are held; "evict" drops the oldest instead
   * (for keys whose loss costs no safety, e.g. our own beacon nonces).
   */
  constructor(private readonly maxEntries: number, private readonly whenFull: "refuse" | "evict") {}

  /** Records `key`: "seen" if it is present and unexpired (a replay), "full" if refused for room. */
  add(key: string, expiresAt: number, now = Date.now()): AddResult {
    if (this.has(key, now)) return "seen";
    this.prune(now);
    if (this.seen.size >= this.maxEntries) {
      if (this.whenFull === "refuse") {
        this.sweep(now); // expiries are not in insertion order when senders' clocks differ
        if (this.seen.size >= this.maxEntries) return "full";
      } else {
        while (this.seen.size >= this.maxEntries) this.seen.delete(this.seen.keys().next().value!);
      }
    }
    this.seen.set(key, expiresAt);
    return "added";
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

  /** Drops every expired entry (O(size)): only when full. */
  private sweep(now: number): void {
    for (const [k, exp] of this.seen) if (exp < now) this.seen.delete(k);
  }
}
