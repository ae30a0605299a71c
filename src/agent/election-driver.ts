// The built-in consensus backend's shell: feeds events to the pure election core one at a time and
// carries out each Ready in the order the core demands: persist (fsync) → fence when the lease
// was lost (awaited) → send → re-arm the wake-up timer. It owns the core, its store and its timer.
// Before each event it asks whether the host was suspended (a `suspended` event first, whose fence
// finishes before the event is applied).
import { Election, type Event, type ProposeOp, type Ready, type Status } from "../core/election.ts";
import type { ElectionMsg, Membership } from "../core/messages.ts";
import type { Position } from "../core/position.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import type { ClusterSummary } from "../consensus/clusters.ts";
import type { FailsafeMsg } from "../consensus/etcd/failsafe.ts";

/** What the agent needs from a consensus backend: the built-in election (below) or etcd (src/consensus/etcd). */
export interface Consensus {
  readonly counters: DriverCounters;
  start(): void;
  stop(): void;
  status(): Status;
  /** This node's lease while it leads with one. */
  lease(): { term: number; until: number } | null;
  /** The last failed election round, who refused and why ("" when there is a leader). */
  note(): string;
  // Commands resolve once the backend applied them (its status() then reflects them).
  setPosition(p: Position): Promise<void>;
  campaign(force: boolean): Promise<void>;
  resign(reason: string, transferTo?: string): Promise<void>;
  /** false: the backend knows this guard is not stored and will not be (etcd: refused, or sent without an answer); else status() tells. */
  setGuard(block: boolean, floor: Position | null): Promise<boolean | void>;
  /** Leader: reserve timeline number `n` for a promotion (core/timelines.ts): the guard keeps the highest, block and floor as they are. As setGuard. */
  reserveTimeline(n: number): Promise<boolean | void>;
  propose(op: ProposeOp, node: string): Promise<void>;
  bootstrap(m: Membership): Promise<void>;
  /** Every cluster the store holds (etcd); absent: this cluster only (built-in). */
  clusters?(): Promise<ClusterSummary[]>;
  /** An election message from a peer (built-in backend; others ignore it). */
  receive(from: string, msg: ElectionMsg): void;
  // Capabilities of one backend (etcd); absent on the built-in one, so the agent never names a backend's class.
  /** Whether the store was read since the start; false: a key of this node's previous run may still make it the leader. */
  settled?(): boolean;
  /** [consensus] failsafe needs the mesh: the agent attaches it (enabled or not: a node with it off still answers, refusing). */
  attachFailsafe?(enabled: boolean, send: (to: string, msg: FailsafeMsg) => void, nameOf: (id: string) => string): void;
  /** A failsafe request or answer from a peer (validated at receipt). */
  failsafeMessage?(from: string, msg: FailsafeMsg): void;
}

export interface DriverHooks {
  send(to: string, msg: ElectionMsg): void;
  /** A lease was won or renewed: the fencer arms the lease file up to `until`. */
  leaseHeld(term: number, until: number): void;
  /**
   * The lease was lost: writes must stop before anything of this step is sent (awaited). False:
   * the stop failed, and only the watchdog stops PostgreSQL, at the lease deadline.
   */
  leaseLost(reason: string): Promise<boolean | void>;
  /** The leader or this node's lease changed: PostgreSQL should act on it now. */
  leadershipChanged(): void;
  /**
   * Samples the host clock (clock.ts HostClock.suspended): how long the host was suspended since the
   * last call (ms), 0 when it was not. Asked before every step; absent: never (a witness cannot lead).
   */
  suspended?(): number;
  /** Stop streaming before a vote in `term`; the final position (null: unchanged), or why not. */
  detach?(term: number): Promise<DetachResult>;
  /** The vote or term could not be made durable: the agent must stop. */
  fatal(message: string): void;
}

export interface DriverCounters {
  leaderChanges: number;
  leadershipsWon: number;
  leasesLost: number;
}

export interface DetachResult {
  ok: boolean;
  position: Position | null;
  error?: string;
}

interface Item {
  make: (now: number) => Event;
  done: () => void;
}

export class ElectionDriver implements Consensus {
  readonly counters: DriverCounters = { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0 };
  private readonly queue: Item[] = [];
  private busy = false;
  private stopped = false;
  private cancelWake: () => void = () => {};
  private leading: Ready["leading"] = null;
  private lastLeader: string | null = null;
  private electionNote = "";

  constructor(
    private readonly election: Election,
    private readonly store: ElectionStore,
    private readonly hooks: DriverHooks,
    private readonly log: Logger,
    private readonly nameOf: (id: string) => string,
    private readonly clock: () => number = () => performance.now(),
    /** Runs `fn` after `ms`; returns a cancel function (injected so tests control time). */
    private readonly after: (fn: () => void, ms: number) => () => void = (fn, ms) => {
      const t = setTimeout(fn, ms);
      return () => clearTimeout(t);
    },
  ) {}

