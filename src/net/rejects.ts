// Counts dropped/rejected network input by reason and logs it without letting a flood flood the log.
import type { Logger } from "../log.ts";

export class RejectLog {
  private readonly counts: Record<string, number> = {};
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  /** At most `burst` lines per `windowMs`; the rest are summarised once the window rolls over. */
  constructor(private readonly log: Logger, private readonly burst = 20, private readonly windowMs = 10_000) {}

  /** Counts `reason` and logs it with the remote address; "debug" suits benign noise (a neighbouring cluster). */
  add(reason: string, remote: string, detail?: string, level: "warn" | "debug" = "warn"): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
    const now = performance.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.suppressed > 0) this.log.warn(`${this.suppressed} more rejects not logged in the last ${Math.round((now - this.windowStart) / 1000)}s; counters: ${JSON.stringify(this.counts)}`);
      this.windowStart = now;
      this.logged = 0;
      this.suppressed = 0;
    }
    if (this.logged >= this.burst) {
      this.suppressed++;
      return;
    }
    this.logged++;
    this.log[level](`rejected ${remote}: ${reason}${detail ? ` (${detail})` : ""}`);
  }

  /** Counts without logging: for expected noise such as our own broadcast looping back. */
  count(reason: string): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
  }

  snapshot(): Record<string, number> {
    return { ...this.counts };
  }
}
