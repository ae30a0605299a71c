// The PostgreSQL loop: a monitoring round every postgres.loop_ms, and the agent's requests
// (detach for a vote, catch-up and stop for a switchover, rejoin, promotion), all carried out one
// at a time through one serial executor. The fence is the fencer's (src/fence/fencer.ts): it does
// not queue here.
import { join } from "node:path";
import type { Config } from "../../config/schema.ts";
import { furtherPosition, type Position } from "../../core/position.ts";
import type { Exclusion } from "../../core/sync-exclusion.ts";
import type { RejoinProgress } from "../../core/report.ts";
import { type Clock, realClock } from "../../fence/clock.ts";
import { Fencer } from "../../fence/fencer.ts";
import type { LeaseFile } from "../../fence/lease-file.ts";
import type { Logger } from "../../log.ts";
import { lsnCompare, probe, swapProblem, type PgBins } from "../../postgres/index.ts";
import { refusedParameters } from "../../postgres/check-parameters.ts";
import type { ParamValue } from "../../postgres/pgconf.ts";
import { lookupOsUser } from "../../postgres/users.ts";
import type { ClusterContext, DetachResult, LoopControl } from "./context.ts";
import { DetachHold, detachFor } from "./detach.ts";
import { afterFailedStart, afterRebuildStarting, afterStreaming, NO_START_FAILURES, type StartFailureMemory } from "../../core/start-failures.ts";
import { detachTarget, postmasterRuns } from "./detach-target.ts";
import { Maintenance } from "./durability.ts";
import { QueueTimeout, SerialExecutor } from "./executor.ts";
import { PgHost } from "./host.ts";
import { PrimaryStarter } from "./primary.ts";
import { CloneRefusedError, CopyInterrupted, Rebuilder } from "./rebuild.ts";
import { rejoinDropReason, rejoinStep, type RejoinEvent } from "./rejoin.ts";
import type { RejoinRequest } from "../../core/ha.ts";
import { MonitorRound, PREPARE_SLOTS_MS } from "./round.ts";
import { PostmasterWatch } from "./postmaster-watch.ts";
import { RoundScheduler } from "./scheduler.ts";
import { type NodeOpResult, reloadHere, restartHere } from "./restart-node.ts";
import { SlotKeeper } from "./slots.ts";
import { failedStartCause } from "../../postgres/start-failure.ts";
import { checkPermit, grantPermit, type PromotionPermit } from "../../core/promotion-permit.ts";

/** A switchover's stop waits at most this long for the round ahead of it. */
const HANDOVER_WAIT_MS = 30_000;
/** A switchover's read of its stopped server's final position (pg_control, the WAL's end: ~60 ms here). */
const FINAL_POSITION_MS = 5_000;
/** The switchover's CHECKPOINT while writes are still served, before the clean stop. */
const CHECKPOINT_MS = 60_000;
/** The leader's primary came back: a standby's reload waits at most this long for the task ahead of it (a later one is of no use). */
const STREAM_AGAIN_WAIT_MS = 1000;
/** The postmaster watch's safety poll: a crash is noticed by the monitoring connection closing, at once. */
const POSTMASTER_CHECK_MS = 1000;

export class PostgresLoop implements LoopControl {
  private readonly h: PgHost;
  private readonly exec: SerialExecutor;
  private readonly round: MonitorRound;
  private readonly maintenance: Maintenance;
  private readonly slots: SlotKeeper;
  readonly fencer: Fencer;
  private readonly clock: Clock;
  private readonly rounds: RoundScheduler;
  private readonly postmaster: PostmasterWatch;
  /** Between stopForHandover() and release(): rounds change nothing. */
  private held = false;
  /** `pgherd failover --to` / a switchover to this node (core/promotion-permit.ts). */
  private promotion: PromotionPermit | null = null;
  private rejoinRequest: RejoinRequest | null = null;
  /** The causes of failed starts rebuilt for, asked a rebuild for, and said not to be rebuilt again (core/start-failures.ts). */
  private startFailures: StartFailureMemory = NO_START_FAILURES;
  private rejoinProgress: RejoinProgress | null = null;
  private readonly detachHold = new DetachHold();
  private readonly rebuild: Rebuilder;

