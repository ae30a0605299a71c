// The etcd backend's leadership as the agent sees it: the term this node leads with its fencing
// deadline, the leader it last saw, and the leadership counters. It owns the lease-deadline timer:
// at the deadline it fences unless a renewal (or failsafe confirmations) moved it first.
import type { DriverCounters, DriverHooks } from "../../agent/election-driver.ts";
import type { Logger } from "../../log.ts";

export interface LeadershipDeps {
  hooks: DriverHooks;
  log: Logger;
  clock: () => number;
  /** The voters whose failsafe confirmation is missing (named when the deadline passes). */
  missing: () => string[];
}

export class Leadership {
  readonly counters: DriverCounters = { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0 };
  private leading: { term: number; until: number } | null = null;
  private leaderId: string | null = null;
  private deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(private readonly d: LeadershipDeps) {}

  /** This node's term and fencing deadline while it leads. */
  current(): { term: number; until: number } | null {
    return this.leading;
  }

  leader(): string | null {
    return this.leaderId;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.deadlineTimer);
  }

  win(term: number, until: number): void {
    this.counters.leadershipsWon++;
    this.d.log.info(`leading term ${term} with a valid lease (etcd)`);
    this.extend(term, until);
    queueMicrotask(() => this.d.hooks.leadershipChanged());
  }

  /** Arms (or extends) the fencing lease; a timer fences at the deadline unless a renewal moves it. */
  extend(term: number, until: number): void {
    this.leading = { term, until };
    this.d.hooks.leaseHeld(term, until);
    this.armDeadline();
  }

  /** Fences; false when the stop failed (the watchdog stops PostgreSQL at the lease deadline). */
  async lose(reason: string): Promise<boolean> {
    const was = this.leading;
    if (!was) return true;
    this.leading = null;
    clearTimeout(this.deadlineTimer);
    this.counters.leasesLost++;
    this.d.log.warn(`fenced: no longer leading term ${was.term} (${reason}); writes must stop`);
    const stopped = await this.d.hooks.leaseLost(reason).catch((e: Error) => (this.d.log.error(`fence: ${e.message}`), false));
    queueMicrotask(() => this.d.hooks.leadershipChanged());
    return stopped !== false;
  }

  leaderChanged(id: string | null, line: string): void {
    this.leaderId = id;
    this.counters.leaderChanges++;
    this.d.log.info(line);
    queueMicrotask(() => this.d.hooks.leadershipChanged());
  }

  /** A timer may fire a little before the monotonic clock reaches its time: then it is armed again for the rest. */
  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    if (!this.leading || this.stopped) return;
    const left = this.leading.until - this.d.clock();
    if (left <= 0) {
      const missing = this.d.missing();
      return void this.lose(`the etcd lease could not be renewed in time${missing.length > 0 ? `; failsafe: no confirmation from ${missing.join(", ")}` : ""}`);
    }
    this.deadlineTimer = setTimeout(() => this.armDeadline(), Math.ceil(left));
  }
}
