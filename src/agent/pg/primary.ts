// Making this node's PostgreSQL the primary: initdb, start (adopted, restarted, crashed in place),
// promote. Each runs inside the fencer's asPrimary(): never without a lease this agent holds.
import { join } from "node:path";
import type { ClusterSecrets } from "../../store/cluster-secrets.ts";
import { retryStart } from "../../core/restart-in-place.ts";
import { clearStaleLocks, ensureRoles, generatePassword, initdb, killLeftoversAndWait, osUidOf, PgCtlError, probe, promote, syncNamesBeforePromotion } from "../../postgres/index.ts";
import type { PgHost } from "./host.ts";
import { TimelineCheckpoint } from "./timeline-checkpoint.ts";
import { bootstrapFromBackup, type BootstrapHost, resumeRestore } from "../../backup/bootstrap.ts";
import { serverLogDir } from "../../ops/pg-log.ts";
import { planTimeline, type TimelinePlan } from "../../core/timelines.ts";
import { historyNumbers, markPlaceholdersReady, placePlaceholders } from "../../postgres/timeline-files.ts";

/** How long a promotion waits for a majority to store its timeline reservation. */
const RESERVE_MS = 3000;
/** How long a promotion waits for this term's read of the voters' configuration versions (a round trip). */
const CONFIRM_DURABILITY_MS = 1000;

/** A crashed primary gets this long to come back in place before the leader steps down. */
const RESTART_BUDGET_S = 10;
/** SIGKILLed leftovers of a dead postmaster are gone within moments; a restart waits this long at most for that. */
const LEFTOVER_EXIT_MS = 1000;

export interface SyncPlanner {
  initialSyncNames(): string;
  startGrace(): void;
  /** A promotion: startGrace, and nothing an earlier run as primary left carries over. */
  promoting(): void;
  rolesEnsured(systemId: string): void;
}

export class PrimaryStarter {
  /** Set by the loop once the durability keeper exists (it needs this starter too). */
  sync!: SyncPlanner;

  /** The one owner of the checkpoint after a promotion (a promotion and the primary's rounds start it). */
  readonly timelineCheckpoint: TimelineCheckpoint;

  constructor(private readonly h: PgHost) {
    this.timelineCheckpoint = new TimelineCheckpoint(h);
  }

  initCluster(): Promise<void> {
    const h = this.h;
    return h.fencer.asPrimary("initdb", async (still) => {
      h.syncNames = ""; // no standby exists yet, and nothing was acknowledged
      h.restoreMarker.clear(); // one left by an earlier restore named a directory emptied since (the round decides initdb only on an empty one)
      // Before the directory is created: a retry after a failure below may use what it holds (core/ha.ts).
      h.creationMarker.set(h.cfg.bootstrap.from_backup ? "restore from the backup" : "initdb");
      if (h.cfg.bootstrap.from_backup) await bootstrapFromBackup(this.restoreHost(still));
      else {
        h.log.info(`creating the cluster: initdb of ${h.node.dataDir} (data checksums on)`);
        await initdb(h.node, { superuser: h.cfg.postgres.superuser });
        await h.writeConfig(false);
        await h.startServer(undefined, still);
      }
      await this.establishIdentity();
      h.restoreMarker.clear(); // a restore from the backup ended at its target: the cluster is created
      const p = await probe(h.localDb());
      h.ctx.becamePrimary("bootstrap", p.up ? p.timeline : null, p.up ? p.currentLsn : null);
    });
  }

  /**
   * A restore from the backup whose recovery has not ended (store/restore-marker.ts, core/ha.ts
   * resume-restore): started again if stopped, waited for while it replays, and once PostgreSQL
   * promoted itself at the target, the rest of the bootstrap.
   */
  resumeRestore(): Promise<void> {
    const h = this.h;
    return h.fencer.asPrimary("restore from the backup", async (still) => {
      const m = h.restoreMarker.get();
      if (!m) return; // ended meanwhile
      h.syncNames = ""; // no standby exists yet
      await resumeRestore(this.restoreHost(still), m.target);
      await this.establishIdentity();
      h.restoreMarker.clear();
      const p = await probe(h.localDb());
      h.ctx.becamePrimary("bootstrap", p.up ? p.timeline : null, p.up ? p.currentLsn : null);
    });
  }

  /** `still`: the lease check of the task it runs in (Fencer.asPrimary), before each start. */
  private restoreHost(still: () => void): BootstrapHost {
    const h = this.h;
    return {
      cfg: h.cfg, socketDir: h.socketDir, node: h.node, log: h.log, marker: h.restoreMarker,
      serverLog: { file: h.serverLog(), collectorDir: serverLogDir(h.cfg) },
      localDb: () => h.localDb(), writeConfig: (s) => h.writeConfig(s), startServer: (t) => h.startServer(t, still),
      now: () => h.clock.now(), sleep: (ms) => h.clock.sleep(ms),
    };
  }