  /**
   * `lease`: this node's lease file. The loop builds the node's Fencer over it (`fencer`: the agent
   * arms it on a won lease and awaits fence() on a lost one); the fencer's stop is this loop's server.
   */
  constructor(cfg: Config, bins: PgBins, ctx: ClusterContext, log: Logger, lease: LeaseFile, clock: Clock = realClock) {
    this.clock = clock;
    this.h = new PgHost(cfg, bins, ctx, log, clock);
    this.exec = new SerialExecutor(clock);
    this.fencer = new Fencer({
      lease, log, clock,
      stopPostgres: async () => {
        const stopped = await this.h.stopServer("immediate", 10);
        this.h.wasPrimary = false;
        return stopped;
      },
      primaryMayRun: () => this.h.wasPrimary,
      primaryStarted: () => (this.h.wasPrimary = true),
      record: (reason) => this.h.record("fence", reason),
    });
    this.h.fencer = this.fencer;
    this.slots = new SlotKeeper(this.h);
    const primary = new PrimaryStarter(this.h);
    this.maintenance = new Maintenance(this.h, this.slots, primary);
    primary.sync = this.maintenance;
    const rebuild = new Rebuilder(this.h, (e) => this.progress(e), () => this.round.refresh(this.rejoinProgress), undefined, (deadline) => this.round.rest.restingPosition(deadline));
    this.rebuild = rebuild;
    this.round = new MonitorRound(this.h, {
      maintenance: this.maintenance, slots: this.slots, primary, rebuild,
      rejoin: (lead) => {
        const drop = rejoinDropReason(this.rejoinRequest, lead);
        if (drop) {
          log.warn(`rejoin request dropped: ${drop}`);
          this.rejoinRequest = null;
          this.progress({ kind: "failed", error: `not carried out: ${drop}`, dropped: true });
        }
        return { request: this.rejoinRequest, progress: this.rejoinProgress };
      },
      observed: (standby, streaming) => {
        if (standby && streaming) this.startFailures = afterStreaming(this.startFailures);
        this.progress({ kind: "observed", standby, streaming });
      },
      failed: (kind, error, failures, cause) => {
        // The data directory is as it was: an asked-for clone that cannot be made (no room, a data
        // directory that cannot be swapped) is dropped, and the rounds start the server again
        // instead of keeping a standby down until the operator acts.
        const dropped = cause instanceof CloneRefusedError && this.rejoinRequest !== null;
        // A clone that gave way to a vote is taken again: not a failure of the rejoin.
        if ((kind === "clone" || kind === "rewind" || kind === "start-standby") && !(cause instanceof CopyInterrupted)) this.progress({ kind: "failed", error, dropped });
        if (dropped) {
          log.warn(`rejoin request dropped: ${error}`);
          this.rejoinRequest = null;
        }
        if (kind !== "start-standby") return;
        // Rebuilt once per cause, and only with rejoin.auto (core/start-failures.ts).
        const why = failedStartCause(cause);
        const step = afterFailedStart(this.startFailures, failures, why, cfg.rejoin.auto);
        this.startFailures = step.memory;
        if (step.action === "say-auto-off") log.warn(`start as a standby failed ${failures} times (${why}): not rebuilding it from a fresh clone, rejoin.auto is off; the rounds start it once the cause is fixed (\`pgherd rejoin --force-clone\` rebuilds it)`);
        if (step.action === "say-not-rebuilt") log.warn(`start as a standby failed ${failures} times, as it did before the fresh clone it was rebuilt from (${why}): not rebuilding it again; the rounds start it once the cause is fixed (\`pgherd rejoin --force-clone\` still rebuilds it)`);
        if (step.action === "rebuild") {
          log.warn(`start as a standby failed ${failures} times (${why}): rebuilding it from a fresh clone`);
          this.rejoinRequest = { clone: true, auto: true }; // not past a pause: no one asked for it
        }
      },
      promotionRequested: () => this.promotionPermitted(),
      followingHeld: (term) => this.detachHold.holds(term, this.clock.now()),
      again: () => this.kick(),
    });
    this.rounds = new RoundScheduler(this.exec, clock, cfg.postgres.loop_ms, async () => {
      if (this.held) return;
      const t0 = this.clock.now();
      try {
        await this.round.run();
      } catch (e) {
        this.h.log.error(`monitoring round failed: ${(e as Error).stack ?? e}`);
      }
      this.h.ctx.loopDone(this.clock.now() - t0);
    });
    this.postmaster = new PostmasterWatch({
      clock, everyMs: POSTMASTER_CHECK_MS, pidFile: join(cfg.postgres.data_dir, "postmaster.pid"),
      gone: (pid) => {
        log.info(`postmaster ${pid} exited: monitoring round now`);
        this.kick();
      },
    });
    this.h.onLocalClose = () => this.postmaster.closed();
  }

  /** Retained WAL per slot (bytes), for /metrics. */
  get slotBytes(): Record<string, number> {
    return this.slots.slotBytes;
  }

  get guarantee(): string {
    return this.maintenance.guarantee;
  }

  start(): void {
    // Told at start, not first when a rebuild is due.
    void swapProblem(this.h.node.dataDir).then((p) => p && this.h.log.warn(`${p}: pgherd cannot rebuild this node from a clone, nor create the cluster from a backup on it, until then`), () => {});
    this.fencer.start();
    this.rounds.start();
    this.postmaster.start();
  }

