// Operator actions: switchover, manual failover, rejoin, pause/resume, member approve/remove. The
// API hands them to the local agent; cluster-wide ones run on the leader (forwarded over the mesh).
import { leaderOnlyPart, SWITCHOVER_ANSWER_MS, type ActionRequest, type ActionResult } from "../api/actions-contract.ts";
import { checkSwitchover, neverPromotedReason, type Candidate } from "../core/switchover.ts";
import { HANDOVER_CHECKPOINT_MS } from "../core/handover.ts";
import type { PgReport } from "../core/report.ts";
import type { Position } from "../core/position.ts";
import type { Logger } from "../log.ts";
import type { HistoryEntry } from "./history.ts";
import type { ScheduledSwitchover } from "./flags.ts";
import { FORWARDED_RESTART_MS, isNodeOp, RestartGrants, runNodeOp } from "./restart-actions.ts";
import { BACKUP_TIMEOUT_MS, BackupDesk } from "../backup/backup-action.ts";
import type { DynamicChange } from "../config/dynamic.ts";
import type { ClusterView } from "../core/cluster-view.ts";

export interface ActionHost {
  readonly nodeId: string;
  readonly nodeName: string;
  electionState(): { role: string; term: number; leader: string | null; leading: boolean; /** This node is a voter of the membership in force (null: no membership known yet). */ voter: boolean | null };
  paused(): boolean;
  /** Leader: pause or resume; resolves once the cluster's copy holds it (a shared store: its write answered), with why not. */
  setPaused(p: boolean): Promise<{ status: number; message: string } | null>;
  candidates(): Candidate[];
  myReport(): PgReport | null;
  /** The backup this node takes began or ended (BackupDesk.running): its state goes out now. */
  backupChanged(): void;
  reportOf(id: string): PgReport | null;
  nameOf(id: string): string;
  forwardToLeader(req: ActionRequest, timeoutMs: number): Promise<ActionResult>;
  /** Hand a request to one member's agent over the mesh (it runs there as runAsLeader does). */
  askNode(id: string, req: ActionRequest, timeoutMs: number): Promise<ActionResult>;
  handover(to: string, final: Position | null, timeoutMs: number): Promise<boolean>;
  /** Leader: publish "no failover block, floor = pos" and wait until a majority stored it. */
  publishFloor(pos: Position | null, timeoutMs: number): Promise<boolean>;
  isConnected(id: string): boolean;
  sendCampaign(to: string, reason: string, force?: boolean): boolean;
  campaignNow(force?: boolean): void;
  /** Resolves once the resignation's messages left (after the fence). */
  resign(reason: string, transferTo?: string): Promise<void>;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
  /** PostgreSQL loop controls (null on a witness). */
  pg: null | {
    /** `beforeStopMs`: the clean stop begins within it or not at all (a stopping leader's handover). */
    stopForHandover(beforeStopMs?: number): Promise<Position | null>;
    /** The target did not confirm the final WAL, or the switchover stopped: this node's data is a primary's again (rewound before it follows). */
    handoverUnconfirmed(): void;
    release(): void;
    requestRejoin(clone: boolean): void;
    restartServer(): Promise<{ ok: boolean; message: string }>;
    reloadServer(configNote: string): Promise<{ ok: boolean; message: string }>;
  };
  maxLagBytes: number;
  /** This agent's own view of the cluster (the leader's, on the leader). */
  clusterView(): ClusterView;
  /** Leader: a change of the cluster-wide configuration (src/agent/dynamic-config-leader.ts). */
  changeConfig(change: DynamicChange): Promise<ActionResult>;
  /**
   * The switchover scheduled through the leader (kept by every node), and setting it (leader only):
   * resolves once the cluster's copy holds it (a shared store: its write answered), with why not.
   */
  scheduled(): ScheduledSwitchover | null;
  setScheduled(s: ScheduledSwitchover | null): Promise<{ status: number; message: string } | null>;
  /** Wall-clock milliseconds (injected so tests can move time). */
  wallNow(): number;
  /** Bounded pause between polls (injected so tests need not wait). */
  sleep(ms: number): Promise<void>;
}

