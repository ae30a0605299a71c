// The monitoring round's timer and its owner: a round every `periodMs` through the serial
// executor, one more right away on kick() (at most one waits), nothing after stop().
import type { Clock } from "../../fence/clock.ts";
import type { SerialExecutor } from "./executor.ts";

export class RoundScheduler {
  private cancelTimer: (() => void) | null = null;
  private queued = false;
  private stopped = false;

  /** `round` runs inside the executor; it returns when it started (clock ms). */
  constructor(private readonly exec: SerialExecutor, private readonly clock: Clock, private readonly periodMs: number, private readonly round: () => Promise<void>) {}

  start(): void {
    this.schedule(0);
  }

  /** A round now: after the task running, if any (a round already waiting covers this). */
  kick(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (ms === 0 && this.queued) return; // one round waits already: it sees the change
    this.cancelTimer?.();
    this.cancelTimer = this.clock.after(ms, () => {
      this.cancelTimer = null;
      this.enqueue();
    });
  }

  private enqueue(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    void this.exec.run("round", async () => {
      this.queued = false;
      const t0 = this.clock.now();
      await this.round();
      return t0;
    }).then(
      (t0) => this.schedule(this.queued ? this.periodMs : Math.max(0, this.periodMs - (this.clock.now() - t0))),
      () => undefined, // the executor closed: the loop stops
    );
  }
}