  async stop(): Promise<void> {
    this.postmaster.stop();
    this.rounds.stop();
    this.fencer.stop();
    this.exec.close();
    await this.slots.close();
    await this.h.close();
  }

  /** Run a round now (leadership changed): failover should not wait for the next tick. */
  kick(): void {
    this.rounds.kick();
  }

  /**
   * `pgherd failover --to` this node, or a switchover to it: promote even while the cluster is
   * paused, for the leadership the request leads to: the first term this node leads within a
   * minute, not a later one (a pause set after that must hold again).
   */
  requestPromotion(): void {
    this.promotion = grantPermit(this.clock.now(), { ...this.h.ctx.leadership(), self: this.h.ctx.nodeId }, this.promotion);
  }

  /**
   * The leader's primary came back (a crashed postmaster restarted in place): a standby whose stream
   * broke waits wal_retrieve_retry_interval between attempts, and the startup process, woken by a
   * SIGHUP from that wait, tries to stream at once. A reload sends it (harmless to a streaming standby).
   */
  primaryBack(): void {
    if (!this.h.lastInRecovery) return;
    this.exec.run("stream again", async () => {
      if (!this.h.lastInRecovery) return;
      this.h.log.info("the leader's primary runs again: reloading, so that a broken stream is retried now");
      await this.h.reload();
    }, { maxWaitMs: STREAM_AGAIN_WAIT_MS }).catch(() => undefined);
  }

  private promotionPermitted(): boolean {
    const r = checkPermit(this.promotion, this.clock.now(), { ...this.h.ctx.leadership(), self: this.h.ctx.nodeId });
    this.promotion = r.permit;
    return r.allowed;
  }

  markDegraded(): void {
    this.maintenance.markDegraded();
  }

  /** `pgherd rejoin [--force-clone]`: rebuild this node as a standby of the leader. */
  requestRejoin(clone: boolean): void {
    this.rejoinRequest = { clone };
    this.progress({ kind: "request", clone });
    this.h.log.info(`rejoin requested${clone ? " (fresh clone)" : ""}`);
    this.kick();
  }

  /**
   * Switchover: stop this primary cleanly and keep the rounds from restarting it. `beforeStopMs` (a
   * stopping leader's handover, core/handover.ts HANDOVER_CHECKPOINT_MS): the wait for the task in
   * progress and the CHECKPOINT together take at most this, or the clean stop never begins.
   */
  stopForHandover(beforeStopMs?: number): Promise<Position | null> {
    this.held = true;
    const h = this.h;
    const queued = this.clock.now();
    return this.exec.run("stop for handover", async () => {
      // Checkpoint while still serving: the shutdown checkpoint, which runs with writes already
      // stopped, then has little left to flush (the write outage shrinks accordingly).
      const t0 = this.clock.now();
      const checkpointMs = beforeStopMs === undefined ? CHECKPOINT_MS : Math.min(CHECKPOINT_MS, beforeStopMs - (t0 - queued));
      if (checkpointMs <= 0) throw new Error(`the primary's clean stop did not begin within ${beforeStopMs} ms`);
      await h.localDb().query("checkpoint before switchover", (sql) => sql`CHECKPOINT`, checkpointMs);
      const t1 = this.clock.now();
      const stopped = await h.stopServer("fast", 60);
      h.log.info(`switchover: checkpoint ${Math.round(t1 - t0)} ms (writes still served), fast shutdown ${Math.round(this.clock.now() - t1)} ms`);
      // The final position is the end of the WAL it flushed: the end of the shutdown checkpoint's
      // record, which the target must hold whole. Only after a clean shutdown: a server that was
      // already gone, or exited without finishing its shutdown checkpoint (a PANIC), may hold
      // acknowledged WAL past pg_control's checkpoint that no standby has (review). Else the
      // switchover stops here, and this node, still the primary's, starts its server again.
      const r = await this.round.rest.atRest(this.clock.now() + FINAL_POSITION_MS);
      if (!stopped || r.state !== "shut down") throw new Error(`the server did not shut down cleanly (${stopped ? `pg_control says "${r.state ?? "unreadable"}"` : "it was not running when stopped"}): no final position to hand over`);
      if (!r.position) throw new Error(`the end of the stopped server's WAL could not be read within ${FINAL_POSITION_MS} ms: no final position to hand over`);
      h.handedOver = true;
      h.wasPrimary = false;
      return r.position;
    }, { maxWaitMs: Math.min(HANDOVER_WAIT_MS, beforeStopMs ?? HANDOVER_WAIT_MS) });
  }