  start(): void {
    void this.feed((now) => ({ type: "tick", now }));
  }

  stop(): void {
    this.stopped = true;
    this.cancelWake();
  }

  status(): Status {
    return this.election.status(this.clock());
  }

  /**
   * The lease held now: none once its deadline passed, also before the step that ends it has run (a
   * stalled event loop runs the hooks' and pgpool's timers first, which acted as the leader then).
   */
  lease(): { term: number; until: number } | null {
    return this.leading && this.leading.until > this.clock() ? this.leading : null;
  }

  note(): string {
    return this.electionNote;
  }

  setPosition(position: Position): Promise<void> {
    return this.feed((now) => ({ type: "position", now, position }));
  }

  campaign(force: boolean): Promise<void> {
    return this.feed((now) => ({ type: "campaign", now, force }));
  }

  resign(reason: string, transferTo?: string): Promise<void> {
    return this.feed((now) => ({ type: "resign", now, reason, transferTo }));
  }

  setGuard(block: boolean, floor: Position | null): Promise<void> {
    return this.feed((now) => ({ type: "guard", now, block, floor }));
  }

  reserveTimeline(n: number): Promise<void> {
    return this.feed((now) => ({ type: "reserve-timeline", now, timeline: n }));
  }

  propose(op: ProposeOp, node: string): Promise<void> {
    return this.feed((now) => ({ type: "propose", now, op, node }));
  }

  bootstrap(membership: Membership): Promise<void> {
    return this.feed((now) => ({ type: "bootstrap", now, membership }));
  }

  /** An election message from a peer (already validated by the mesh's schema). */
  receive(from: string, msg: ElectionMsg): void {
    void this.feed((now) => ({ type: "recv", now, from, msg }));
  }

  // ------------------------------------------------------------------ the queue

  /** Queues an event; resolves once it was applied (or dropped because the driver stopped). */
  private feed(make: (now: number) => Event): Promise<void> {
    let done!: () => void;
    const applied = new Promise<void>((r) => (done = r));
    if (this.stopped) done();
    else {
      this.queue.push({ make, done });
      if (!this.busy) void this.pump();
    }
    return applied;
  }

  /**
   * The core holds a vote until streaming from the old primary stopped: stop it, then report. A
   * failure is reported too (the core refuses the vote); the core bounds the wait itself.
   */
  private detach(term: number): void {
    const report = (r: DetachResult) => void this.feed((now) => ({ type: "detached", now, term, ...r }));
    if (!this.hooks.detach) return report({ ok: true, position: null });
    this.hooks.detach(term).then(report, (e: Error) => report({ ok: false, position: null, error: e.message }));
  }

