// Every round on a healthy server: managed files current, synchronous_standby_names as the
// durability plan says, the guard published, settings needing a restart applied, slots kept, the
// WAL archiver watched.
import { blockInForce, planDurability, syncNamesFor } from "../../core/durability.ts";
import { samePosition } from "../../core/position.ts";
import { majority } from "../../core/quorum.ts";
import { ensureRoles, probe, syncNamesBarrier, type Probe } from "../../postgres/index.ts";
import { DbTimeoutError } from "../../postgres/sql.ts";
import type { OrderedValue } from "../../core/restart-plan.ts";
import { slotFor } from "./context.ts";
import { readSettings } from "./restart-node.ts";
import type { PgHost } from "./host.ts";
import type { PrimaryStarter } from "./primary.ts";
import type { SlotKeeper } from "./slots.ts";
import { maxLagBytesInForce, pgParametersInForce } from "../dynamic-config.ts";
import { accessRowsInForce } from "../../ops/access.ts";
import { runningConfig } from "../../ops/reload.ts";
import { ExclusionKeeper } from "./sync-exclusion.ts";

/** quorum: writes wait this long for synchronous standbys before the primary degrades. */
export const DEGRADE_AFTER_MS = 3000;
/**
 * A standby whose inputs to maintenance did not change (see standbyCurrent) runs it once every
 * this many rounds: the files it manages are then re-checked for outside edits within two
 * seconds (at the default postgres.loop_ms) instead of every round. Any change of an input, and
 * every round of a primary, maintains at once.
 */
const STANDBY_MAINTAIN_EVERY = 4;

export class Maintenance {
  private degraded = false;
  /** This node's lift of its block (a resync), sent and not yet answered: the block does not count meanwhile. */
  private lifting: Promise<void> | null = null;
  private shortSince: number | null = null;
  private graceUntil = 0;
  /** When this agent's first round as primary (of this run as one) began: null while not primary. */
  private primarySince: number | null = null;
  /** Since when some standby the fill wants has waited for its echo, without a break (core/durability.ts fillPendingForMs). */
  private pendingSince: number | null = null;
  private lastGuardAt = 0;
  /** A block was asked for and not stored yet (asked again every round, warned once). */
  private blockAsked = false;
  private pendingWarned = "";
  /** pg_settings.pending_restart of the last round (reported to status and peers). */
  pending: string[] = [];
  /** The settings PostgreSQL orders between primary and standbys, as the last round read them. */
  ordered: OrderedValue[] = [];
  private rolesEnsuredFor: string | null = null;
  /** The primary's timeline whose placeholder history files this agent marked for the archive. */
  private placeholdersFor: number | null = null;
  /** The running barrier of takeNames(), or null. */
  private barrier: Promise<void> | null = null;
  /** publishGuard keeps a block up until the barrier confirms the names (logged once per hold). */
  private heldForBarrier = false;
  /** What a commit acknowledgement promises on this primary now. */
  guarantee = "";
  /** A primary's inputs to its managed files when it last wrote them, and the rounds skipped since. */
  private primaryFiles = "";
  private primarySecrets: unknown = undefined;
  private primarySkipped = 0;
  /** A standby's maintenance inputs at its last maintenance, and the rounds skipped since. */
  private standbyInputs = "";
  private standbySecrets: unknown = undefined;
  private standbySkipped = 0;

  /** A primary's confirmation that standbys which cannot lead no longer acknowledge commits (the leader publishes it). */
  readonly exclusion: ExclusionKeeper;

  constructor(private readonly h: PgHost, private readonly slots: SlotKeeper, private readonly primary: PrimaryStarter) {
    this.exclusion = new ExclusionKeeper(h);
  }

  markDegraded(): void {
    this.degraded = true;
  }

  /**
   * A promotion: a new run as primary. What an earlier run of this node as primary left (it ran
   * degraded, the fill waited for an echo, the hearing window of its first round) does not carry
   * over: a node fenced and rewound, or a stopped former primary started to be promoted, may never
   * run a round as a standby in between.
   */
  promoting(): void {
    this.degraded = false;
    this.primarySince = null;
    this.pendingSince = null;
    this.startGrace();
  }

  /** Right after a promotion or a restart: its standbys are (re)connecting; writes wait for them a while. */
  startGrace(): void {
    this.graceUntil = this.h.clock.now() + DEGRADE_AFTER_MS + 2000;
    this.shortSince = null;
  }

  rolesEnsured(systemId: string): void {
    this.rolesEnsuredFor = systemId;
  }

  /** Initial synchronous_standby_names of a new primary: synchronous until the plan says otherwise. */
  initialSyncNames(): string {
    const ctx = this.h.ctx;
    if (ctx.durabilityMode() === "async") return "";
    const n = ctx.votersCount();
    return syncNamesFor(n - majority(n), ctx.syncSet().names.map(slotFor));
  }

