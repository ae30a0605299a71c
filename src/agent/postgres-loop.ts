// The monitoring loop: observe the local PostgreSQL, report it, ask the pure
// decision (core/ha.ts) what to do, do it, repeat. One round at a time; a
// failed action backs off exponentially so a broken server never spins.
import { join } from "node:path";
import { decideHa, type HaAction, type LocalPg } from "../core/ha.ts";
import { ZERO_POSITION, type Position, samePosition } from "../core/position.ts";
import { parseHostPort } from "../config/hostport.ts";
import { planDurability, syncStandbyNames } from "../core/durability.ts";
import { majority } from "../core/quorum.ts";
import type { PgReport } from "../core/report.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import {
  basebackup, buildConninfo, cloneDirFor, ensureRoles, ensureSlot, generatePassword, initdb, inspectDataDir,
  clearStaleLocks, dropSlot, killLeftovers, listSlots, lsnCompare, pendingRestart, openLocalDb, PgCtlError, probe, promote, reload, rewind, start, stop, swapDataDir, writeManagedConfig, writePassfile,
  type Db, type PgBins, type PgNode, type Probe,
} from "../postgres/index.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { ensureDir } from "../postgres/fsutil.ts";
import type { ClusterSecrets } from "../store/cluster-secrets.ts";
import type { LeaseFile } from "../fence/lease-file.ts";

/** What the loop needs from the agent: cluster facts in, reports and requests out. */
export interface ClusterContext {
  readonly nodeId: string;
  leadership(): { term: number; leading: boolean; acquiringLease: boolean; leaderId: string | null; member: boolean };
  /** The leader's PostgreSQL address and its last report. */
  leaderPg(): { id: string; addr: string; report: PgReport } | null;
  /** Database voters other than this node (slots on the primary). */
  standbyMembers(): string[];
  /** Database standby members reporting now (they could re-point to a new primary). */
  reachableStandbys(): number;
  /** How long a member has not been heard from (0 when it reports now). */
  downForMs(id: string): number;
  /** IP addresses of authenticated peers (pg_hba), this node's own included when known. */
  peerAddresses(): string[];
  /** Every voter reported an empty data directory. */
  nobodyHasData(): boolean;
  /** Some other member has data or is creating it. */
  othersHaveData(): boolean;
  secrets(): ClusterSecrets | undefined;
  saveSecrets(s: ClusterSecrets): void;
  publish(report: PgReport, position: Position): void;
  resign(reason: string): void;
  loopDone(ms: number): void;
  paused(): boolean;
  /** Election voters (witnesses included) and the durability mode in force. */
  votersCount(): number;
  durabilityMode(): "quorum" | "strict" | "async";
  /** The leader's current guard and the highest guard seq a majority stored. */
  guardState(): { guard: { seq: number; block: boolean; floor: Position | null } | null; committed: number };
  setGuard(block: boolean, floor: Position | null): void;
  becamePrimary(how: "bootstrap" | "adopt" | "promote", timeline: number | null, lsn: string | null): void;
  record(e: { term: number; kind: "fence" | "rejoin" | "restart"; node: string; reason: string; oldPrimary: null; newPrimary: null; timeline: number | null; lsn: string | null }): void;
}

/** A standby that has not streamed for this long while the primary is ready is assumed diverged. */
const STUCK_MS = 15_000;
/** A crashed primary gets this long to come back in place before the leader steps down. */
const RESTART_BUDGET_S = 10;
/** quorum: writes wait this long for synchronous standbys before the primary degrades. */
const DEGRADE_AFTER_MS = 3000;

