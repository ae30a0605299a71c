// The one owner of fencing on a database node: the lease file (arm, revoke, disarm), the stop of
// PostgreSQL when the lease is lost, and the watchdog process that stops it when this agent cannot.
//
// Why a fence needs no lock and cannot be undone by a task (ordering argument):
// - fence() runs at once, beside whatever the PostgreSQL executor is doing: it never waits in the
//   queue behind a round, a clone or a rewind.
// - fence() first revokes the lease (LeaseFile.revoke) and bumps `epoch`, synchronously, before
//   any await. Every task that can make a primary (start as primary, promote, initdb) runs inside
//   asPrimary(), which refuses to start without a lease this agent armed and has not revoked: a
//   task that starts after the fence cannot bring a primary up until arm() of a new lease.
// - A task checks the lease again right before its step that makes the primary (the pg_ctl start,
//   pg_promote): `still()`, handed to it, throws NoLease when a fence came or the lease ran out
//   since the task began. A fence during the task's slow preparation (writing the files, a
//   pg_controldata, the timeline reservation, a stalled event loop) finds no primary to stop, and
//   the watchdog fences once per deadline: without the check the task started the primary anyway,
//   after the lease (review).
// - A task that started before the fence (it checked the lease, then the fence came while pg_ctl
//   start or pg_promote ran) sees `epoch` changed when it ends and stops PostgreSQL again before
//   it returns (then it fails): whatever it brought up goes down in the same tick.
// - Concurrent fence() calls share one stop and one history entry.
// - The lease file keeps its deadline after a fence: the watchdog still stops PostgreSQL at the
//   deadline if this stop failed. It is disarmed only once no primary runs here (settle()).
import type { Logger } from "../log.ts";
import { type Clock, realClock } from "./clock.ts";
import type { LeaseFile } from "./lease-file.ts";

/** A task that would make a primary found no lease this agent holds. */
export class NoLease extends Error {
  override readonly name = "NoLease";
}

export interface FencerOptions {
  lease: LeaseFile;
  /**
   * Stop PostgreSQL now (pg_ctl stop -m immediate: a server that cannot react, its processes
   * stopped or still there 2 s after SIGQUIT, is killed with SIGKILL; src/postgres/ctl.ts `stop`):
   * false when none ran; throws when it could not.
   */
  stopPostgres(): Promise<boolean>;
  /** A primary may run here (the last observation said so). */
  primaryMayRun(): boolean;
  /** An asPrimary() task succeeded: a primary may run here from now on (until the next observation). */
  primaryStarted(): void;
  /** Add one "fence" entry to the cluster history. */
  record(reason: string): void;
  log: Logger;
  clock?: Clock;
  /** How often the watchdog process is checked (and restarted if gone). */
  watchdogEveryMs?: number;
}

export class Fencer {
  private epoch = 0;
  private inFlight: Promise<boolean> | null = null;
  /** asPrimary() tasks running now. */
  private guarded = 0;
  private cancelWatchdog: (() => void) | null = null;
  /** The last lease-file write failure logged (each new one is logged once). */
  private armError = "";
  private disarmError = "";
  private readonly clock: Clock;
  /** Fences that stopped (or tried to stop) PostgreSQL, for /metrics. */
  fences = 0;

  constructor(private readonly o: FencerOptions) {
    this.clock = o.clock ?? realClock;
  }

  /** Start the watchdog process now and keep checking it until stop(). */
  start(): void {
    if (this.cancelWatchdog) return;
    const tick = () => {
      try {
        this.o.lease.ensureWatchdog();
      } catch (e) {
        this.o.log.error(`fencing watchdog: ${(e as Error).message}`);
      }
      this.cancelWatchdog = this.clock.after(this.o.watchdogEveryMs ?? 1000, tick);
    };
    tick();
  }

  stop(): void {
    this.cancelWatchdog?.();
    this.cancelWatchdog = null;
  }

