// Notices a dead postmaster between monitoring rounds. Event first: the loop keeps one idle
// connection to the local server (its monitoring client), and a PostgreSQL backend sends
// "terminating connection due to unexpected postmaster exit" the moment its postmaster dies, then
// exits, so that connection closes: either calls closed() (the error comes first, by up to 100 ms:
// src/postgres/sql.ts onEnding), which then checks /proc/<pid>/stat every BURST_EVERY_MS for BURST_MS and
// reports `gone` as soon as the process has exited (or is a zombie). A slow safety poll every
// `everyMs` covers a server without that connection (starting, refusing it). Bun has no pidfd and
// the postmaster is not our child, so there is no exit notification to wait on directly.
import type { Clock } from "../../fence/clock.ts";
import { deadOrZombie, readPidFile } from "../../postgres/orphans.ts";

/** After the connection closed: how often, and how long, the pid is checked (its exit may lag the close by a few ms). */
const BURST_EVERY_MS = 5;
const BURST_MS = 500;

export interface PostmasterWatchOptions {
  clock: Clock;
  /** The safety poll's period. */
  everyMs: number;
  /** <data_dir>/postmaster.pid */
  pidFile: string;
  /** The postmaster `pid` has exited. Called once per pid. */
  gone: (pid: number) => void;
}

export class PostmasterWatch {
  private cancel: (() => void) | null = null;
  private running = false;
  private pid: number | null = null;
  /** The last pid reported gone: postmaster.pid keeps naming it after a crash. */
  private lastGone: number | null = null;
  private burstUntil = 0;

  constructor(private readonly o: PostmasterWatchOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    this.cancel?.();
    this.cancel = null;
  }

  /** A connection to the local server closed: if its postmaster died, report it within a few ms. */
  closed(): void {
    if (!this.running) return;
    if (this.pid === null) this.learnPid();
    if (this.pid === null) return; // no server known to be running: nothing to watch for
    this.burstUntil = this.o.clock.now() + BURST_MS;
    this.schedule(0);
  }

  private schedule(ms: number): void {
    this.cancel?.();
    this.cancel = this.o.clock.after(ms, () => {
      this.cancel = null;
      this.check();
      if (this.running) this.schedule(this.o.clock.now() < this.burstUntil ? BURST_EVERY_MS : this.o.everyMs);
    });
  }

  private check(): void {
    if (this.pid === null) this.learnPid();
    if (this.pid === null) return;
    if (!deadOrZombie(this.pid)) return;
    this.lastGone = this.pid;
    this.pid = null;
    this.burstUntil = 0;
    this.o.gone(this.lastGone);
  }

  private learnPid(): void {
    const p = readPidFile(this.o.pidFile);
    if (p !== null && p !== this.lastGone) this.pid = p;
  }
}
