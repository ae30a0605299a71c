// The agent's Consensus: the backend in force (built-in election or etcd) behind one object the
// rest of the agent keeps, so a migration (src/agent/migrate-driver.ts) can replace it at runtime.
// It owns the inner backend, the migration's hold and the fencing cap:
//  - hold: after leaving a backend this node takes no part in electing anyone in the new one
//    (no built-in prevote/vote sent or answered, no final position published) until `holdUntil`;
//  - cap: while the leader migrates to etcd its fencing deadline never passes its etcd lease's;
//  - a replaced backend's late callbacks (a lease renewed or lost by an in-flight step) are dropped:
//    the fencing deadline stays at what the migration counted on.
import type { Status } from "../core/election.ts";
import type { ElectionMsg, Membership } from "../core/messages.ts";
import type { Position } from "../core/position.ts";
import { type Backend, guardChangeAllowed, type LeaderState } from "../core/consensus-migrate.ts";
import type { ProposeOp } from "../core/election.ts";
import type { ClusterSummary } from "../consensus/clusters.ts";
import type { FailsafeMsg } from "../consensus/etcd/failsafe.ts";
import type { Consensus, DetachResult, DriverCounters, DriverHooks } from "./election-driver.ts";

export type MakeBackend = (backend: Backend, hooks: DriverHooks) => Consensus;

const ELECTING = new Set(["prevote", "vote"]);

export class SwitchableConsensus implements Consensus {
  private inner: Consensus;
  private gen = 0;
  private stopped = false;
  /** The guard as the backend in force showed it when it was stopped (what a migration carries over). */
  private frozenGuard: Pick<Status, "guard" | "guardCommitted" | "timelineCommitted"> | null = null;
  private running = false;
  private holdUntil = -Infinity;
  private cap: number | null = null;
  private position: Position | null = null;
  private failsafe: Parameters<NonNullable<Consensus["attachFailsafe"]>> | null = null;
  private readonly carried: DriverCounters = { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0 };

  constructor(private readonly make: MakeBackend, backend: Backend, private readonly hooks: DriverHooks, private readonly clock: () => number = () => performance.now()) {
    this.inner = make(backend, this.hooksFor(0));
  }

  get counters(): DriverCounters {
    const c = this.inner.counters;
    return { leaderChanges: this.carried.leaderChanges + c.leaderChanges, leadershipsWon: this.carried.leadershipsWon + c.leadershipsWon, leasesLost: this.carried.leasesLost + c.leasesLost };
  }

  /** Until when this node stays out of elections (a migration's hold); -Infinity: none. */
  holding(): number {
    return this.clock() < this.holdUntil ? this.holdUntil : -Infinity;
  }

  /** Stays out of elections until at least `until` (own clock): the hold at start of a migrated node. */
  holdAtLeast(until: number): void {
    this.holdUntil = Math.max(this.holdUntil, until);
  }

  /** How many times this node resigned (a migration that sees it change no longer counts on its lease). */
  resigns = 0;

  /** The fencing deadline's upper bound while the leader migrates to etcd (null: none). */
  setCap(until: number | null): void {
    this.cap = until;
  }

  /** Whether the backend in force was stopped (a migration is between two backends). */
  innerStopped(): boolean {
    return this.stopped;
  }

  /** Stops the backend in force: no renewal, no message, no callback from it any more. Its status stays readable. */
  stopInner(): void {
    if (this.stopped) return;
    this.stopped = true;
    const s = this.inner.status();
    this.frozenGuard = { guard: s.guard, guardCommitted: s.guardCommitted, timelineCommitted: s.timelineCommitted };
    this.gen++;
    this.inner.stop();
  }

  /**
   * Runs `backend` from now on (the old one stopped first), out of elections until `holdUntil`. If
   * it cannot be built (an etcd credentials file unreadable now), this throws and the old one stays
   * stopped: innerStopped(), its lease ending at its deadline (review: it was reported running, and
   * its lease held past its deadline, with no backend running at all).
   */
  replace(backend: Backend, holdUntil: number): void {
    this.stopInner();
    const next = this.make(backend, this.hooksFor(this.gen + 1));
    for (const k of Object.keys(this.carried) as (keyof DriverCounters)[]) this.carried[k] += this.inner.counters[k];
    this.gen++;
    this.stopped = false;
    this.frozenGuard = null;
    this.holdUntil = holdUntil;
    this.inner = next;
    if (this.failsafe) this.inner.attachFailsafe?.(...this.failsafe);
    if (this.position) void this.inner.setPosition(this.position);
    if (this.running) this.inner.start();
    queueMicrotask(() => this.hooks.leadershipChanged());
  }

