// One monitoring round: observe the local PostgreSQL, report it, ask the pure decision
// (core/ha.ts) what to do, do it. A failed action backs off exponentially so a broken server
// never spins. Runs inside the loop's serial executor.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isStuck, stepCatchUp } from "../../core/catch-up.ts";
import { truthfulGuarantee } from "../../core/durability.ts";
import { dataWasPrimary, decideHa, failureMayLeavePrimary, followsLeader, type HaAction, type LocalPg, type RejoinRequest, roundAgainAfter, waitsForBackoff } from "../../core/ha.ts";
import { broken, successorOf, takeoverPossible } from "../../core/liveness.ts";
import { furtherPosition, type Position, ZERO_POSITION } from "../../core/position.ts";
import type { PgReport, RejoinProgress } from "../../core/report.ts";
import { inspectDataDir, probe, type Probe } from "../../postgres/index.ts";
import { type ClusterContext, slotFor } from "./context.ts";
import type { Maintenance } from "./durability.ts";
import type { PgHost } from "./host.ts";
import { highestRealHistory } from "../../postgres/timeline-files.ts";
import { FRESH_DEADLINE_MS, LivenessWatch } from "./liveness.ts";
import type { PrimaryStarter } from "./primary.ts";
import { CopyInterrupted, type Rebuilder } from "./rebuild.ts";
import type { SlotKeeper } from "./slots.ts";
import { heldCopies } from "../../slots/plan.ts";
import { BarrierTimeout } from "../../postgres/promote.ts";
import { NotPromoted } from "./primary.ts";
import { AtRest } from "./at-rest.ts";
import { positionOf } from "./round-position.ts";
import { PAUSE_STAGGER_MS, ReplayPauseWatch } from "./restart-node.ts";

/** Failed attempts to promote (or to start the server to be promoted) in one term before the leader hands over. */
const PROMOTE_ATTEMPTS = 3;
/** Member slots made before a promotion (slots.ts prepareForPromotion) may delay it at most this long. */
export const PREPARE_SLOTS_MS = 300;

export interface RoundParts {
  maintenance: Maintenance;
  slots: SlotKeeper;
  primary: PrimaryStarter;
  rebuild: Rebuilder;
  /** The rejoin being carried out (null: none), and its progress for the report. */
  rejoin(lead: { leading: boolean; acquiringLease: boolean }): { request: RejoinRequest | null; progress: RejoinProgress | null };
  observed(standby: boolean, streaming: boolean): void;
  /** `cause`: what the action threw. */
  failed(kind: HaAction["kind"], error: string, failures: number, cause: unknown): void;
  promotionRequested(): boolean;
  /** Replication was stopped for a vote in a newer term: follow nobody older meanwhile. */
  followingHeld(term: number): boolean;
  /** Another round right after this one. */
  again(): void;
}

export class MonitorRound {
  private lastError: string | null = null;
  private failures = 0;
  /** Failed steps of this leader's promotion (start to promote, promote) in `term`. */
  private promoteFailures = { term: -1, n: 0 };
  private retryAt = 0;
  private lastDecision = "";
  private lastUp = false;
  /** The report this round published, for refresh() while a long action runs. */
  private last: { report: PgReport; position: Position } | null = null;
  private readonly live: LivenessWatch;
  /** The data directory at rest (its WAL's end, pg_control), also read by a detach and a switchover. */
  readonly rest: AtRest;
  private readonly pause = new ReplayPauseWatch();

  constructor(private readonly h: PgHost, private readonly x: RoundParts) {
    this.live = new LivenessWatch(h);
    this.rest = new AtRest(h, () => x.again());
  }