  /** `pgherd restart`: a fast restart of this node's PostgreSQL (restart-node.ts), between rounds. */
  restartServer(): Promise<NodeOpResult> {
    return this.exec.run("restart", () => restartHere(this.h, this.maintenance), { maxWaitMs: HANDOVER_WAIT_MS });
  }

  /** Leader, before a cluster-wide change: what this node's PostgreSQL refuses in `params` (src/postgres/check-parameters.ts), or null. */
  async refusedParameters(params: Readonly<Record<string, ParamValue>>): Promise<string | null> {
    return refusedParameters(this.h.node, params, await lookupOsUser(this.h.cfg.postgres.os_user));
  }

  /** `pgherd reload`: managed files from the running configuration, then a reload (a SIGHUP to the postmaster). */
  reloadServer(configNote: string): Promise<NodeOpResult> {
    return this.exec.run("reload", () => reloadHere(this.h, configNote), { maxWaitMs: HANDOVER_WAIT_MS });
  }

  release(): void {
    this.held = false;
    this.kick();
  }

  handoverUnconfirmed(): void {
    this.h.handedOver = false;
  }

  /** Switchover target: wait until this standby received the old primary's final WAL; its position then. */
  async catchUp(final: Position | null, timeoutMs: number): Promise<Position | null> {
    const end = this.clock.now() + timeoutMs;
    try {
      const pos = await this.exec.run("catch-up", async () => {
        for (;;) {
          const pos = this.h.standbyPosition(await probe(this.h.localDb()));
          if (pos && (!final || lsnCompare(pos.lsn, final.lsn) >= 0)) return pos;
          if (this.clock.now() > end) return pos;
          await this.clock.sleep(20);
        }
      }, { maxWaitMs: timeoutMs });
      // This standby is about to be promoted: the other members' slots next, before any round
      // (the one that promotes included), while the old leader resigns and the election runs; the
      // answer does not wait for them (slots.ts prepareForPromotion).
      this.exec.run("slots before promotion", () => this.slots.prepareForPromotion(PREPARE_SLOTS_MS)).catch(() => undefined);
      // Voted with: never less than the round's (review: a receive position that restarted at its
      // segment's start after a standby restart lowered it until the next round).
      return pos && furtherPosition(pos, this.h.heldPosition);
    } catch (e) {
      if (e instanceof QueueTimeout) return null;
      throw e;
    }
  }

  /**
   * A vote for a newer term is about to be granted: stop streaming from the old primary first, so
   * it can no longer count this standby's acknowledgements, and vote with the final position.
   * Bounded by DETACH_BOUND_MS in all (queue wait included); ok=false when not confirmed by then.
   */
  exclusion(term: number): Exclusion | null {
    return this.maintenance.exclusion.record(term);
  }

  async detach(term: number): Promise<DetachResult> {
    const h = this.h;
    // Another cluster's data: nothing of this cluster streams into it, and it is never touched (no
    // configuration written for the detach); it votes with the round's position, none (round.ts).
    if (h.foreignData) return { ok: true, position: null };
    // pg_rewind under way holds the executor up to an hour, its server stopped: the node votes with
    // what its data held before the rewind, and the rewind then does not start the server (rewind-vote.ts).
    if (this.rebuild.rewinder.vote.active() && !(await postmasterRuns(h.node.dataDir))) {
      const position = this.rebuild.rewinder.vote.vote(term);
      if (position) {
        this.detachHold.hold(term, this.clock.now());
        h.log.info(`voting in term ${term} while pg_rewind runs, with the position its data held before (${position.timeline}/${position.lsn})`);
        return { ok: true, position };
      }
    }
    // A clone or restore under way holds the executor for hours: it gives way (rebuild.ts).
    this.rebuild.interruptCopy(`a vote in term ${term} needs this node`);
    let r: DetachResult;
    try {
      r = await detachFor(term, detachTarget(h, (deadline) => this.round.rest.restingPosition(deadline)), this.exec, this.detachHold, this.clock);
    } finally {
      this.rebuild.voteDetached();
    }
    if (r.ok && r.position) h.log.info(`stopped streaming to vote in term ${term} (final position ${r.position.lsn})`);
    return r;
  }

  private progress(e: RejoinEvent): void {
    const before = this.rejoinProgress;
    this.rejoinProgress = rejoinStep(before, e);
    if (this.rejoinProgress !== before && e.kind !== "observed") this.round.refresh(this.rejoinProgress);
    // Rebuilt and starting as a standby: the request is carried out (a failed start is retried as a start).
    if (e.kind !== "starting") return;
    // The automatic request's fresh clone is in place (core/start-failures.ts): one refused made none.
    if (this.rejoinRequest?.auto) this.startFailures = afterRebuildStarting(this.startFailures);
    this.rejoinRequest = null;
  }
}