  /** One event at a time; synchronous unless a fence must finish before the step's messages leave. */
  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        const it = this.queue.shift()!;
        try {
          // A leader whose host was suspended since its last step (its lease counted on a clock that
          // stood still) steps down first, and its fence finishes before this event is applied.
          const slept = this.stopped ? 0 : (this.hooks.suspended?.() ?? 0);
          if (slept > 0) this.log.warn(`the host was suspended for about ${slept} ms (CLOCK_BOOTTIME moved on, performance.now() did not)`);
          const steps: Array<[() => Event, string]> = [[() => it.make(this.clock()), "lost leadership"]];
          if (slept > 0) steps.unshift([() => ({ type: "suspended", now: this.clock(), ms: slept }), `the host was suspended for about ${slept} ms`]);
          for (const [make, why] of steps) {
            if (this.stopped) break;
            const r = this.election.step(make());
            const pending = this.apply(r, why);
            if (pending) await pending;
            // After a persist (an fsync, seconds on a busy disk) the core hears when the messages left.
            if (r.persist && !this.stopped) await this.apply(this.election.step({ type: "sent", now: this.clock() }));
          }
        } catch (e) {
          this.log.error(`internal error in the election step: ${(e as Error).stack ?? e}`);
        } finally {
          it.done();
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** `why`: the fence's reason should this step end the leadership. */
  private apply(r: Ready, why = "lost leadership"): Promise<void> | undefined {
    if (r.persist) {
      try {
        this.store.saveElection(r.persist);
      } catch (e) {
        // Never send a vote or a term we could not make durable.
        this.stopped = true;
        this.cancelWake();
        this.hooks.fatal(`cannot persist election state to ${this.store.file}: ${(e as Error).message}`);
        return undefined;
      }
    }
    this.logNotices(r);
    if (r.detach) this.detach(r.detach.term);
    const was = this.leading;
    this.leading = r.leading;
    const leaderNow = this.election.status(this.clock()).leader;
    if (leaderNow !== this.lastLeader || !!was !== !!r.leading) {
      this.lastLeader = leaderNow;
      queueMicrotask(() => this.hooks.leadershipChanged());
    }
    if (r.leading) {
      if (!was) {
        this.counters.leadershipsWon++;
        this.log.info(`leading term ${r.leading.term} with a valid lease`);
      }
      this.hooks.leaseHeld(r.leading.term, r.leading.until);
    } else if (was || r.fence) {
      // Also a leader without a lease (resumed after a restart, its primary still running) that
      // steps down: its resign must not reach the voters before its writes stopped.
      if (was) this.counters.leasesLost++;
      this.log.warn(was ? `fenced: no longer leading term ${was.term}; writes must stop` : "fenced: stepped down before holding a lease in this run; writes must stop");
      return this.hooks.leaseLost(why)
        .catch((e: Error) => (this.log.error(`fence: ${e.message}`), false))
        .then((stopped) => this.sendAndArm(stopped === false ? this.unannounced(r) : r));
    }
    this.sendAndArm(r);
    return undefined;
  }

  /**
   * A resign whose fence could not stop PostgreSQL is not announced (review): the voters, and a
   * transfer's target, would stand at once while the old primary still writes until the watchdog's
   * deadline. Unannounced, they elect only once the lease has run out, as after a crash, by when
   * the watchdog has stopped it (the lease arithmetic, docs/design.md §4).
   */
  private unannounced(r: Ready): Ready {
    const send = r.send.filter((s) => s.msg.t !== "resign");
    if (send.length !== r.send.length) this.log.warn("the fence could not confirm PostgreSQL stopped: the resign is not announced; the others elect once the lease has run out, when the watchdog has stopped it");
    return { ...r, send };
  }

  private sendAndArm(r: Ready): void {
    for (const s of r.send) this.hooks.send(s.to, s.msg);
    this.cancelWake();
    if (!this.stopped && Number.isFinite(r.wakeAt)) {
      this.cancelWake = this.after(() => void this.feed((now) => ({ type: "tick", now })), Math.max(0, r.wakeAt - this.clock()));
    }
  }

  private logNotices(r: Ready): void {
    for (const n of r.notices) {
      if (n.kind === "leader-changed" || n.kind === "became-leader") this.counters.leaderChanges++;
      if (n.kind === "prevote-failed") {
        const named = n.detail.replace(/\b[0-9a-f]{16}\b/g, (id) => this.nameOf(id));
        if (named !== this.electionNote && /refused by/.test(named)) this.log.warn(`no leader: ${named}`);
        this.electionNote = named;
      }
      // Not standing by its own guard (election.ts): why there is no leader, as a refused round says it.
      if (n.kind === "campaign-refused" && n.detail.startsWith("not standing:")) this.electionNote = n.detail;
      const line = `${n.kind}: ${n.detail}`;
      if (n.kind === "stepped-down" || n.kind === "proposal-rejected" || n.kind === "campaign-refused") this.log.warn(line);
      else if (n.kind === "vote-granted" || n.kind === "vote-refused" || n.kind === "vote-held" || n.kind === "campaign" || n.kind === "prevote-failed") this.log.debug(line);
      else this.log.info(line);
    }
  }
}

/**
 * Leader: the guard `set` publishes, then wait until a majority stored it (etcd: until etcd holds
 * it): a guard with a seq above the one's before `set`, stored. With etcd, status() is what etcd holds,
 * so a write refused (or failed) leaves the old guard there, stored: that is not this one; and etcd
 * answers false at once for a write it refused or that got no answer (the guard etcd then shows may
 * be an earlier write of this node with the same seq, applied late: review). False when this node
 * stops leading or `timeoutMs` passes first. A switchover's outage and a promotion wait on this: one
 * heartbeat's round trip, polled every 2 ms.
 */
export async function publishGuard(c: Pick<Consensus, "status">, set: () => Promise<boolean | void>, timeoutMs: number, stored?: (st: Status) => boolean): Promise<boolean> {
  const before = c.status().guard?.seq ?? 0;
  if ((await set()) === false) return false;
  // This write's seq (builtin: a guard queued before it may have been applied first); etcd refused: still `before`.
  const seq = Math.max(c.status().guard?.seq ?? 0, before + 1);
  const done = stored ?? ((st: Status) => st.guardCommitted >= seq);
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const st = c.status();
    if (st.role !== "leader") return false;
    if (done(st)) return true;
    await Bun.sleep(2);
  }
  return false;
}