  async run(): Promise<void> {
    const { h, x } = this;
    const { ctx, clock } = h;
    const secrets = ctx.secrets();
    // pg_control is read (a pg_controldata process) only when the server does not answer: a running
    // server reports the same facts through the probe, every round.
    let info = await inspectDataDir(h.node.dataDir, { ...h.node, control: false });
    const watched = ctx.leadership();
    // The leader watches whether its server can work (a fresh connection and a heartbeat commit
    // beside the probe, every step under a deadline): the decision below never waits without bound.
    const watch = info.running && watched.leading && !info.empty;
    // No heartbeat commit on a server last seen in recovery (a leader about to promote its standby):
    // it can only fail there ("read-only transaction"), and the promotion's round waits for it.
    const p: Probe = await this.live.observe(watch, watch && !h.lastInRecovery, (ms) => info.running ? probe(h.localDb(), ms) : Promise.resolve({ up: false, ms: 0, error: "not running" }));
    // The leader's running server judged broken is its primary, to resign and fence now: no
    // pg_controldata (a process that a dead disk can hold for its whole 15 s deadline) first.
    const brokenPrimary = watch && !p.up && this.live.verdict !== null && broken(this.live.verdict);
    if (!p.up && !brokenPrimary) info = await inspectDataDir(h.node.dataDir, h.node);
    const systemIdOnDisk = info.control?.systemIdentifier ?? null;
    const systemId = p.up ? p.systemIdentifier : systemIdOnDisk;
    const clusterId = secrets?.systemId ?? null;
    // Files, no server, and no pg_control to read (a pg_rewind that began writing has its own rule):
    // nothing says the directory is this cluster's (core/ha.ts).
    const unreadable = !info.empty && !info.running && !p.up && info.control === null && h.rewindMarker.get() === null;
    const data: LocalPg["data"] = info.empty ? "empty" : unreadable ? "unknown" : clusterId && systemId && systemId !== clusterId ? "foreign" : "present";
    if (p.up && p.inRecovery && p.walReceiver?.senderHost) h.upstream ??= `${p.walReceiver.senderHost}:${p.walReceiver.senderPort}`;
    const streaming = p.up && p.walReceiver?.status === "streaming";
    const leaderPg = ctx.leaderPg();
    const primaryReady = !!leaderPg && leaderPg.report.up && leaderPg.report.inRecovery === false;
    // Not streaming counts against a standby only while there is a primary to stream from and its replay stands still.
    h.catchUp = stepCatchUp(h.catchUp, { standby: p.up && p.inRecovery, streaming, primaryReady, replayLsn: p.up ? p.replayLsn : null, startupWait: p.up ? p.startupWait : null }, clock.now());
    const standbySignal = existsSync(join(h.node.dataDir, "standby.signal"));
    const paused = await this.pause.look(h, p.up && p.inRecovery && p.startupWait === "IPC:RecoveryPause");
    // Read again after the observations above (a probe, pg_controldata): leadership may have moved
    // meanwhile (a frozen agent that wakes finds another leader at once), and a leader's decision
    // taken on an old view would treat a former primary as its own.
    const lead = ctx.leadership();
    // A clean handover speaks for a server stopped by it, until that server runs again (in any role).
    if (p.up) h.handedOver = false;
    // A former primary started on its own timeline and not promoted yet looks like a standby's data
    // by its files: the marker says what it is (store/own-timeline-marker.ts). Once it runs as a
    // primary the marker has done its work.
    const ownStart = info.empty ? null : h.ownTimelineMarker.get();
    if (ownStart && p.up && !p.inRecovery) h.ownTimelineMarker.clear();
    // A restore from a backup that has not ended at its target (store/restore-marker.ts): only its own recovery ends it.
    const restore = info.empty ? null : h.restoreMarker.get();
    const wasPrimary = p.up ? !p.inRecovery : brokenPrimary ? true : h.handedOver ? false
      : !info.empty && dataWasPrimary(info.control?.state ?? null, standbySignal, standbySignal && existsSync(join(h.node.dataDir, "backup_label")), ownStart !== null);
    const local: LocalPg = {
      data, systemId, running: info.running, up: p.up, inRecovery: p.up ? p.inRecovery : null, upstream: h.upstream,
      wasPrimary, timeline: p.up ? p.timeline : await stoppedTimeline(h, info.control?.timeline ?? null, wasPrimary),
      stuck: isStuck(h.catchUp),
      rewindUnfinished: !info.empty && h.rewindMarker.get() !== null,
      health: this.live.verdict, diskFull: this.live.diskFull(),
      replayPausedFor: paused.names, replayPausedMs: paused.ms,
      restore: restore ? { target: restore.target, ...(restore.failed ? { failed: restore.failed } : {}) } : null,
      createdHere: !info.empty && h.creationMarker.get() !== null,
    };

    // A standby's timeline: pg_stat_wal_receiver says it while streaming; once the primary is gone
    // only the (older) checkpoint timeline is left, so remember the highest one seen.
    if (p.up && p.inRecovery) h.knownTli = Math.max(h.knownTli, p.timeline);
    else if (p.up) h.knownTli = p.timeline;
    // Without pg_control (broken primary, above) the last position stands: never report it going back.
    let position = brokenPrimary && this.last ? this.last.position : h.withKnownTli(positionOf(info, p), p.up && p.inRecovery);
    // A stopped server's pg_wal holds all the WAL it flushed (a standby acknowledges a synchronous
    // commit then, before replaying it), pg_control only its last checkpoint or restartpoint, on the
    // timeline of that checkpoint: the end of the WAL on the newest timeline it holds counts
    // (wal-end.ts). The first round waits for it, so that the first position this node publishes,
    // and votes with, includes it; later rounds publish it when known. Not while a pg_rewind is
    // unfinished: its pg_wal may hold the new primary's WAL copied before it stopped.
    if (!info.running && data === "present" && info.control && !local.rewindUnfinished) {
      const end = await this.rest.walEnd(info.control, info.pgVersion, this.last === null);
      if (end !== "none") position = furtherPosition(position, end);
    }
    // A server that stopped (fenced, crashed) still holds the WAL it had while it answered, and one
    // that starts again still holds what it had while stopped (a standby reports its replay position
    // until it streams again): never vote with less until the data is replaced (host.ts heldPosition).
    position = furtherPosition(position, h.heldPosition);
    h.heldPosition = position;
    // Another cluster's data holds none of this cluster's WAL: the node votes with none (review: it
    // voted with that cluster's position, refused every real candidate as behind it, won the
    // election itself and refused to run a primary on that data: no primary, for good).
    h.foreignData = data === "foreign";
    if (h.foreignData) {
      position = ZERO_POSITION;
      h.heldPosition = null;
    }
    // A running primary that does not answer (connection slots full, hung) is still one to fence.
    h.wasPrimary = info.running && wasPrimary;
    h.lastReportUp = p.up;
    h.lastInRecovery = p.up && p.inRecovery;
    const upBefore = this.lastUp;
    this.lastUp = p.up;
    // Leadership as it is now, not as read before the awaits above: a lease armed meanwhile stays armed.
    const settleLead = ctx.leadership();
    h.fencer.settle(settleLead.term, { leading: settleLead.leading, acquiringLease: settleLead.acquiringLease, primaryRunning: h.wasPrimary });
    x.observed(p.up && p.inRecovery, streaming);
    // Beside the round (backup/repo-down.ts): a standby not streaming runs restore_command.
    h.repoDown.maintain(p.up && p.inRecovery && !streaming, clock.now());
    const rejoin = x.rejoin(lead);
    const decision = decideHa({
      witness: false, leading: lead.leading, acquiringLease: lead.acquiringLease,
      leader: leaderPg && !lead.leading
        ? {
            id: leaderPg.id, addr: leaderPg.addr, primaryReady: leaderPg.report.up && leaderPg.report.inRecovery === false,
            slotReady: leaderPg.report.slots.includes(slotFor(ctx.nodeId)), timeline: leaderPg.report.position.timeline,
            checkpointTimeline: leaderPg.report.checkpointTimeline ?? null,
          }
        : null,
      local, clusterSystemId: clusterId, haveSecrets: secrets !== undefined, nobodyHasData: ctx.nobodyHasData(), othersHaveData: ctx.othersHaveData(),
      member: lead.member, fromExisting: h.cfg.bootstrap.from_existing,
      rejoinAuto: h.cfg.rejoin.auto, rejoinRequested: rejoin.request, paused: ctx.paused(),
      promotionRequested: x.promotionRequested(),
      successor: lead.leading ? successorHere(ctx) ?? null : null,
      takeoverPossible: lead.leading && takeoverPossible(ctx.candidates(), ctx.nodeId, ctx.guardState().guard),
      prePromote: ctx.integrations?.promoteCheck(lead.term), // [hooks] pre_promote's verdict (src/hooks)
      reservedTimeline: ctx.guardState().guard?.timeline,
      restartStagger: paused.names.length ? [...ctx.standbyMembers(), ctx.nodeId].sort().indexOf(ctx.nodeId) * PAUSE_STAGGER_MS : 0,
    });
    this.report({ running: info.running, p, data, systemId, position, haveSecrets: secrets !== undefined, d: decision, rejoin: rejoin.progress });

    const key = JSON.stringify(decision);
    if (key !== this.lastDecision) {
      this.lastDecision = key;
      const line = describe(decision);
      if (decision.kind === "refuse") h.log.error(line);
      else h.log.info(line);
    }
    if (decision.kind === "none" || decision.kind === "wait" || decision.kind === "refuse") {
      h.note = decision.kind === "none" ? "" : decision.reason;
      if (decision.kind === "none" && data === "present") await x.maintenance.maintain(decision.role === "primary", p, watch ? FRESH_DEADLINE_MS : undefined);
      return;
    }
    const crashedPrimary = upBefore && !p.up && lead.leading;
    if (clock.now() < this.retryAt && waitsForBackoff(decision)) return;
    if (followsLeader(decision)) {
      if (ctx.leadership().leaderId !== (leaderPg?.id ?? null)) return; // the leader moved meanwhile
      if (x.followingHeld(ctx.leadership().term)) return;
    }
    h.note = "";
    try {
      await this.act(decision, crashedPrimary);
      this.failures = 0;
      this.lastError = null;
      // The primary runs (a crash restarted in place, a promotion): its report says so now, not a
      // period later, and the standbys whose stream broke retry on it (core/cluster-facts.ts
      // leaderPrimaryBack). A leader's stopped standby started without an upstream: the promotion
      // follows at once (core/ha.ts roundAgainAfter).
      if (roundAgainAfter(decision)) x.again();
    } catch (e) {
      if (e instanceof CopyInterrupted) {
        // It gave way to a vote (rebuild.ts): not a failure; the next round takes the clone again.
        h.log.warn(`${decision.kind} stopped for a vote: ${(e as Error).message}`);
        x.failed(decision.kind, (e as Error).message, this.failures, e);
        this.retryAt = clock.now() + 1000;
        return;
      }
      this.failures++;
      const backoff = Math.min(30_000, 1000 * 2 ** Math.min(this.failures - 1, 5));
      this.retryAt = clock.now() + backoff;
      this.lastError = (e as Error).message;
      const promoting = decision.kind === "promote" || (decision.kind === "start-standby" && decision.upstream === null);
      if (failureMayLeavePrimary(decision, e instanceof NotPromoted)) h.wasPrimary = true; // the fencer stops it (core/ha.ts)
      // A start to promote is a step of the promotion: its failures never ask for a fresh clone (loop.ts).
      x.failed(promoting ? "promote" : decision.kind, this.lastError, this.failures, e);
      if (promoting) this.promoteFailures = { term: lead.term, n: this.promoteFailures.term === lead.term ? this.promoteFailures.n + 1 : 1 };
      if (decision.kind === "start-primary" && lead.leading) {
        // The primary does not come back in place: let a standby take over instead of waiting for the lease.
        ctx.resign(`PostgreSQL could not be restarted here: ${this.lastError}`, successorHere(ctx));
      } else if (decision.kind === "promote" && e instanceof NotPromoted && e.why instanceof BarrierTimeout && lead.leading) {
        // Its checkpointer is busy for longer than a promotion should wait: another standby may be ready now.
        ctx.resign(`not promoted: ${this.lastError}`, successorHere(ctx));
      } else if (promoting && lead.leading && this.promoteFailures.n >= PROMOTE_ATTEMPTS) {
        // This leader cannot make its server the primary (a reservation that no majority stores, a
        // file it cannot write, a server that does not start): another node may.
        ctx.resign(`not promoted after ${this.promoteFailures.n} attempts in term ${lead.term}: ${this.lastError}`, successorHere(ctx));
      }
      h.log.error(`${decision.kind} failed (attempt ${this.failures}, next try in ${backoff} ms): ${this.lastError}`);
    }
  }