  /**
   * A valid lease until `until` (local monotonic ms) in `term`: arm or extend the lease file. An
   * extension whose write fails (state_dir full or read-only) while the file still holds this term's
   * lease is tried again by the next heartbeat (the lease held is the one written, ending where the
   * watchdog fences). Any other failure (a first write of the term, a shorter lease end the file must
   * take, or the written lease over): false, the primary is fenced at once, and the caller resigns.
   * So too a lease end already past on the host clock (the host was suspended since the lease was
   * counted: LeaseFile.arm): it is no lease.
   */
  arm(term: number, until: number): boolean {
    try {
      const ahead = this.o.lease.arm(term, until);
      this.armError = "";
      if (ahead) return true;
      this.o.log.error(`the lease of term ${term} has already ended on the host clock (the host was suspended since it was counted): fencing and giving up the leadership`);
      void this.fence(`the lease of term ${term} had ended on the host clock (a host suspend)`);
      return false;
    } catch (e) {
      const why = (e as Error).message;
      if (this.o.lease.holdsTerm(term) && this.o.lease.isExtension(term, until)) {
        if (why !== this.armError) this.o.log.warn(`cannot write the lease file (${why}): the lease written before stands and ends first; trying again at the next heartbeat`);
        this.armError = why;
        return true;
      }
      this.o.log.error(`cannot write the lease file (${why}): the fencing watchdog cannot guard a primary here; fencing and giving up the leadership`);
      this.armError = why;
      void this.fence(`the lease file could not be written: ${why}`);
      return false;
    }
  }

  /** This agent holds a lease it armed and has not lost. */
  holds(): boolean {
    return this.o.lease.holds();
  }

  /** Disarm rule: not leading, not acquiring the lease, and no primary running here. */
  settle(term: number, s: { leading: boolean; acquiringLease: boolean; primaryRunning: boolean }): void {
    // The watchdog stays armed while a primary runs here without the lease: it is the second line.
    if (!s.leading && !s.acquiringLease && !s.primaryRunning && this.guarded === 0 && !this.inFlight) {
      try {
        this.o.lease.disarm(term);
        this.disarmError = "";
      } catch (e) {
        // The file keeps its deadline: the watchdog fences whatever server runs here at it (a
        // standby started meanwhile is stopped then and started again by a round). Tried again next round.
        const why = (e as Error).message;
        if (why !== this.disarmError) this.o.log.warn(`cannot write the lease file to disarm it (${why}): trying again next round`);
        this.disarmError = why;
      }
    }
  }

  /**
   * The lease is lost: stop writes now. Resolves once PostgreSQL is stopped (true, also when none
   * ran) or the stop failed (false: only the watchdog stops it, at the lease file's deadline).
   */
  fence(reason: string): Promise<boolean> {
    this.o.lease.revoke();
    this.epoch++;
    if (this.inFlight) return this.inFlight;
    if (!this.o.primaryMayRun() && this.guarded === 0) return Promise.resolve(true);
    const p = this.stopNow(reason).finally(() => {
      if (this.inFlight === p) this.inFlight = null;
    });
    this.inFlight = p;
    return p;
  }

  /**
   * Run a task that may make this node's PostgreSQL a primary. Refused without a lease; if the
   * lease is lost while it runs, PostgreSQL is stopped again when it ends and it fails. The task
   * calls `still()` synchronously right before the step that makes the primary (a pg_ctl start,
   * pg_promote): it throws NoLease when the lease was lost (fenced) or ran out since the task began.
   */
  async asPrimary<T>(what: string, fn: (still: () => void) => Promise<T>): Promise<T> {
    if (!this.holds()) throw new NoLease(`${what}: this node holds no lease (lost or not yet armed)`);
    const epoch = this.epoch;
    const still = () => {
      if (this.epoch !== epoch || !this.holds()) throw new NoLease(`${what}: the lease was lost or ran out before the step that makes the primary: not taken`);
    };
    this.guarded++;
    let result: T;
    try {
      result = await fn(still);
    } finally {
      this.guarded--;
      if (this.epoch !== epoch) {
        await this.inFlight;
        await this.stopNow(`${what} ended after the lease was lost`);
        // biome-ignore lint/correctness/noUnsafeFinally: the task must fail when its primary was stopped again
        throw new NoLease(`${what}: the lease was lost meanwhile; PostgreSQL stopped again`);
      }
    }
    // Before the next observation says so: a fence right after this task must stop the server.
    this.o.primaryStarted();
    return result;
  }

  private async stopNow(reason: string): Promise<boolean> {
    this.o.log.warn(`fencing PostgreSQL: ${reason}`);
    const t0 = this.clock.now();
    try {
      // A round that saw the primary before an earlier fence stopped it finds nothing left to stop.
      if (!(await this.o.stopPostgres())) {
        this.o.log.info("fence: no PostgreSQL server was running");
        return true;
      }
      this.fences++;
      this.o.record(`${reason}: primary stopped in ${Math.round(this.clock.now() - t0)} ms`);
      return true;
    } catch (e) {
      this.fences++;
      this.o.log.error(`fence failed: ${(e as Error).message}; the watchdog stops PostgreSQL at the lease deadline`);
      this.o.record(`${reason}: stop failed (${(e as Error).message.slice(0, 200)}); left to the watchdog`);
      return false;
    }
  }
}