  /** Callbacks of one generation of the inner backend; a stopped one's are dropped (fatal excepted). */
  private hooksFor(gen: number): DriverHooks {
    const live = () => gen === this.gen;
    const inHold = () => this.clock() < this.holdUntil;
    return {
      send: (to, msg) => {
        if (live() && !(inHold() && ELECTING.has(msg.t))) this.hooks.send(to, msg);
      },
      leaseHeld: (term, until) => {
        if (live()) this.hooks.leaseHeld(term, this.cap === null ? until : Math.min(until, this.cap));
      },
      leaseLost: (reason) => (live() ? this.hooks.leaseLost(reason) : Promise.resolve(true)),
      leadershipChanged: () => this.hooks.leadershipChanged(),
      suspended: () => (live() ? (this.hooks.suspended?.() ?? 0) : 0),
      detach: (term): Promise<DetachResult> => {
        if (!live()) return Promise.resolve({ ok: false, position: null, error: "the consensus backend that asked was replaced" });
        if (inHold()) return Promise.resolve({ ok: false, position: null, error: "out of elections until the consensus migration's hold ends" });
        return this.hooks.detach ? this.hooks.detach(term) : Promise.resolve({ ok: true, position: null });
      },
      fatal: (m) => this.hooks.fatal(m),
    };
  }

  start(): void {
    this.running = true;
    this.inner.start();
  }

  stop(): void {
    this.running = false;
    this.inner.stop();
  }

  /**
   * The backend's status; while it is stopped, with the guard it showed when stopped: a guard write
   * it had in flight (a block, stored in etcd after the stop) is not carried over by the migration,
   * so this primary may not degrade behind it (review: it ran with empty synchronous names until the
   * new backend, whose guard has no block).
   */
  status(): Status {
    const s = this.inner.status();
    return this.stopped && this.frozenGuard ? { ...s, ...this.frozenGuard } : s;
  }
  /**
   * The inner backend's lease; a stopped one renews nothing, so its lease ends at its deadline
   * (review: it was reported held for as long as a migration stayed between backends, and the node
   * kept acting as the leader: leader-only flags, PCP requests, no rejoin as a standby).
   */
  lease(): { term: number; until: number } | null {
    const l = this.inner.lease();
    return l && this.stopped && l.until <= this.clock() ? null : l;
  }
  note(): string { return this.inner.note(); }

  setPosition(p: Position): Promise<void> {
    this.position = p;
    return this.inner.setPosition(p);
  }

  campaign(force: boolean): Promise<void> {
    return this.clock() < this.holdUntil ? Promise.resolve() : this.inner.campaign(force);
  }

  resign(reason: string, transferTo?: string): Promise<void> {
    this.resigns++;
    return this.inner.resign(reason, transferTo);
  }
  /** Refused (nothing stored, status() unchanged) where core guardChangeAllowed says so. */
  setGuard(block: boolean, floor: Position | null): Promise<boolean | void> {
    return guardChangeAllowed(this.migration(), block) ? this.inner.setGuard(block, floor) : Promise.resolve();
  }
  reserveTimeline(n: number): Promise<boolean | void> { return this.inner.reserveTimeline(n); }
  /**
   * The migration this node leads, as its plan stands now (src/agent/migrate-leader.ts sets it), null:
   * none. While one runs: no membership change (the commit counts the voters at its start), and the
   * guard changes only as guardChangeAllowed says.
   */
  migration: () => Pick<LeaderState, "to" | "phase"> | null = () => null;

  propose(op: ProposeOp, node: string): Promise<void> {
    return this.migration() ? Promise.resolve() : this.inner.propose(op, node);
  }
  bootstrap(m: Membership): Promise<void> { return this.inner.bootstrap(m); }

  get clusters(): (() => Promise<ClusterSummary[]>) | undefined {
    const inner = this.inner;
    return inner.clusters ? () => inner.clusters!() : undefined;
  }

  receive(from: string, msg: ElectionMsg): void {
    if (this.clock() < this.holdUntil && ELECTING.has(msg.t)) return; // out of elections: as if lost
    this.inner.receive(from, msg);
  }

  settled(): boolean {
    return this.inner.settled?.() ?? true;
  }

  attachFailsafe(enabled: boolean, send: (to: string, msg: FailsafeMsg) => void, nameOf: (id: string) => string): void {
    this.failsafe = [enabled, send, nameOf];
    this.inner.attachFailsafe?.(enabled, send, nameOf);
  }

  failsafeMessage(from: string, msg: FailsafeMsg): void {
    this.inner.failsafeMessage?.(from, msg);
  }
}