  private report(r: { running: boolean; p: Probe; data: LocalPg["data"]; systemId: string | null; position: Position; haveSecrets: boolean; d: HaAction; rejoin: RejoinProgress | null }): void {
    const { h } = this;
    const up = r.p.up ? r.p : null;
    const d = r.d;
    const guarantee = truthfulGuarantee(this.x.maintenance.guarantee, this.live.verdict, r.p.up);
    this.publish({
      port: h.cfg.postgres.port, data: r.data, systemId: r.systemId, running: r.running, up: r.p.up, inRecovery: up ? up.inRecovery : null, position: r.position,
      ...(up && !up.inRecovery ? { checkpointTimeline: up.checkpointTimeline } : {}),
      receiveLsn: up?.receiveLsn ?? null, replayLsn: up?.replayLsn ?? null, upstream: h.upstream,
      streaming: up?.walReceiver?.status === "streaming",
      replication: (up?.replication ?? []).map((x) => ({ name: x.applicationName.slice(0, 64), clientAddr: x.clientAddr, state: x.state.slice(0, 32), syncState: x.syncState.slice(0, 16), lagBytes: x.lagBytes, replayLagSeconds: x.replayLagSeconds })),
      slots: this.x.slots.slots,
      slotBytes: this.x.slots.slotBytes,
      ...(h.wasPrimary && this.x.slots.permanentReport.length ? { permanent: this.x.slots.permanentReport } : {}),
      ...(up?.inRecovery && h.cfg.slots.permanent.length ? { permanentCopies: heldCopies(h.cfg.slots.permanent, up.slots) } : {}),
      ...(h.wasPrimary && guarantee ? { guarantee: guarantee.slice(0, 300) } : {}),
      action: d.kind === "none" ? d.role : d.kind,
      note: [this.live.note(), d.kind === "wait" || d.kind === "refuse" ? d.reason : h.note].filter(Boolean).join("; ").slice(0, 500),
      error: this.lastError?.slice(0, 1000) ?? null,
      haveSecrets: r.haveSecrets,
      ...(r.rejoin ? { rejoin: r.rejoin } : {}),
      health: this.live.report(),
      ...(up && this.x.maintenance.pending.length ? { pendingRestart: this.x.maintenance.pending.slice(0, 256).map((n) => n.slice(0, 63)) } : {}),
      ...(up && this.x.maintenance.ordered.length ? { ordered: this.x.maintenance.ordered } : {}),
      ...(up && this.x.slots.archiver.report ? { archive: this.x.slots.archiver.report } : {}),
    }, r.position);
  }