  /**
   * The round's upkeep. A query that finds no answer within its deadline ends it at once: a server
   * that stopped answering (frozen, hung) must not hold the round for one deadline per remaining
   * query, because the next round is the one that observes it and lets the leader resign. The
   * leader watching its server passes the heartbeat's deadline (1.5 s) for every query of it.
   */
  async maintain(primary: boolean, p: Probe, deadlineMs?: number): Promise<void> {
    const h = this.h;
    const before = h.queryDeadlineMs;
    if (deadlineMs !== undefined) h.queryDeadlineMs = deadlineMs;
    try {
      await this.upkeep(primary, p);
    } catch (e) {
      if (!(e instanceof DbTimeoutError)) throw e;
      h.log.warn(`round upkeep cut short: ${e.message}; the next round observes the server first`);
    } finally {
      h.queryDeadlineMs = before;
    }
  }

  private async upkeep(primary: boolean, p: Probe): Promise<void> {
    // Every node's archiver (archive_mode = always), a primary's or a standby's: at most every 2 s.
    if (p.up) await this.slots.archiver.look(this.h.localDb());
    if (primary) {
      this.primarySince ??= this.h.clock.now();
      this.standbyInputs = "";
      await this.maintainNow(true, p);
      // Names already in force (an agent restarted beside its primary whose first plan equals them):
      // no reload and no guard change runs a barrier, yet the exclusion needs the names confirmed taken.
      if (p.up && !p.inRecovery) this.takeNames();
      return this.exclusion.step(p);
    }
    this.exclusion.reset();
    this.primarySince = null;
    // The names it would be promoted with, in its files already (PgHost.writeConfig): a standby
    // ignores them, and a promotion finds them in force (primary.ts).
    this.h.syncNames = this.initialSyncNames();
    const inputs = `${this.h.syncNames}\n${this.standbyKey(p)}`;
    const secrets = this.h.ctx.secrets();
    if (inputs === this.standbyInputs && secrets === this.standbySecrets && this.standbySkipped < STANDBY_MAINTAIN_EVERY - 1) {
      this.standbySkipped++;
    } else {
      await this.maintainNow(false, p);
      // Only a maintenance that went through counts: a failed one is tried again next round.
      this.standbyInputs = inputs;
      this.standbySecrets = secrets;
      this.standbySkipped = 0;
    }
    if (p.up) this.takeNames();
  }