  startPrimary(adopt: boolean, crashed: boolean): Promise<void> {
    const h = this.h;
    return h.fencer.asPrimary("start as primary", async (still) => {
      if (adopt) h.log.info(`adopting the existing server in ${h.node.dataDir} as the first primary (bootstrap.from_existing)`);
      const needIdentity = !h.ctx.secrets()?.systemId;
      h.syncNames = needIdentity ? "" : this.sync.initialSyncNames();
      h.namesMayHaveChanged(); // a new start: nothing confirmed for the server before it counts
      await h.writeConfig(false);
      if (crashed) await this.restartInPlace(still);
      else await h.startServer(undefined, still);
      if (!needIdentity) {
        // Restarted (in place, or after an agent restart): its standbys reconnect within about a
        // second. Writes wait for them as after a promotion, instead of suspending failover at once.
        // From now, not from before the start: crash recovery may take longer than the grace.
        this.sync.startGrace();
      }
      if (needIdentity) {
        await this.establishIdentity();
        const p = await probe(h.localDb());
        h.ctx.becamePrimary(adopt ? "adopt" : "bootstrap", p.up ? p.timeline : null, p.up ? p.currentLsn : null);
      } else if (crashed) h.record("restart", "PostgreSQL crashed under the leader and was restarted in place");
    });
  }

  /**
   * With pgherd's archive_command ([backup] tool): the placeholder history files no one marked go
   * to the archive (timeline-files.ts). The primary's upkeep calls it once per timeline.
   */
  async archivePlaceholders(): Promise<void> {
    const h = this.h;
    if (h.cfg.backup.tool === "none") return;
    const marked = await markPlaceholdersReady(h.node.dataDir, h.cfg.postgres.os_user).catch((e: Error) => {
      h.log.warn(`marking the placeholder history files for the archive: ${e.message}`);
      return [];
    });
    if (marked.length > 0) h.log.info(`placeholder history file(s) of timeline(s) ${marked.join(", ")} marked for the archive`);
  }

  promote(): Promise<void> {
    const h = this.h;
    return h.fencer.asPrimary("promote", async (still) => {
      // Until pg_promote is sent the server stays the standby it was: a failure there says so (round.ts).
      const tl = await this.prepareToPromote().catch((e: Error) => {
        throw new NotPromoted(e);
      });
      const r = await promote(h.localDb(), h.node, undefined, still);
      h.upstream = null;
      // Out of recovery on a new timeline: no longer a former primary's data waiting to be promoted
      // (a switchover may stop it before any round sees it run as a primary: re-review).
      h.ownTimelineMarker.clear();
      await h.writeConfig(false);
      await h.reload(); // synchronous_standby_names of the new primary: it must be in force
      h.log.info(`promotion: ${r}`);
      const after = await probe(h.localDb());
      // pg_control names the old timeline until a checkpoint, and pg_rewind of the old primary reads
      // it: the checkpoint runs beside the rounds (timeline-checkpoint.ts), the promotion is done.
      this.timelineCheckpoint.ensure(after);
      if (r === "promoted" && after.up && after.timeline > tl.next) {
        // A history file in the archive that pg_wal did not have: the reservation goes with it.
        if (!(await h.ctx.reserveTimeline(after.timeline, RESERVE_MS))) h.log.error(`the promotion got timeline ${after.timeline}, above the reserved ${tl.next}, and no majority stored it within ${RESERVE_MS} ms`);
      } else if (r === "promoted" && after.up && after.timeline < tl.next) {
        h.log.error(`the promotion got timeline ${after.timeline}, below the reserved ${tl.next}: another history may have the same number`);
      }
      h.ctx.becamePrimary("promote", after.up ? after.timeline : null, after.up ? after.currentLsn : null);
    });
  }

  /** This standby's timeline plan: PostgreSQL's walk over pg_wal's history files and the cluster's reservation. */
  private async planTimeline(): Promise<TimelinePlan> {
    const h = this.h;
    const p = await probe(h.localDb());
    const target = Math.max(p.up ? p.timeline : 1, h.knownTli);
    const have = await historyNumbers(h.node.dataDir, h.cfg.postgres.os_user);
    return planTimeline(target, (n) => have.has(n), h.ctx.guardState().guard?.timeline);
  }