  /**
   * A long action (clone, rewind) moved on between rounds: publish the last report again with the
   * progress note and the rejoin state, so `pgherd rejoin` and the dashboard see it.
   */
  refresh(rejoin: RejoinProgress | null): void {
    if (!this.last) return;
    const { rejoin: _, ...rest } = this.last.report;
    this.publish({ ...rest, note: this.h.note.slice(0, 500), ...(rejoin ? { rejoin } : {}) }, this.last.position);
  }

  private publish(report: PgReport, position: Position): void {
    this.last = { report, position };
    this.h.ctx.publish(report, position);
  }

  private async act(d: Exclude<HaAction, { kind: "none" | "wait" | "refuse" }>, crashedPrimary: boolean): Promise<void> {
    const { h, x } = this;
    switch (d.kind) {
      case "initdb": return x.primary.initCluster();
      case "start-primary": return x.primary.startPrimary(d.adopt, crashedPrimary);
      case "resume-restore": return x.primary.resumeRestore();
      case "promote": {
        // The members' slots first (a few ms; a switchover's target made them already): they
        // re-point here now and must not be refused while the promotion runs (slots.ts).
        await x.slots.prepareForPromotion(PREPARE_SLOTS_MS);
        return x.primary.promote();
      }
      case "check-promote": {
        // The members' slots first, as for the promotion: a standby behind this one can stream from
        // it (cascading) and catch up, so that it can win when this node's pre_promote vetoes.
        await x.slots.prepareForPromotion(PREPARE_SLOTS_MS, "pre_promote");
        return h.ctx.integrations?.checkPromote(h.ctx.leadership().term);
      }
      case "fence": {
        await h.fencer.fence(d.reason); // a failed stop is logged; the watchdog stops it at its deadline
        return;
      }
      case "clone": return x.rebuild.cloneFrom(d.from);
      case "rewind": return x.rebuild.rewindFrom(d.from, isStuck(h.catchUp));
      case "start-standby": {
        if (d.upstream === null) {
          // The first step of a promotion: only under this agent's lease, as the promotion itself.
          return h.fencer.asPrimary("start to promote", async (still) => {
            h.log.info(`starting this leader's stopped ${d.ownTimeline ? "former primary" : "standby"} as a standby without an upstream, to promote it (a new timeline)`);
            if (d.ownTimeline) h.ownTimelineMarker.set(d.ownTimeline); // fsync'd before the start that makes its files look like a standby's
            await h.writeConfig(true, undefined, d.ownTimeline ? { ownTimeline: d.ownTimeline } : {});
            await h.startServer(undefined, still);
          });
        }
        await h.writeConfig(true, d.upstream);
        await h.startServer();
        if (h.handedOver) {
          h.handedOver = false;
          h.record("rejoin", `former primary follows ${d.upstream} after the switchover (clean handover, no rewind)`);
        }
        return;
      }
      case "repoint": {
        h.log.info(`following the new primary at ${d.upstream}`);
        await h.writeConfig(true, d.upstream);
        await h.reload();
        return;
      }
      case "restart-standby": {
        h.log.warn(`restarting PostgreSQL (standby): ${d.reason}`);
        await h.stopServer("fast", 60);
        await h.startServer();
        this.pause.reset();
        h.record("restart", `standby restarted: ${d.reason}`);
        return;
      }
      case "resign": return h.ctx.resign(d.reason, d.to);
    }
  }
}

