// Notices a dead postmaster between monitoring rounds: every `everyMs` one read of
// /proc/<pid>/stat (the pid from postmaster.pid, read again only while none is known), and
// `gone` at once when that process has exited (or is a zombie). Bun has no pidfd and the
// postmaster is not our child, so this short, cheap poll is how the loop learns of a crash
// within ~everyMs instead of at its next round (postgres.loop_ms).
import type { Clock } from "../../fence/clock.ts";
import { deadOrZombie, readPidFile } from "../../postgres/orphans.ts";

export interface PostmasterWatchOptions {
  clock: Clock;
  everyMs: number;
  /** <data_dir>/postmaster.pid */
  pidFile: string;
  /** The postmaster `pid` has exited. Called once per pid. */
  gone: (pid: number) => void;
}

export class PostmasterWatch {
  private cancel: (() => void) | null = null;
  private pid: number | null = null;
  /** The last pid reported gone: postmaster.pid keeps naming it after a crash. */
  private lastGone: number | null = null;

  constructor(private readonly o: PostmasterWatchOptions) {}

  start(): void {
    if (this.cancel) return;
    const tick = () => {
      this.check();
      this.cancel = this.o.clock.after(this.o.everyMs, tick);
    };
    this.cancel = this.o.clock.after(0, tick);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }

  private check(): void {
    if (this.pid === null) {
      const p = readPidFile(this.o.pidFile);
      if (p === null || p === this.lastGone) return;
      this.pid = p;
    }
    if (!deadOrZombie(this.pid)) return;
    this.lastGone = this.pid;
    this.pid = null;
    this.o.gone(this.lastGone);
  }
}