  /**
   * Everything before pg_promote: the timeline reserved at a majority, the files, the synchronous
   * names in force, and placeholder history files for the numbers reserved by others. They stay: a
   * standby that follows across them asks this server for the history file of every number in
   * between (TIMELINE_HISTORY), and a missing one breaks its stream.
   */
  private async prepareToPromote(): Promise<TimelinePlan> {
    const h = this.h;
    // "async" only once this term's read of the voters says no later configuration holds
    // (dynamic-config-leader.ts durabilityInForce), asked beside the timeline's plan: else quorum names.
    const durability = h.ctx.confirmDurability(CONFIRM_DURABILITY_MS);
    const t0 = h.clock.now();
    // A repository host that does not answer: the promotion's restore_command calls fail at once
    // (backup/repo-down.ts), from before pg_promote.
    const repoDown = h.repoDown.check().catch((e: Error) => h.log.warn(`looking at the repository host before the promotion: ${e.message}`));
    // The timeline this promotion gets, reserved at a majority first (core/timelines.ts): while
    // that round trip runs, the files and the synchronous names are put in force.
    const tl = await this.planTimeline();
    const reserved = h.ctx.reserveTimeline(tl.next, RESERVE_MS);
    await durability;
    // In force before the promotion: from its first commit the new primary acknowledges nothing
    // that no synchronous standby has (set after pg_promote, commits until that reload would not wait).
    h.syncNames = this.sync.initialSyncNames();
    h.namesMayHaveChanged(); // a promotion: nothing confirmed before it counts
    this.sync.promoting();
    await h.writeConfig(true, h.upstream ?? undefined);
    await repoDown;
    const t1 = h.clock.now();
    const names = await syncNamesBeforePromotion(h.localDb(), h.syncNames, h.syncNamesTaken, h.node);
    h.syncNamesTaken = names.taken;
    if (!(await reserved)) throw new Error(`timeline ${tl.next} was not stored by a majority within ${RESERVE_MS} ms: not promoting`);
    h.log.info(`before the promotion: ${names.did}; timeline ${tl.next} reserved (files ${Math.round(t1 - t0)} ms, names and reservation ${Math.round(h.clock.now() - t1)} ms)`);
    if (tl.fill.length > 0) {
      h.log.warn(`timeline number(s) ${tl.fill.join(", ")} were reserved earlier (another leader's promotion may hold them): placeholder history files keep this promotion above them (timeline ${tl.next})`);
      await placePlaceholders(h.node.dataDir, h.cfg.postgres.os_user, tl.fill, h.ctx.leadership().term);
    }
    return tl;
  }

  /** A crashed primary: clear what the dead postmaster left and start it again within a short budget. */
  private async restartInPlace(still: () => void): Promise<void> {
    const h = this.h;
    h.log.warn(`PostgreSQL stopped under the leader: restarting it in place (budget ${RESTART_BUDGET_S} s)`);
    const deadline = h.clock.now() + RESTART_BUDGET_S * 1000;
    for (;;) {
      // Until they have exited the lock files are not stale, and a start fails on them (then waits
      // 100 ms below): the failover bench lost 0.24 s so in 3 of 5 postmaster kills.
      const uid = await osUidOf(h.node.osUser);
      const killed = await killLeftoversAndWait(h.node.dataDir, uid, LEFTOVER_EXIT_MS, h.clock);
      if (killed > 0) h.log.warn(`killed ${killed} leftover PostgreSQL process(es) of the dead postmaster`);
      const { removed, kept } = clearStaleLocks(h.node.dataDir, uid, join(h.socketDir, `.s.PGSQL.${h.cfg.postgres.port}.lock`));
      if (removed.length > 0) h.log.warn(`removed stale lock files of the dead postmaster: ${removed.join(", ")}`);
      if (kept.length > 0) h.log.warn(`lock files of the dead postmaster kept: ${kept.join("; ")}`);
      try {
        await h.startServer(Math.max(1, Math.ceil((deadline - h.clock.now()) / 1000)), still);
        return;
      } catch (e) {
        // Thrown, the leader steps down (round.ts) instead of looping (core/restart-in-place.ts).
        const lockHeld = e instanceof PgCtlError && e.kind === "already-running";
        if (!retryStart({ lockHeld, keptLocks: kept.length, now: h.clock.now(), deadline })) throw e;
        await h.clock.sleep(100);
      }
    }
  }

  /** First primary: generate the role passwords, create the roles, record the system identifier. */
  async establishIdentity(): Promise<void> {
    const h = this.h;
    const p = await probe(h.localDb());
    if (!p.up) throw new Error(`server did not answer after start: ${p.error}`);
    const s: ClusterSecrets = h.ctx.secrets() ?? { systemId: null, replPassword: generatePassword(), monitorPassword: generatePassword(), ...h.tls.caForNewSecrets() };
    await ensureRoles(h.localDb(), { replUser: h.cfg.postgres.repl_user, replPassword: s.replPassword, monitorUser: h.cfg.postgres.monitor_user, monitorPassword: s.monitorPassword }, h.log);
    h.ctx.saveSecrets({ ...s, systemId: p.systemIdentifier });
    h.creationMarker.clear(); // the cluster's identity is recorded: its data is the cluster's
    this.sync.rolesEnsured(p.systemIdentifier);
    h.log.info(`cluster identity: system identifier ${p.systemIdentifier}; roles ${h.cfg.postgres.repl_user}, ${h.cfg.postgres.monitor_user} ready`);
  }
}

/** A promotion that failed before pg_promote was sent: the server is still the standby it was. */
export class NotPromoted extends Error {
  override readonly name = "NotPromoted";
  constructor(readonly why: Error) {
    super(why.message);
  }
}
