// One serial executor for everything that touches the local PostgreSQL: the monitoring round,
// detach for a vote, catch-up and stop for a switchover, rejoin, clone, promote. A promise queue:
// one task at a time in call order; a caller that must not wait long says so (maxWaitMs) and gets
// a QueueTimeout instead of waiting behind a long task (a clone can take hours). The fence does
// not go through here (src/fence/fencer.ts): it must start at once.

import { type Clock, realClock } from "../../fence/clock.ts";

export { type Clock, realClock };

/** A task did not start within its maxWaitMs (the task ahead of it still runs). */
export class QueueTimeout extends Error {
  override readonly name = "QueueTimeout";
}
/** The executor was closed (the agent stops) before the task started. */
export class ExecutorClosed extends Error {
  override readonly name = "ExecutorClosed";
}

interface Job {
  name: string;
  fn: () => Promise<unknown>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  cancelWait?: () => void;
}

export class SerialExecutor {
  private readonly queue: Job[] = [];
  private current: string | null = null;
  private closed = false;

  constructor(private readonly clock: Clock = realClock) {}

  /** The task running now (its name), or null. */
  get running(): string | null {
    return this.current;
  }

  /** Names of the tasks waiting, in order. */
  get waiting(): string[] {
    return this.queue.map((j) => j.name);
  }

  /** Run `fn` after every task queued before it; reject with QueueTimeout if it has not started within maxWaitMs. */
  run<T>(name: string, fn: () => Promise<T>, opts: { maxWaitMs?: number } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new ExecutorClosed(`${name}: the PostgreSQL executor is closed`));
    return new Promise<T>((resolve, reject) => {
      const job: Job = { name, fn, resolve: resolve as (v: unknown) => void, reject };
      if (opts.maxWaitMs !== undefined) {
        const ms = opts.maxWaitMs;
        job.cancelWait = this.clock.after(ms, () => {
          const i = this.queue.indexOf(job);
          if (i < 0) return;
          this.queue.splice(i, 1);
          reject(new QueueTimeout(`${name}: not started within ${ms} ms (busy with ${this.current ?? "nothing"})`));
        });
      }
      this.queue.push(job);
      this.pump();
    });
  }

  /** Refuse new tasks and drop the waiting ones (rejected with ExecutorClosed); the running one finishes. */
  close(): void {
    this.closed = true;
    for (const j of this.queue.splice(0)) {
      j.cancelWait?.();
      j.reject(new ExecutorClosed(`${j.name}: the PostgreSQL executor is closed`));
    }
  }

  private pump(): void {
    if (this.current !== null) return;
    const job = this.queue.shift();
    if (!job) return;
    job.cancelWait?.();
    this.current = job.name;
    void (async () => {
      try {
        job.resolve(await job.fn());
      } catch (e) {
        job.reject(e);
      } finally {
        this.current = null;
        this.pump();
      }
    })();
  }
}