/** A scheduled switchover found this late (no leader with a lease at its time) is dropped, not run (Patroni's window too). */
export const SCHEDULE_LATE_MS = 10 * 60_000;

const ok = (message: string, status = 200, detail?: unknown): ActionResult => ({ status, ok: true, message, detail });
const no = (status: number, message: string): ActionResult => ({ status, ok: false, message });

/** `pgherd member approve|remove` on the leader (approvals.ts). */
export interface MemberActionRunner {
  run(req: Extract<ActionRequest, { kind: "member-approve" | "member-remove" }>): Promise<ActionResult>;
}

export class ActionRunner {
  /** A switchover runs (read by a consensus migration, which refuses to start meanwhile). */
  switching = false;

  /** The backups this agent runs or, leading, hands out (one at a time). */
  readonly backups: BackupDesk;
  private readonly restarts: RestartGrants;

  constructor(private readonly h: ActionHost, private readonly log: Logger, private readonly members?: MemberActionRunner) {
    this.backups = new BackupDesk(h, log);
    this.restarts = new RestartGrants(h, () => this.switching);
  }

  /** Entry point for the local API. */
  async run(req: ActionRequest): Promise<ActionResult> {
    const leaderOnly = leaderOnlyPart(req);
    if (leaderOnly) return no(400, `${req.kind}: ${leaderOnly} is set by the leader only`);
    switch (req.kind) {
      case "rejoin": return this.rejoin(req.forceClone ?? false);
      case "failover": return this.failover(req.to, req.force ?? false, req.acceptDataLoss ?? false);
      case "node-reload": return runNodeOp(this.h, req);
      case "node-restart": {
        if (req.force) return runNodeOp(this.h, req);
        const e = this.h.electionState();
        if (e.leader === this.h.nodeId) return this.leadRestart(req);
        if (!e.leader) return no(503, "no leader at the moment to grant the restart: try again, or force it (never more than one node down is then not checked)");
        return this.h.forwardToLeader({ ...req, node: req.node ?? this.h.nodeId }, FORWARDED_RESTART_MS);
      }
      default: {
        const e = this.h.electionState();
        if (e.leader === this.h.nodeId) return this.runAsLeader(req);
        if (!e.leader) return no(503, "no leader at the moment: try again, or use `pgherd failover --to NODE`");
        const switching = req.kind === "switchover" && req.at === undefined;
        return this.h.forwardToLeader(req, req.kind === "backup" ? BACKUP_TIMEOUT_MS : switching ? SWITCHOVER_ANSWER_MS : 60_000);
      }
    }
  }