/**
 * A stopped server's timeline: pg_control's checkpoint names a promotion's timeline only from the
 * first checkpoint after it, so a former primary's is the newest real history file's when higher.
 */
/** The standby this leader hands over to, one the voters would elect under its guard (core/liveness.ts successorOf). */
function successorHere(ctx: ClusterContext): string | undefined {
  return successorOf(ctx.candidates(), ctx.nodeId, ctx.guardState().guard) ?? undefined;
}

async function stoppedTimeline(h: PgHost, control: number | null, wasPrimary: boolean): Promise<number | null> {
  if (!wasPrimary || control === null) return control;
  const wal = await highestRealHistory(h.node.dataDir, h.cfg.postgres.os_user).catch(() => 0);
  return Math.max(control, wal);
}

function describe(d: HaAction): string {
  switch (d.kind) {
    case "none": return `PostgreSQL role: ${d.role}`;
    case "wait": return `waiting: ${d.reason}`;
    case "refuse": return `refusing: ${d.reason}`;
    case "clone": return `decision: clone from ${d.from}`;
    case "start-standby": return d.upstream === null ? "decision: start as a standby without an upstream, then promote" : `decision: start as a standby of ${d.upstream}`;
    case "repoint": return `decision: follow ${d.upstream}`;
    case "restart-standby": return `decision: restart the standby (${d.reason})`;
    case "start-primary": return `decision: start as primary${d.adopt ? " (adopting existing data)" : ""}`;
    case "resume-restore": return "decision: go on with the restore from the backup (its recovery ends at its target, then the bootstrap ends)";
    case "fence": return `decision: fence (${d.reason})`;
    case "resign": return `decision: resign (${d.reason})${d.to ? `, handing over to ${d.to}` : ""}`;
    default: return `decision: ${d.kind}`;
  }
}
