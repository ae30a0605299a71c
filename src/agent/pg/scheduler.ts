// The monitoring round's timer and its owner: a round every `periodMs` through the serial
// executor, one more right away on kick() (at most one waits), nothing after stop().
import type { Clock } from "../../fence/clock.ts";
import type { SerialExecutor } from "./executor.ts";

export class RoundScheduler {
  private cancelTimer: (() => void) | null = null;
  /** The pending timer is a kick's (due at once), not the period's. */
  private kickPending = false;
  private queued = false;
  private stopped = false;

  /** `round` runs inside the executor. */
  constructor(private readonly exec: SerialExecutor, private readonly clock: Clock, private readonly periodMs: number, private readonly round: () => Promise<void>) {}

  start(): void {
    this.schedule(0, true);
  }

  /** A round now: after the task running, if any (a round already waiting covers this). */
  kick(): void {
    this.schedule(0, true);
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
  }

  private schedule(ms: number, kick: boolean): void {
    if (this.stopped) return;
    if (kick && this.queued) return; // one round waits already: it sees the change
    if (!kick && this.kickPending) return; // a kicked round is due at once: the period starts after it
    this.cancelTimer?.();
    this.kickPending = kick;
    this.cancelTimer = this.clock.after(ms, () => {
      this.cancelTimer = null;
      this.kickPending = false;
      this.enqueue();
    });
  }

  private enqueue(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    this.exec.run("round", async () => {
      this.queued = false;
      const t0 = this.clock.now();
      try {
        await this.round();
      } finally {
        // Before the executor starts the next task: a round queued meanwhile schedules after itself.
        if (!this.queued) this.schedule(Math.max(0, this.periodMs - (this.clock.now() - t0)), false);
      }
    }).catch(() => undefined); // the executor closed: the loop stops
  }
}