  private async maintainNow(primary: boolean, p: Probe): Promise<void> {
    const h = this.h;
    const plan = primary && p.up && p.currentLsn ? this.plan(p) : null;
    // A primary writes its files when what they are made from changed (synchronous_standby_names
    // of this round's plan included) and otherwise every STANDBY_MAINTAIN_EVERY rounds; the check
    // below that the planned synchronous_standby_names is in force still runs every round.
    const filesKey = primary ? `${h.syncNames}\n${this.standbyKey(p)}` : "";
    const secrets = h.ctx.secrets();
    const filesDue = !primary || filesKey !== this.primaryFiles || secrets !== this.primarySecrets || this.primarySkipped >= STANDBY_MAINTAIN_EVERY - 1;
    let changed: string[] = [];
    if (filesDue) {
      changed = await h.writeConfig(!primary, h.upstream ?? undefined);
      if (primary) [this.primaryFiles, this.primarySecrets, this.primarySkipped] = [filesKey, secrets, 0];
    } else this.primarySkipped++;
    if (changed.length > 0) {
      h.log.info(`managed files changed (${changed.join(", ")}): reloading`);
      await h.reload();
      // A primary's names from none to some without a block to lift (async -> quorum, k from 0 to
      // 1): the barrier confirms them too; commits until it ends are acknowledged as before the change.
      if (primary && p.up) this.takeNames();
    }
    if (plan && p.up && changed.length === 0) {
      // What is in force must be what the plan says (a missed reload would silently run async):
      // the round's probe read it (no reload since, or changed would say so).
      if (p.syncNames !== h.syncNames) {
        h.log.warn(`synchronous_standby_names in force is '${p.syncNames}', planned '${h.syncNames}': reloading`);
        if (!filesDue) await h.writeConfig(!primary, h.upstream ?? undefined); // a file edited from outside since the last write
        // Empty names in force: commits went without waiting, and a block is lifted only after a new
        // barrier (publishGuard), which starts now (with one running: when a block waits).
        if (p.syncNames === "") h.namesMayBeEmpty();
        await h.reload();
        this.takeNames();
      }
    }
    if (plan) await this.publishGuard(plan);
    if (!p.up) return;
    let adopted = false;
    if (primary) {
      const s = h.ctx.secrets();
      if (!s || s.systemId === null) {
        // A running server adopted as the first primary (or an initdb whose first start was retried).
        await this.primary.establishIdentity();
        h.ctx.becamePrimary(h.cfg.bootstrap.from_existing ? "adopt" : "bootstrap", p.timeline, p.currentLsn);
        adopted = true;
      } else if (this.rolesEnsuredFor !== p.systemIdentifier) {
        await ensureRoles(h.localDb(), { replUser: h.cfg.postgres.repl_user, replPassword: s.replPassword, monitorUser: h.cfg.postgres.monitor_user, monitorPassword: s.monitorPassword }, h.log);
        this.rolesEnsuredFor = p.systemIdentifier;
      }
      // Once per timeline of this agent's primary: after a promotion (a retried one included), and
      // after an agent restart beside its running server (one that died before the marking).
      // A primary promoted before this agent's restart, or whose checkpoint after the promotion failed.
      this.primary.timelineCheckpoint.ensure(p);
      if (this.placeholdersFor !== p.timeline) {
        await this.primary.archivePlaceholders();
        this.placeholdersFor = p.timeline;
      }
    }
    // Settings that need a restart (listen_addresses, port, wal_level, …) of an adopted server or a standby:
    // read when the files were due (they change only with them, a reload or a restart), else the last reading stands.
    if (filesDue || changed.length > 0 || adopted) {
      const settings = await readSettings(h, !primary).catch(unlessTimeout({ pending: [] as string[], ordered: [] as OrderedValue[] }));
      this.pending = settings.pending;
      this.ordered = settings.ordered;
    }
    const pending = this.pending;
    if (pending.length > 0) {
      // Standbys wait for `pgherd restart` (one at a time, in the order PostgreSQL needs: restart-plan.ts).
      if (adopted) {
        h.log.warn(`restarting PostgreSQL to apply ${pending.join(", ")}`);
        await h.stopServer("fast", 60);
        // An adopted primary comes back as a primary: only with the lease.
        if (primary) await h.fencer.asPrimary("restart to apply settings", (still) => h.startServer(undefined, still));
        else await h.startServer();
        return;
      }
      if (this.pendingWarned !== pending.join()) h.log.warn(`settings pending a restart: ${pending.join(", ")} (pgherd restart --pending applies them, standbys one at a time)`);
      this.pendingWarned = pending.join();
    }
    await this.slots.maintain(primary, p.slots);
  }

  /**
   * What a standby's maintenance works from, besides the credentials: the server's state, the
   * upstream, the peers' addresses (pg_hba), the access rules and [postgres.parameters] in force,
   * the leader's permanent slots. Unchanged (and the credentials the same object), a standby
   * maintains every STANDBY_MAINTAIN_EVERY rounds only.
   */
  private standbyKey(p: Probe): string {
    const h = this.h;
    return JSON.stringify([
      p.up, p.up && p.inRecovery, h.upstream, h.ctx.peerAddresses(), accessRowsInForce(),
      pgParametersInForce(runningConfig()?.postgres.parameters ?? h.cfg.postgres.parameters), h.ctx.leaderPg()?.report.permanent ?? null,
    ]);
  }

  /** Decide synchronous_standby_names and the guard for this round (applied by writeConfig / publishGuard). */
  private plan(p: Extract<Probe, { up: true }>): ReturnType<typeof planDurability> {
    const { ctx, clock } = this.h;
    const g = ctx.guardState();
    const set = ctx.syncSet();
    const pending = set.pending;
    this.pendingSince = pending.length === 0 ? null : (this.pendingSince ?? clock.now());
    const plan = planDurability({
      mode: ctx.durabilityMode(), voters: ctx.votersCount(),
      standbyNames: set.names.map(slotFor),
      streaming: p.replication.filter((r) => r.state === "streaming").map((r) => r.applicationName),
      degraded: this.degraded, blockCommitted: blockInForce(g, ctx.nodeId, this.lifting !== null),
      position: { timeline: p.timeline, lsn: p.currentLsn! }, maxLagBytes: maxLagBytesInForce(this.h.cfg.failover.max_lag_bytes),
      shortForMs: this.shortSince === null ? 0 : clock.now() - this.shortSince,
      // Only right after a promotion or a restart: its standbys are (re)connecting. A fresh bootstrap degrades at once.
      degradeAfterMs: clock.now() < this.graceUntil && ctx.reachableStandbys() > 0 ? DEGRADE_AFTER_MS : 0,
      // An agent restarted beside its running primary has heard no standby yet: it names none, which
      // is not "too few standbys" (it would suspend failover and leave a floor for nothing).
      // Likewise a standby that cannot lead the fill wants, until it echoes this leader's messages.
      unheardStandbys: ctx.unheardStandbys().length + pending.length, primaryForMs: clock.now() - (this.primarySince ?? clock.now()),
      ...(this.pendingSince !== null ? { fillPendingForMs: clock.now() - this.pendingSince } : {}),
    });
    const k = ctx.votersCount() - majority(ctx.votersCount());
    const candidates = new Set(set.names.map(slotFor));
    const streamingNow = p.replication.filter((r) => r.state === "streaming" && candidates.has(r.applicationName)).length;
    this.shortSince = streamingNow >= k ? null : (this.shortSince ?? clock.now());
    if (plan.syncNames !== this.h.syncNames) this.h.log.warn(`synchronous_standby_names = '${plan.syncNames}': ${plan.guarantee}`);
    this.h.syncNames = plan.syncNames;
    this.guarantee = plan.guarantee;
    return plan;
  }