  /** Requests forwarded by other agents (`from`: the peer that sent it), and our own when we lead. */
  async runAsLeader(req: ActionRequest, from?: string): Promise<ActionResult> {
    // A restart forwarded to this node as the leader is checked here. One that reaches a node no
    // longer leading runs only if it names this node and comes from the node this one knows as the
    // leader (the leader's grant); one that was meant for the leader's check is refused, also when
    // it names this node (a restart of the old leader asked just before it stepped down).
    if (req.kind === "node-restart" && !req.force) {
      const leader = this.h.electionState().leader;
      if (leader === this.h.nodeId) return this.leadRestart(req);
      const granted = from !== undefined && from === leader && (req.node === this.h.nodeId || req.node === this.h.nodeName);
      if (!granted) return no(503, `${this.h.nodeName} does not lead: the restart was not granted by the leader; try again`);
    }
    if (isNodeOp(req)) return runNodeOp(this.h, req); // a member's own restart/reload, carried here over the mesh
    if (req.kind === "backup" && req.run) return this.backups.runHere(req); // the leader chose this member
    const e = this.h.electionState();
    if (!e.leading) return no(503, `${this.h.nodeName} is not a leader with a valid lease`);
    switch (req.kind) {
      case "pause":
      case "resume": {
        const p = req.kind === "pause";
        if (this.h.paused() === p) return ok(`already ${p ? "paused" : "running"}`);
        // Recorded only once stored: with etcd a refused write leaves the cluster as it was (review:
        // the answer said so, the history said the pause was done).
        const refused = await this.h.setPaused(p);
        if (refused) return no(refused.status, `${req.kind}: ${refused.message}`);
        this.h.record({ term: e.term, kind: req.kind, node: this.h.nodeName, reason: `operator ${req.kind}`, oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
        this.log.warn(p ? "maintenance mode: automatic actions suspended cluster-wide" : "maintenance mode ended");
        return ok(p ? "cluster paused: agents monitor and report but take no automatic action" : "cluster resumed");
      }
      case "switchover": return req.at !== undefined ? this.schedule(req.to, req.at, req.force ?? false) : this.switchover(req.to, req.force ?? false);
      case "switchover-cancel": return this.cancelScheduled(`cancelled by the operator`);
      case "member-approve":
      case "member-remove":
        return this.members ? this.members.run(req) : no(501, `${req.kind} is not available on this agent`);
      case "failover": return this.failover(req.to, req.force ?? false, req.acceptDataLoss ?? false);
      case "backup": return this.backups.lead(req);
      case "config": {
        const set = { ...req.set, ...(req.durability ? { durability: req.durability } : {}) };
        return this.h.changeConfig({ base: req.base, ...(req.replace ? { replace: req.replace } : { set }) });
      }
      default: return no(400, `${req.kind} is not a leader action`);
    }
  }

  /** `switchover --at`: stored through the leader; whichever node leads at that time runs it. */
  private async schedule(to: string | undefined, at: string, force: boolean): Promise<ActionResult> {
    const when = Date.parse(at);
    if (!Number.isFinite(when)) return no(400, `--at ${JSON.stringify(at)} is not a date/time`);
    // A time already past (a script's stale date) is refused, not run now: a switchover now is asked without --at.
    if (when <= this.h.wallNow()) return no(400, `--at ${JSON.stringify(at)} is in the past (it is ${new Date(this.h.wallNow()).toISOString()} on ${this.h.nodeName}, the leader); for a switchover now leave --at out`);
    const cur = this.h.scheduled();
    if (cur) return no(409, `a switchover is already scheduled for ${cur.at} (pgherd switchover --cancel first)`);
    let target: string | null = null;
    if (to) {
      const t = this.h.candidates().find((c) => !c.witness && (c.id === to || c.name === to));
      if (!t) return no(404, `no database member named ${to}`);
      const never = neverPromotedReason(t);
      if (never) return no(412, never);
      target = t.id;
    }
    const s: ScheduledSwitchover = { at: new Date(when).toISOString(), to: target, requestedAt: new Date(this.h.wallNow()).toISOString(), force, from: this.h.nodeId };
    const refused = await this.h.setScheduled(s);
    if (refused) return no(refused.status, refused.message);
    const where = target ? ` to ${this.h.nameOf(target)}` : "";
    this.h.record(this.entry("schedule", `switchover${where} scheduled for ${s.at}`));
    return ok(`switchover${where} scheduled for ${s.at} (stored by the leader; pgherd switchover --cancel to drop it)`, 202, s);
  }

  private async cancelScheduled(why: string): Promise<ActionResult> {
    const cur = this.h.scheduled();
    if (!cur) return no(404, "no switchover is scheduled");
    const refused = await this.h.setScheduled(null);
    if (refused) return no(refused.status, refused.message);
    this.h.record(this.entry("schedule", `scheduled switchover of ${cur.at} ${why}`));
    return ok(`scheduled switchover of ${cur.at} ${why}`);
  }

  /** Leader housekeeping: run a scheduled switchover once its time has come (only with a valid lease). */
  async runDue(): Promise<void> {
    const cur = this.h.scheduled();
    const e = this.h.electionState();
    if (!cur || !e.leading || e.leader !== this.h.nodeId || Date.parse(cur.at) > this.h.wallNow() || this.switching) return;
    // Cleared first, and stored so before it runs: a refusal or a crash half-way must not run it
    // again at the next tick, nor on the next leader (which would find it in the cluster's copy).
    const refused = await this.h.setScheduled(null);
    if (refused) {
      // No answer (503): the clear may have landed. Put the schedule back, so that it is run or
      // dropped for good at a later tick, never lost unseen (re-review); a refusal (409) already
      // took the store's copy back.
      if (refused.status === 503) await this.h.setScheduled(cur);
      return this.log.warn(`scheduled switchover of ${cur.at}: not run yet: clearing it in the cluster's copy failed (${refused.message}); tried again`);
    }
    // A switchover planned away from one primary does not run from another (a failover moved the
    // primary meanwhile: it would move it again, perhaps back to the node taken out for maintenance),
    // nor long after its time (no leader held a lease then: the window the operator chose has gone),
    // nor in maintenance mode, even forced: its --force was given before that pause.
    const late = this.h.wallNow() - Date.parse(cur.at);
    const stale = cur.from !== undefined && cur.from !== this.h.nodeId
      ? `the primary changed since it was scheduled (${this.h.nameOf(cur.from)} led then, ${this.h.nodeName} now)`
      : late > SCHEDULE_LATE_MS ? `no leader with a valid lease ran it at its time (${Math.round(late / 1000)} s late)`
      : this.h.paused() ? "the cluster is paused (maintenance mode: a scheduled switchover never runs then, forced or not)" : null;
    if (stale) {
      this.log.warn(`scheduled switchover of ${cur.at} dropped, not run: ${stale}`);
      return this.h.record(this.entry("schedule", `scheduled switchover of ${cur.at} dropped, not run: ${stale}`));
    }
    const r = await this.switchover(cur.to ?? undefined, cur.force);
    this.log.warn(`scheduled switchover of ${cur.at}: ${r.message}`);
    if (!r.ok) this.h.record(this.entry("schedule", `scheduled switchover of ${cur.at} not done: ${r.message}`));
  }

  private entry(kind: HistoryEntry["kind"], reason: string): Omit<HistoryEntry, "id" | "at"> {
    return { term: this.h.electionState().term, kind, node: this.h.nodeName, reason, oldPrimary: null, newPrimary: null, timeline: null, lsn: null };
  }

  /**
   * A stopping leader's handover (agent/handover.ts, core/handover.ts): the operator's switchover
   * to the chosen target, which holding a copy of every permanent slot is preferred for, not required,
   * and whose primary's clean stop begins within HANDOVER_CHECKPOINT_MS (or the switchover stops).
   */
  handover(to: string): Promise<ActionResult> {
    if (!this.h.electionState().leading) return Promise.resolve(no(503, `${this.h.nodeName} is not a leader with a valid lease`));
    return this.switchover(to, false, "prefer", HANDOVER_CHECKPOINT_MS);
  }

  /** A member's restart, on the leader: never during a switchover (its stopped primary still reads as running). */
  private leadRestart(req: Extract<ActionRequest, { kind: "node-restart" }>): Promise<ActionResult> {
    if (this.switching) return Promise.resolve(no(409, "a switchover is in progress: one node down at a time; try again once it is done"));
    return this.restarts.lead(req);
  }

  private async switchover(to: string | undefined, force: boolean, slotCopies: "require" | "prefer" = "require", beforeStopMs?: number): Promise<ActionResult> {
    if (this.switching) return no(409, "a switchover is already in progress");
    const restarting = this.restarts.underWay();
    if (restarting) return no(409, `the restart of ${restarting} is under way: one node down at a time; try again once it is done`);
    this.switching = true;
    try {
      return await this.switchoverNow(to, force, slotCopies, beforeStopMs);
    } finally {
      this.switching = false;
    }
  }

  private async switchoverNow(to: string | undefined, force: boolean, slotCopies: "require" | "prefer", beforeStopMs?: number): Promise<ActionResult> {
    const primary = this.h.myReport();
    const v = checkSwitchover({ primary, candidates: this.h.candidates(), to, paused: this.h.paused(), force, maxLagBytes: this.h.maxLagBytes, slotCopies });
    if (!v.ok) return no(412, `switchover refused: ${v.reason}`);
    const pg = this.h.pg;
    if (!pg) return no(500, "this leader runs no PostgreSQL");
    const target = v.target;
    if (!this.h.isConnected(target.id)) return no(503, `${target.name} is not connected`);
    const t0 = performance.now();
    let term = 0;
    this.log.warn(`switchover to ${target.name}: stopping writes here, handing over leadership`);
    try {
      // Fast shutdown: walsenders send every WAL record, the shutdown checkpoint included, and
      // wait for the standbys' flush before the server exits, so the target has it all.
      const final = await pg.stopForHandover(beforeStopMs);
      // Without the final position there is no floor to lift a failover block with (a primary that
      // ran degraded may hold writes no standby has): the switchover stops, this node stays leader
      // and starts its server again.
      if (!final) throw new Error("the stopped server's final position (pg_control) could not be read: the failover guard stays as it is and this node keeps the primary");
      // Writes are stopped: lift any failover block (a primary that ran degraded) with a floor at
      // the final position, stored by a majority, so the voters accept the target; meanwhile the
      // target confirms it holds that position (a voter refuses a target behind the floor anyway).
      const [ready, floored] = await Promise.all([this.h.handover(target.id, final, 5000), this.h.publishFloor(final, 3000)]);
      if (!ready) {
        this.log.warn(`${target.name} did not confirm it holds the final WAL within 5 s (or was not asked: this node's lease had run out): handing over anyway; this node goes through pg_rewind before it follows`);
        pg.handoverUnconfirmed();
      }
      if (!floored) this.log.warn("the final position did not reach a majority within 3 s: handing over anyway");
      term = this.h.electionState().term;
      void this.h.resign(`switchover to ${target.name}`, target.id);
    } catch (e) {
      pg.handoverUnconfirmed();
      return no(500, `switchover aborted before the handover: ${(e as Error).message}`);
    } finally {
      pg.release();
    }
    // Report when the new primary is up (the caller's outage measurement ends there).
    const deadline = performance.now() + 30_000;
    while (performance.now() < deadline) {
      const r = this.h.reportOf(target.id);
      if (r?.up && r.inRecovery === false) {
        const ms = Math.round(performance.now() - t0);
        return ok(`switchover to ${target.name} done in ${ms} ms`, 200, { target: target.name, ms });
      }
      // Another node won the election (the target could not stand or was refused): say so now.
      const e = this.h.electionState();
      if (e.leader && e.leader !== target.id && e.term > term) {
        const ms = Math.round(performance.now() - t0);
        return ok(`${this.h.nameOf(e.leader)} won term ${e.term}, not ${target.name} (after ${ms} ms)`, 202, { target: target.name, winner: this.h.nameOf(e.leader), ms });
      }
      await this.h.sleep(50);
    }
    // Not what was asked for, as far as this node knows: the CLI exits 1.
    return no(504, `leadership handed to ${target.name} (this node's primary is stopped), but its promotion was not confirmed within 30 s: see pgherd cluster ls`);
  }

  private async failover(to: string, force: boolean, acceptDataLoss: boolean): Promise<ActionResult> {
    const e = this.h.electionState();
    const target = this.h.candidates().find((c) => c.id === to || c.name === to);
    if (!target || target.witness) return no(404, `no database member named ${to}`);
    const never = neverPromotedReason(target);
    if (never) return no(412, never);
    if (e.leader) {
      const lr = e.leader === this.h.nodeId ? this.h.myReport() : this.h.reportOf(e.leader);
      if (lr?.up && lr.inRecovery === false) {
        if (!force) return no(409, `${this.h.nameOf(e.leader)} leads with a running primary: use switchover (or --force)`);
        // A live leader with a primary: the only safe way to move it is the leader handing over.
        if (e.leader === target.id) return ok(`${target.name} already leads and runs the primary`);
        const req = { kind: "switchover" as const, to: target.id, force: true };
        return e.leader === this.h.nodeId ? this.runAsLeader(req) : this.h.forwardToLeader(req, SWITCHOVER_ANSWER_MS);
      }
    }
    if (this.h.paused() && !force) return no(409, "the cluster is paused (pgherd resume first, or --force)");
    if (!target.report?.up && !force) return no(412, `${target.name} is not reachable or its PostgreSQL is not running`);
    // The target takes a request to stand from a voter only (message-router.ts): said before anything
    // is done (a resign included). Unknown (no membership read yet): the target decides.
    if (target.id !== this.h.nodeId && e.voter === false) {
      return no(409, `${this.h.nodeName} is not a voter, and ${target.name} takes a request to stand for election from a voter only: run this on a voter`);
    }
    if (e.leader && e.leader !== target.id) {
      // A leader without a primary (e.g. paused after the old primary died): it hands leadership to
      // the chosen node; voters would refuse a campaign while it heartbeats.
      // Forced, the leader turns it into a switchover should its primary run by then.
      if (e.leader !== this.h.nodeId) return this.h.forwardToLeader({ kind: "failover", to: target.id, force, acceptDataLoss }, SWITCHOVER_ANSWER_MS);
      // Awaited: the campaign request below goes on the same connection and must follow the resign,
      // or the target stands before it was handed the term and its rounds claim no transfer.
      await this.h.resign(`manual failover to ${target.name}`, target.id);
    }
    // --accept-data-loss lets voters ignore the durability guard (no node is known to hold every
    // acknowledged write); they still refuse a candidate behind their own data.
    const reason = `manual failover to ${target.name} requested on ${this.h.nodeName}${acceptDataLoss ? ", accepting data loss" : ""}`;
    this.log.warn(reason);
    if (target.id === this.h.nodeId) this.h.campaignNow(acceptDataLoss);
    else if (!this.h.sendCampaign(target.id, reason, acceptDataLoss)) return no(503, `${target.name} is not connected`);
    const deadline = performance.now() + 20_000;
    while (performance.now() < deadline) {
      const now = this.h.electionState();
      if (now.leader === target.id && (target.id === this.h.nodeId ? this.h.myReport() : this.h.reportOf(target.id))?.inRecovery === false) {
        return ok(`${target.name} leads (term ${now.term}) and runs the primary`);
      }
      await this.h.sleep(100);
    }
    return no(504, `${target.name} did not become the primary within 20 s (its voters may refuse it: see its log${acceptDataLoss ? "" : "; --accept-data-loss if no node is known to hold every acknowledged write"})`);
  }

  private rejoin(clone: boolean): ActionResult {
    const e = this.h.electionState();
    if (!this.h.pg) return no(400, "a witness has no PostgreSQL to rejoin");
    if (e.leader === this.h.nodeId) return no(409, "this node is the leader: switch over first, then rejoin it");
    if (!e.leader) return no(503, "no leader to rejoin");
    this.h.pg.requestRejoin(clone);
    return ok(`rejoin started (${clone ? "fresh clone" : "pg_rewind, else a fresh clone"}); follow it with pgherd status`, 202);
  }
}