export function slotFor(nodeId: string): string {
  return `pgherd_${nodeId.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

export class PostgresLoop {
  private readonly node: PgNode;
  private readonly socketDir: string;
  private readonly passfile: string;
  private db: Db | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private action = "observe";
  private note = "";
  private lastError: string | null = null;
  private failures = 0;
  private retryAt = 0;
  private upstream: string | null = null;
  private lastDecision = "";
  private rolesEnsuredFor: string | null = null;
  private wasPrimary = false;
  /** Highest timeline this standby was seen streaming on (reset when its data is replaced). */
  private knownTli = 0;

  private withKnownTli(pos: Position, standby: boolean): Position {
    return standby && pos.lsn !== "0/0" && this.knownTli > pos.timeline ? { ...pos, timeline: this.knownTli } : pos;
  }
  /** synchronous_standby_names this primary runs with (durability plan). */
  private syncNames = "";
  private degraded = false;
  private shortSince: number | null = null;
  private graceUntil = 0;
  private promotionRequestedUntil = 0;
  guarantee = "";
  /** Replication stopped for a vote in a newer term: do not follow anyone until a leader is known. */
  private detachedTerm = -1;
  private pendingWarned = "";
  private stuckNow = false;
  private running = false;
  private again = false;
  private hold = false;
  /** Stopped cleanly for a switchover: its WAL is all on the new primary, no rewind needed. */
  private handedOver = false;
  private lastUp = false;
  private lastGuardAt = 0;
  private lastReportUp = false;
  private lastInRecovery = false;
  private crashedPrimary = false;
  private notStreamingSince: number | null = null;
  private rejoinRequest: { clone: boolean } | null = null;

  /** `pgherd rejoin [--force-clone]`: rebuild this node as a standby of the leader. */
  requestRejoin(clone: boolean): void {
    this.rejoinRequest = { clone };
    this.log.info(`rejoin requested${clone ? " (fresh clone)" : ""}`);
  }

  constructor(private readonly cfg: Config, bins: PgBins, private readonly ctx: ClusterContext, private readonly log: Logger, private readonly lease: LeaseFile | null = null) {
    this.node = { bins, dataDir: cfg.postgres.data_dir, osUser: cfg.postgres.os_user, log };
    // Not inside the data directory: pg_rewind copies every file of the source's data directory
    // and fails on a socket there.
    this.socketDir = cfg.postgres.socket_dir || `${cfg.postgres.data_dir}.sock`;
    this.passfile = join(cfg.postgres.data_dir, "pgherd.pgpass");
  }

  start(): void {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.db?.close().catch(() => undefined);
  }

  /** Stop writes now (lost lease): the server is stopped; it comes back as a standby. */
  async fence(reason: string): Promise<void> {
    if (!this.wasPrimary) return;
    this.log.warn(`fencing PostgreSQL: ${reason}`);
    const t0 = performance.now();
    await stop(this.node, "immediate", 10).catch((e) => this.log.error(`fence failed: ${(e as Error).message}`));
    this.wasPrimary = false;
    this.record("fence", `${reason}: primary stopped in ${Math.round(performance.now() - t0)} ms`);
  }

  private record(kind: "fence" | "rejoin" | "restart", reason: string): void {
    this.ctx.record({ term: this.ctx.leadership().term, kind, node: this.cfg.node_name, reason, oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.round(), ms);
  }

  /** `pgherd failover --to` this node: promote even while the cluster is paused (for a minute). */
  requestPromotion(): void {
    this.promotionRequestedUntil = performance.now() + 60_000;
  }

  markDegraded(): void {
    this.degraded = true;
  }

  /** Run a round now (leadership changed): failover should not wait for the next tick. */
  kick(): void {
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /** Switchover: stop this primary cleanly and keep the loop from restarting it. */
  async stopForHandover(): Promise<Position | null> {
    this.hold = true;
    while (this.running) await Bun.sleep(5);
    // Checkpoint while still serving: the shutdown checkpoint, which runs with writes already
    // stopped, then has little left to flush (the write outage shrinks accordingly).
    const t0 = performance.now();
    await this.localDb().query("checkpoint before switchover", (sql) => sql`CHECKPOINT`, 60_000);
    const t1 = performance.now();
    await stop(this.node, "fast", 60);
    this.log.info(`switchover: checkpoint ${Math.round(t1 - t0)} ms (writes still served), fast shutdown ${Math.round(performance.now() - t1)} ms`);
    this.handedOver = true;
    this.wasPrimary = false;
    const c = (await inspectDataDir(this.node.dataDir, this.node)).control;
    return c ? { timeline: c.timeline, lsn: c.checkpointLsn } : null;
  }

  /** Switchover target: wait until this standby received the old primary's final WAL; its position then. */
  async catchUp(final: Position | null, timeoutMs: number): Promise<Position | null> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const p = await probe(this.localDb());
      const lsn = p.up ? (p.receiveLsn ?? p.replayLsn) : null;
      if (p.up && p.inRecovery) this.knownTli = Math.max(this.knownTli, p.timeline);
      const pos = p.up && lsn ? this.withKnownTli({ timeline: p.timeline, lsn }, true) : null;
      if (pos && (!final || lsnCompare(pos.lsn, final.lsn) >= 0)) return pos;
      if (performance.now() > end) return pos;
      await Bun.sleep(20);
    }
  }

  release(): void {
    this.hold = false;
    this.kick();
  }

  private async round(): Promise<void> {
    if (this.hold) return this.schedule(this.cfg.postgres.loop_ms);
    if (this.running) return this.schedule(50); // a detach for a vote holds the loop
    this.running = true;
    const t0 = performance.now();
    try {
      await this.roundInner();
    } catch (e) {
      this.log.error(`monitoring round failed: ${(e as Error).stack ?? e}`);
    }
    this.ctx.loopDone(performance.now() - t0);
    this.running = false;
    if (this.again) {
      this.again = false;
      return this.schedule(0);
    }
    this.schedule(Math.max(0, this.cfg.postgres.loop_ms - (performance.now() - t0)));
  }

  private async roundInner(): Promise<void> {
    const secrets = this.ctx.secrets();
    // pg_control is read (a pg_controldata process) only when the server does not answer: a running
    // server reports the same facts through the probe, every round.
    let info = await inspectDataDir(this.node.dataDir, { ...this.node, control: false });
    const p: Probe = info.running ? await probe(this.localDb()) : { up: false, ms: 0, error: "not running" };
    if (!p.up) info = await inspectDataDir(this.node.dataDir, this.node);
    const systemIdOnDisk = info.control?.systemIdentifier ?? null;
    const systemId = p.up ? p.systemIdentifier : systemIdOnDisk;
    const clusterId = secrets?.systemId ?? null;
    const data: LocalPg["data"] = info.empty ? "empty" : clusterId && systemId && systemId !== clusterId ? "foreign" : "present";
    if (p.up && p.inRecovery && p.walReceiver?.senderHost) this.upstream ??= `${p.walReceiver.senderHost}:${p.walReceiver.senderPort}`;
    const streaming = p.up && p.walReceiver?.status === "streaming";
    const primaryReady = (() => {
      const l = this.ctx.leaderPg();
      return !!l && l.report.up && l.report.inRecovery === false;
    })();
    // Not streaming only counts against a standby while there is a primary to stream from.
    if (!(p.up && p.inRecovery) || streaming || !primaryReady) this.notStreamingSince = null;
    else this.notStreamingSince ??= performance.now();
    const wasPrimary = p.up ? !p.inRecovery : this.handedOver ? false : info.control ? !/recovery/.test(info.control.state) : false;
    const local: LocalPg = {
      data, systemId, running: info.running, up: p.up, inRecovery: p.up ? p.inRecovery : null, upstream: this.upstream,
      wasPrimary, timeline: p.up ? p.timeline : (info.control?.timeline ?? null),
      stuck: this.notStreamingSince !== null && performance.now() - this.notStreamingSince > STUCK_MS,
    };
    this.stuckNow = local.stuck;

    // A standby's timeline: pg_stat_wal_receiver says it while streaming; once the primary is gone
    // only the (older) checkpoint timeline is left, so remember the highest one seen.
    if (p.up && p.inRecovery) this.knownTli = Math.max(this.knownTli, p.timeline);
    else if (p.up) this.knownTli = p.timeline;
    const position = this.withKnownTli(positionOf(info, p), p.up && p.inRecovery);
    this.lease?.ensureWatchdog();
    const lead = this.ctx.leadership();
    // A running primary that does not answer (connection slots full, hung) is still one to fence.
    this.wasPrimary = info.running && wasPrimary;
    this.lastReportUp = p.up;
    this.lastInRecovery = p.up && p.inRecovery;
    const upBefore = this.lastUp;
    this.lastUp = p.up;
    // The watchdog stays armed while a primary runs here without the lease: it is the second line.
    if (!lead.leading && !lead.acquiringLease && !this.wasPrimary) this.lease?.disarm(lead.term);
    const leaderPg = this.ctx.leaderPg();
    const decision = decideHa({
      witness: false, leading: lead.leading, acquiringLease: lead.acquiringLease,
      leader: leaderPg && !lead.leading
        ? {
            id: leaderPg.id, addr: leaderPg.addr, primaryReady: leaderPg.report.up && leaderPg.report.inRecovery === false,
            slotReady: leaderPg.report.slots.includes(slotFor(this.ctx.nodeId)), timeline: leaderPg.report.position.timeline,
          }
        : null,
      local, clusterSystemId: clusterId, haveSecrets: secrets !== undefined, nobodyHasData: this.ctx.nobodyHasData(), othersHaveData: this.ctx.othersHaveData(),
      member: lead.member, fromExisting: this.cfg.bootstrap.from_existing,
      rejoinAuto: this.cfg.rejoin.auto, rejoinRequested: this.rejoinRequest, paused: this.ctx.paused(),
      promotionRequested: performance.now() < this.promotionRequestedUntil,
    });
    this.report(info.running, p, data, systemId, position, secrets !== undefined, decision);

    const key = JSON.stringify(decision);
    if (key !== this.lastDecision) {
      this.lastDecision = key;
      const line = describe(decision);
      if (decision.kind === "refuse") this.log.error(line);
      else this.log.info(line);
    }
    if (decision.kind === "none" || decision.kind === "wait" || decision.kind === "refuse") {
      this.action = decision.kind === "none" ? decision.role : decision.kind;
      this.note = decision.kind === "none" ? "" : decision.reason;
      if (decision.kind === "none" && data === "present") await this.maintain(decision.role === "primary", p);
      return;
    }
    this.crashedPrimary = upBefore && !p.up && lead.leading;
    if (performance.now() < this.retryAt) return;
    if ((decision.kind === "repoint" || decision.kind === "start-standby") && this.ctx.leadership().leaderId !== (leaderPg?.id ?? null)) return; // the leader moved meanwhile
    this.action = decision.kind;
    this.note = "";
    try {
      await this.act(decision);
      this.failures = 0;
      this.lastError = null;
    } catch (e) {
      this.failures++;
      if (decision.kind === "start-standby" && this.failures >= 3) {
        this.log.warn(`start as a standby failed ${this.failures} times: rebuilding it from a fresh clone`);
        this.rejoinRequest = { clone: true };
        this.retryAt = 0;
      }
      if (decision.kind === "start-primary" && lead.leading) {
        // The primary does not come back in place: let a standby take over instead of waiting for the lease.
        this.ctx.resign(`PostgreSQL could not be restarted here: ${(e as Error).message}`);
      }
      const backoff = Math.min(30_000, 1000 * 2 ** Math.min(this.failures - 1, 5));
      this.retryAt = performance.now() + backoff;
      this.lastError = (e as Error).message;
      this.log.error(`${decision.kind} failed (attempt ${this.failures}, next try in ${backoff} ms): ${this.lastError}`);
    }
  }

  private report(running: boolean, p: Probe, data: LocalPg["data"], systemId: string | null, position: Position, haveSecrets: boolean, d: HaAction): void {
    const up = p.up ? p : null;
    this.ctx.publish({
      port: this.cfg.postgres.port, data, systemId, running, up: p.up, inRecovery: up ? up.inRecovery : null, position,
      receiveLsn: up?.receiveLsn ?? null, replayLsn: up?.replayLsn ?? null, upstream: this.upstream,
      streaming: up?.walReceiver?.status === "streaming",
      replication: (up?.replication ?? []).map((r) => ({ name: r.applicationName.slice(0, 64), clientAddr: r.clientAddr, state: r.state.slice(0, 32), syncState: r.syncState.slice(0, 16), lagBytes: r.lagBytes, replayLagSeconds: r.replayLagSeconds })),
      slots: this.slots,
      slotBytes: this.slotBytes,
      ...(this.wasPrimary && this.guarantee ? { guarantee: this.guarantee.slice(0, 300) } : {}),
      action: d.kind === "none" ? d.role : d.kind,
      note: (d.kind === "wait" || d.kind === "refuse" ? d.reason : this.note).slice(0, 500),
      error: this.lastError?.slice(0, 1000) ?? null,
      haveSecrets,
    }, position);
  }

  private slots: string[] = [];
  /** Retained WAL per slot (bytes), for /metrics. */
  slotBytes: Record<string, number> = {};
  private readonly droppedFor = new Set<string>();

  private localDb(): Db {
    this.db ??= openLocalDb({ socketDir: this.socketDir, port: this.cfg.postgres.port, superuser: this.cfg.postgres.superuser, log: this.log, queryTimeoutMs: 3000 });
    return this.db;
  }

  // ------------------------------------------------------------------ actions

  private async act(d: Exclude<HaAction, { kind: "none" | "wait" | "refuse" }>): Promise<void> {
    switch (d.kind) {
      case "initdb": return this.initCluster();
      case "start-primary": return this.startPrimary(d.adopt, this.crashedPrimary);
      case "promote": {
        this.syncNames = this.initialSyncNames();
        this.graceUntil = performance.now() + DEGRADE_AFTER_MS + 2000;
        this.shortSince = null;
        const r = await promote(this.localDb(), this.node);
        this.upstream = null;
        await this.writeConfig(false);
        await reload(this.node); // synchronous_standby_names of the new primary: it must be in force
        this.log.info(`promotion: ${r}`);
        // pg_control keeps the old timeline until a checkpoint: pg_rewind of the old primary reads it.
        await this.localDb().query("checkpoint after promotion", (sql) => sql`CHECKPOINT`, 60_000).catch((e) => this.log.warn(`checkpoint after promotion: ${(e as Error).message}`));
        const after = await probe(this.localDb());
        this.ctx.becamePrimary("promote", after.up ? after.timeline : null, after.up ? after.currentLsn : null);
        return;
      }
      case "fence": return this.fence(d.reason);
      case "clone":
        await stop(this.node, "fast", 60);
        await this.clone(d.from);
        this.rejoinRequest = null;
        return;
      case "rewind": return this.rewindFrom(d.from, this.stuckNow);
      case "start-standby": {
        await this.writeConfig(true, d.upstream);
        await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
        if (this.handedOver) {
          this.handedOver = false;
          this.record("rejoin", `former primary follows ${d.upstream} after the switchover (clean handover, no rewind)`);
        }
        return;
      }
      case "repoint": {
        this.log.info(`following the new primary at ${d.upstream}`);
        await this.writeConfig(true, d.upstream);
        await reload(this.node);
        return;
      }
      case "resign": return this.ctx.resign(d.reason);
    }
  }

  private async initCluster(): Promise<void> {
    this.syncNames = ""; // no standby exists yet, and nothing was acknowledged
    this.log.info(`creating the cluster: initdb of ${this.node.dataDir} (data checksums on)`);
    await initdb(this.node, { superuser: this.cfg.postgres.superuser });
    await this.writeConfig(false);
    await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
    await this.establishIdentity();
    const p = await probe(this.localDb());
    this.ctx.becamePrimary("bootstrap", p.up ? p.timeline : null, p.up ? p.currentLsn : null);
  }

  private async startPrimary(adopt: boolean, crashed: boolean): Promise<void> {
    if (adopt) this.log.info(`adopting the existing server in ${this.node.dataDir} as the first primary (bootstrap.from_existing)`);
    const needIdentity = !this.ctx.secrets()?.systemId;
    this.syncNames = needIdentity ? "" : this.initialSyncNames();
    await this.writeConfig(false);
    if (crashed) await this.restartInPlace();
    else await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
    if (!needIdentity) {
      // Restarted (in place, or after an agent restart): its standbys reconnect within about a
      // second. Writes wait for them as after a promotion, instead of suspending failover at once.
      // From now, not from before the start: crash recovery may take longer than the grace.
      this.graceUntil = performance.now() + DEGRADE_AFTER_MS + 2000;
      this.shortSince = null;
    }
    if (needIdentity) {
      await this.establishIdentity();
      const p = await probe(this.localDb());
      this.ctx.becamePrimary(adopt ? "adopt" : "bootstrap", p.up ? p.timeline : null, p.up ? p.currentLsn : null);
    } else if (crashed) this.record("restart", "PostgreSQL crashed under the leader and was restarted in place");
  }

  /** A crashed primary: clear what the dead postmaster left and start it again within a short budget. */
  private async restartInPlace(): Promise<void> {
    this.log.warn(`PostgreSQL stopped under the leader: restarting it in place (budget ${RESTART_BUDGET_S} s)`);
    const deadline = performance.now() + RESTART_BUDGET_S * 1000;
    for (;;) {
      const killed = killLeftovers(this.node.dataDir);
      if (killed > 0) this.log.warn(`killed ${killed} leftover PostgreSQL process(es) of the dead postmaster`);
      const removed = clearStaleLocks(this.node.dataDir, join(this.socketDir, `.s.PGSQL.${this.cfg.postgres.port}.lock`));
      if (removed.length > 0) this.log.warn(`removed stale lock files of the dead postmaster: ${removed.join(", ")}`);
      try {
        await start(this.node, { logFile: this.serverLog(), timeoutSec: Math.max(1, Math.ceil((deadline - performance.now()) / 1000)) });
        return;
      } catch (e) {
        // Leftover backends (lock file, shared memory still attached) go away within moments.
        if (!(e instanceof PgCtlError) || e.kind === "port-in-use" || performance.now() > deadline) throw e;
        await Bun.sleep(100);
      }
    }
  }

  /** First primary: generate the role passwords, create the roles, record the system identifier. */
  private async establishIdentity(): Promise<void> {
    const p = await probe(this.localDb());
    if (!p.up) throw new Error(`server did not answer after start: ${p.error}`);
    const s: ClusterSecrets = this.ctx.secrets() ?? { systemId: null, replPassword: generatePassword(), monitorPassword: generatePassword() };
    await ensureRoles(this.localDb(), { replUser: this.cfg.postgres.repl_user, replPassword: s.replPassword, monitorUser: this.cfg.postgres.monitor_user, monitorPassword: s.monitorPassword }, this.log);
    this.ctx.saveSecrets({ ...s, systemId: p.systemIdentifier });
    this.rolesEnsuredFor = p.systemIdentifier;
    this.log.info(`cluster identity: system identifier ${p.systemIdentifier}; roles ${this.cfg.postgres.repl_user}, ${this.cfg.postgres.monitor_user} ready`);
  }

  private async clone(from: string): Promise<void> {
    const s = this.ctx.secrets();
    if (!s) throw new Error("no replication credentials");
    const [host, port] = splitAddr(from);
    const target = cloneDirFor(this.node.dataDir);
    this.log.info(`cloning from the primary at ${from} into ${target}`);
    let last = -1;
    const { ms } = await basebackup({
      bins: this.node.bins, osUser: this.node.osUser, log: this.log, host, port, user: this.cfg.postgres.repl_user,
      password: s.replPassword, target, slot: slotFor(this.ctx.nodeId), applicationName: slotFor(this.ctx.nodeId),
      timeoutMs: 6 * 3600_000,
      onProgress: (pr) => {
        if (pr.percent >= last + 10 || pr.percent === 100) {
          last = pr.percent;
          this.note = `cloning ${pr.percent}% (${pr.doneKb}/${pr.totalKb} kB)`;
          this.log.info(this.note);
        }
      },
    });
    this.note = "";
    const old = await swapDataDir(target, this.node.dataDir);
    if (old) this.log.warn(`previous data directory kept at ${old}`);
    this.log.info(`clone complete in ${ms} ms`);
    this.notStreamingSince = null;
    this.knownTli = 0;
    await this.writeConfig(true, from);
    await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
  }

  /** Former primary → standby of the new primary: pg_rewind, else a fresh clone swapped in when complete. */
  private async rewindFrom(from: string, stuck: boolean): Promise<void> {
    const s = this.ctx.secrets();
    if (!s) throw new Error("no replication credentials");
    await stop(this.node, "fast", 60);
    const [host, port] = splitAddr(from);
    this.log.info(`rejoining as a standby of ${from}: pg_rewind`);
    try {
      const r = await rewind({
        bins: this.node.bins, osUser: this.node.osUser, log: this.log, dataDir: this.node.dataDir, host, port,
        user: this.cfg.postgres.repl_user, password: s.replPassword, timeoutMs: 3600_000,
      });
      this.log.info(r === "rewound" ? "pg_rewind: rewound onto the new primary's timeline" : "pg_rewind: histories agree, no rewind needed");
      if (r === "not-needed" && stuck) {
        // Same history, yet it could not stream: the WAL it needs is gone from the primary.
        this.log.warn("this standby could not stream although its history matches (the WAL it needs is gone): taking a fresh clone");
        await this.clone(from);
        this.rejoinRequest = null;
        this.record("rejoin", `standby could not catch up (WAL removed on the primary): rebuilt from a fresh clone of ${from}`);
        return;
      }
      this.record("rejoin", r === "rewound" ? `former primary rewound (pg_rewind) onto ${from}` : `former primary follows ${from} (no rewind needed)`);
    } catch (e) {
      this.log.warn(`${(e as Error).message}; taking a fresh clone instead`);
      await this.clone(from);
      this.rejoinRequest = null;
      this.record("rejoin", `pg_rewind impossible (${(e as Error).message.slice(0, 200)}): rebuilt from a fresh clone of ${from}`);
      return;
    }
    this.rejoinRequest = null;
    this.notStreamingSince = null;
    this.knownTli = 0;
    await this.writeConfig(true, from);
    await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
  }

  /** Every round on a healthy server: managed files current, slots for the standbys on the primary. */
  private async maintain(primary: boolean, p: Probe): Promise<void> {
    const plan = primary && p.up && p.currentLsn ? this.planDurability(p) : null;
    const changed = await this.writeConfig(!primary, this.upstream ?? undefined);
    if (changed.length > 0) {
      this.log.info(`managed files changed (${changed.join(", ")}): reloading`);
      await reload(this.node);
    }
    if (plan && changed.length === 0) {
      // What is in force must be what the plan says (a missed reload would silently run async).
      const live = await this.localDb().query("synchronous_standby_names", (sql) => sql`SELECT current_setting('synchronous_standby_names') AS v`).catch(() => null);
      if (live && live[0]?.v !== this.syncNames) {
        this.log.warn(`synchronous_standby_names in force is '${live[0]?.v}', planned '${this.syncNames}': reloading`);
        await reload(this.node);
      }
    }
    if (plan) await this.publishGuard(plan);
    if (!p.up) return;
    let adopted = false;
    if (primary) {
      const s = this.ctx.secrets();
      if (!s || s.systemId === null) {
        // A running server adopted as the first primary (or an initdb whose first start was retried).
        await this.establishIdentity();
        this.ctx.becamePrimary(this.cfg.bootstrap.from_existing ? "adopt" : "bootstrap", p.timeline, p.currentLsn);
        adopted = true;
      } else if (this.rolesEnsuredFor !== p.systemIdentifier) {
        await ensureRoles(this.localDb(), { replUser: this.cfg.postgres.repl_user, replPassword: s.replPassword, monitorUser: this.cfg.postgres.monitor_user, monitorPassword: s.monitorPassword }, this.log);
        this.rolesEnsuredFor = p.systemIdentifier;
      }
    }
    // Settings that need a restart (listen_addresses, port, wal_level, …) of an adopted server or a standby.
    const pending = await pendingRestart(this.localDb()).catch(() => [] as string[]);
    if (pending.length > 0) {
      if (!primary || adopted) {
        this.log.warn(`restarting PostgreSQL to apply ${pending.join(", ")}`);
        await stop(this.node, "fast", 60);
        await start(this.node, { logFile: this.serverLog(), timeoutSec: this.cfg.postgres.start_timeout_s });
        return;
      }
      if (this.pendingWarned !== pending.join()) this.log.warn(`settings pending a restart of the primary: ${pending.join(", ")} (a switchover applies them without an outage)`);
      this.pendingWarned = pending.join();
    }
    if (primary) await this.maintainSlots();
  }

  /** Decide synchronous_standby_names and the guard for this round (applied by writeConfig / publishGuard). */
  private planDurability(p: Extract<Probe, { up: true }>): ReturnType<typeof planDurability> {
    const g = this.ctx.guardState();
    const plan = planDurability({
      mode: this.ctx.durabilityMode(), voters: this.ctx.votersCount(),
      standbyNames: this.ctx.standbyMembers().map(slotFor),
      streaming: p.replication.filter((r) => r.state === "streaming").map((r) => r.applicationName),
      degraded: this.degraded, blockCommitted: !!g.guard?.block && g.committed >= g.guard.seq,
      position: { timeline: p.timeline, lsn: p.currentLsn! }, maxLagBytes: this.cfg.failover.max_lag_bytes,
      shortForMs: this.shortSince === null ? 0 : performance.now() - this.shortSince,
      // Only right after a promotion or a restart: its standbys are (re)connecting. A fresh bootstrap degrades at once.
      degradeAfterMs: performance.now() < this.graceUntil && this.ctx.reachableStandbys() > 0 ? DEGRADE_AFTER_MS : 0,
    });
    const k = this.ctx.votersCount() - majority(this.ctx.votersCount());
    const streamingNow = p.replication.filter((r) => r.state === "streaming").length;
    this.shortSince = streamingNow >= k ? null : (this.shortSince ?? performance.now());
    if (plan.syncNames !== this.syncNames) this.log.warn(`synchronous_standby_names = '${plan.syncNames}': ${plan.guarantee}`);
    this.syncNames = plan.syncNames;
    this.guarantee = plan.guarantee;
    return plan;
  }

  private async publishGuard(plan: ReturnType<typeof planDurability>): Promise<void> {
    const cur = this.ctx.guardState().guard;
    if (plan.guard === "keep" && !(cur?.block && !plan.degraded)) {
      this.degraded = plan.degraded;
      return;
    }
    if (plan.guard === "resync" || plan.guard === "keep") {
      // "keep" with a block still up (inherited, or this agent restarted while degraded): lift it
      // the same way, with a floor covering whatever was acknowledged without a synchronous standby.
      // synchronous again (reloaded above): every commit acknowledged without a synchronous
      // standby is at or below the position now; a successor must hold at least that.
      const p = await probe(this.localDb());
      if (!p.up || !p.currentLsn) return;
      this.ctx.setGuard(false, { timeline: p.timeline, lsn: p.currentLsn });
      this.degraded = false;
      this.log.info(`synchronous again; automatic failover back on for candidates at or beyond ${p.currentLsn}`);
      return;
    }
    this.degraded = plan.degraded;
    const same = cur && cur.block === plan.guard.block && samePosition(cur.floor, plan.guard.floor);
    const asyncStep = !plan.guard.block && plan.guard.floor && cur?.floor && performance.now() - this.lastGuardAt < 1000;
    if (!same && !asyncStep) {
      this.ctx.setGuard(plan.guard.block, plan.guard.floor);
      this.lastGuardAt = performance.now();
      if (plan.guard.block) this.log.warn("too few synchronous standbys: automatic failover suspended until one is back");
    }
  }

  /** Initial synchronous_standby_names of a new primary: synchronous until the plan says otherwise. */
  private initialSyncNames(): string {
    if (this.ctx.durabilityMode() === "async") return "";
    const n = this.ctx.votersCount();
    return syncStandbyNames(n - majority(n), this.ctx.standbyMembers().map(slotFor));
  }

  /**
   * A vote for a newer term is about to be granted: stop streaming from the old primary first, so
   * it can no longer count this standby's acknowledgements, and vote with the final position.
   */
  async detachForVote(term: number): Promise<Position | null> {
    // One at a time with the monitoring round: a round that decided to re-point to the old
    // primary before this must not do it after (it would stream again and acknowledge its commits).
    while (this.running) await Bun.sleep(5);
    this.running = true;
    try {
      if (!this.lastReportUp || !this.lastInRecovery) return null;
      this.detachedTerm = term;
      this.upstream = null;
      await this.writeConfig(true, undefined);
      await reload(this.node);
      const end = performance.now() + 2000;
      let lastLsn: string | null = null;
      for (;;) {
        const p = await probe(this.localDb());
        if (!p.up) return null;
        const conninfo = await this.localDb().query("primary_conninfo", (sql) => sql`SELECT current_setting('primary_conninfo') AS v`).catch(() => null);
        const lsn = p.receiveLsn ?? p.replayLsn;
        // Detached: the reload is in force, no walreceiver, and the received position stopped moving.
        const quiet = conninfo?.[0]?.v === "" && !p.walReceiver && lsn === lastLsn;
        if (quiet || performance.now() > end) {
          if (!quiet) this.log.warn(`could not confirm replication stopped within 2 s before voting in term ${term}`);
          this.log.info(`stopped streaming to vote in term ${term} (final position ${lsn})`);
          if (p.inRecovery) this.knownTli = Math.max(this.knownTli, p.timeline);
          return lsn ? this.withKnownTli({ timeline: p.timeline, lsn }, true) : null;
        }
        lastLsn = lsn;
        await Bun.sleep(20);
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * One physical slot per standby member. A member that is down keeps its slot (so it can catch up
   * without a clone) for slots.retain_minutes; then the slot is dropped with a warning, so the WAL
   * it holds cannot fill the disk (the member re-clones when it returns). Slots of pgherd members
   * that left the cluster go at once; slots not named pgherd_* are the operator's and untouched.
   */
  private async maintainSlots(): Promise<void> {
    const existing = await listSlots(this.localDb());
    const have = new Set(existing.map((x) => x.name));
    const members = this.ctx.standbyMembers();
    const wanted = new Map(members.map((id) => [slotFor(id), id] as const));
    const retainMs = this.cfg.slots.retain_minutes * 60_000;
    for (const slot of existing) {
      if (!slot.name.startsWith("pgherd_")) continue;
      const id = wanted.get(slot.name);
      const downMs = id === undefined ? Infinity : this.ctx.downForMs(id);
      if (id === undefined || (!slot.active && downMs > retainMs)) {
        const why = id === undefined ? "its member left the cluster" : `its member has been down for ${Math.round(downMs / 60_000)} min (slots.retain_minutes = ${this.cfg.slots.retain_minutes})`;
        this.log.warn(`dropping replication slot ${slot.name} (holds ${slot.retainedBytes ?? 0} bytes of WAL): ${why}`);
        await dropSlot(this.localDb(), slot.name, true);
        have.delete(slot.name);
        if (id !== undefined) this.droppedFor.add(id);
      }
    }
    for (const [name, id] of wanted) {
      if (have.has(name)) continue;
      // A member whose slot was dropped for being down too long gets a new one once it is back.
      if (this.droppedFor.has(id) && this.ctx.downForMs(id) > 0) continue;
      this.droppedFor.delete(id);
      await ensureSlot(this.localDb(), name);
      this.log.info(`created replication slot ${name}`);
      have.add(name);
    }
    this.slots = [...have].sort();
    this.slotBytes = Object.fromEntries(existing.filter((x) => have.has(x.name)).map((x) => [x.name, x.retainedBytes ?? 0]));
  }

  private async writeConfig(standby: boolean, upstream?: string): Promise<string[]> {
    const s = this.ctx.secrets();
    const pg = this.cfg.postgres;
    let conninfo: string | undefined;
    const u = await lookupOsUser(pg.os_user);
    if (standby && upstream) {
      const [host, port] = splitAddr(upstream);
      if (s) {
        await writePassfile(this.passfile, [{ host, port, database: "*", user: pg.repl_user, password: s.replPassword }], { uid: u.uid, gid: u.gid });
      }
      conninfo = buildConninfo({ host, port, user: pg.repl_user, passfile: this.passfile, applicationName: slotFor(this.ctx.nodeId) });
      this.upstream = upstream;
    } else if (!standby) this.upstream = null;
    await ensureDir(this.socketDir, 0o700, { uid: u.uid, gid: u.gid });
    const res = await writeManagedConfig({
      dataDir: this.node.dataDir, osUser: pg.os_user, standby, log: this.log,
      conf: {
        listenAddresses: [pg.listen_addresses], port: pg.port, unixSocketDir: this.socketDir,
        maxWalSenders: pg.max_wal_senders, maxReplicationSlots: pg.max_replication_slots, hotStandby: true, walLogHints: true,
        clusterName: this.cfg.cluster, primaryConninfo: conninfo, synchronousStandbyNames: standby ? "" : this.syncNames, primarySlotName: standby && upstream ? slotFor(this.ctx.nodeId) : undefined,
        parameters: this.cfg.slots.max_slot_wal_keep_size ? { max_slot_wal_keep_size: this.cfg.slots.max_slot_wal_keep_size, ...pg.parameters } : pg.parameters,
      },
      hba: { superuser: pg.superuser, replUser: pg.repl_user, monitorUser: pg.monitor_user, peers: this.ctx.peerAddresses() },
    });
    return res.changed;
  }

  private serverLog(): string {
    return join(this.node.dataDir, "..", `${this.cfg.cluster}-${this.cfg.node_name}-postgresql.log`);
  }
}

function positionOf(info: Awaited<ReturnType<typeof inspectDataDir>>, p: Probe): Position {
  if (p.up) {
    const lsn = p.currentLsn ?? maxLsn(p.receiveLsn, p.replayLsn);
    return lsn ? { timeline: p.timeline, lsn } : ZERO_POSITION;
  }
  const c = info.control;
  if (!c) return ZERO_POSITION;
  return { timeline: c.timeline, lsn: maxLsn(c.checkpointLsn, c.minRecoveryEndLsn) ?? "0/0" };
}

function maxLsn(a: string | null, b: string | null): string | null {
  if (!a) return b;
  if (!b) return a;
  return lsnCompare(a, b) >= 0 ? a : b;
}

/** "host:port" of a peer's PostgreSQL (formatted by the agent, so always valid). */
function splitAddr(addr: string): [string, number] {
  const hp = parseHostPort(addr);
  if (typeof hp === "string") throw new Error(`bad PostgreSQL address ${JSON.stringify(addr)}: ${hp}`);
  return [hp.host, hp.port];
}

function describe(d: HaAction): string {
  switch (d.kind) {
    case "none": return `PostgreSQL role: ${d.role}`;
    case "wait": return `waiting: ${d.reason}`;
    case "refuse": return `refusing: ${d.reason}`;
    case "clone": return `decision: clone from ${d.from}`;
    case "start-standby": return `decision: start as a standby of ${d.upstream}`;
    case "repoint": return `decision: follow ${d.upstream}`;
    case "start-primary": return `decision: start as primary${d.adopt ? " (adopting existing data)" : ""}`;
    case "fence": return `decision: fence (${d.reason})`;
    case "resign": return `decision: resign (${d.reason})`;
    default: return `decision: ${d.kind}`;
  }
}