  /**
   * The checkpointer takes the names in the files (syncNamesBarrier), off the round: a CHECKPOINT
   * behind a long restartpoint must not hold the round up, so it runs on a connection of its own.
   */
  private takeNames(): void {
    const h = this.h;
    if (h.syncNames === "" || h.syncNamesTaken || this.barrier) return;
    const [names, emptied, db] = [h.syncNames, h.syncNamesEmptied, h.sideDb()];
    this.barrier = syncNamesBarrier(db, names, h.node).then((did) => {
      if (h.syncNames === names && h.syncNamesEmptied === emptied) {
        h.syncNamesTaken = true;
        h.log.info(did);
      }
    }, (e: Error) => {
      h.log.warn(`synchronous_standby_names not confirmed taken by the checkpointer: ${e.message} (tried again next round)`);
    }).finally(() => {
      this.barrier = null;
      void db.close().catch(() => undefined);
    });
  }

  private async publishGuard(plan: ReturnType<typeof planDurability>): Promise<void> {
    const { ctx, clock, log } = this.h;
    const cur = ctx.guardState().guard;
    if (!(typeof plan.guard === "object" && plan.guard.block)) this.blockAsked = false;
    if (cur?.block && ctx.voterChangePending()) {
      // The guard of a voter change: kept until the change is proposed (membership.ts), then the
      // re-sync lifts it with the new voter set.
      this.degraded = true;
      return;
    }
    if (plan.guard === "keep" && !(cur?.block && !plan.degraded)) {
      this.degraded = plan.degraded;
      return;
    }
    if ((plan.guard === "resync" || plan.guard === "keep") && !this.h.syncNamesTaken) {
      // Not before the checkpointer has taken the names: until then commits are still acknowledged
      // without a standby, above any floor read now. The block stays meanwhile.
      if (!this.heldForBarrier) log.info("synchronous standbys back: automatic failover stays suspended until the checkpointer has taken the names");
      this.heldForBarrier = true;
      this.takeNames();
      return;
    }
    this.heldForBarrier = false;
    if (plan.guard === "resync" || plan.guard === "keep") {
      // "keep" with a block still up (inherited, or this agent restarted while degraded): lift it
      // the same way. Synchronous again (reloaded above): every commit acknowledged without a
      // synchronous standby is at or below the position now; a successor must hold at least that.
      const p = await probe(this.h.localDb());
      if (!p.up || !p.currentLsn) return;
      const lift = ctx.setGuard(false, { timeline: p.timeline, lsn: p.currentLsn });
      this.lifting = lift;
      void lift.catch(() => {}).finally(() => {
        if (this.lifting === lift) this.lifting = null;
      });
      this.degraded = false;
      log.info(`synchronous again; automatic failover back on for candidates at or beyond ${p.currentLsn}`);
      return;
    }
    this.degraded = plan.degraded;
    // Another node's block (inherited) is not this primary's: its own is written (blockInForce).
    const same = cur && cur.block === plan.guard.block && (!cur.block || cur.holder === ctx.nodeId) && samePosition(cur.floor, plan.guard.floor);
    const asyncStep = !plan.guard.block && plan.guard.floor && cur?.floor && clock.now() - this.lastGuardAt < 1000;
    if (!same && !asyncStep) {
      ctx.setGuard(plan.guard.block, plan.guard.floor);
      this.lastGuardAt = clock.now();
      // A block may stay unstored a while (no majority reached, or refused during a migration to
      // etcd: src/core/consensus-migrate.ts guardChangeAllowed): writes wait meanwhile, asked again each round.
      if (plan.guard.block && !this.blockAsked) log.warn("too few synchronous standbys: asking the voters to suspend automatic failover until one is back; writes wait until a majority stored it");
      this.blockAsked = plan.guard.block;
    }
  }
}

/** A catch handler that answers `fallback` for any failure but a deadline, which it passes on. */
export function unlessTimeout<T>(fallback: T): (e: unknown) => T {
  return (e) => {
    if (e instanceof DbTimeoutError) throw e;
    return fallback;
  };
}
