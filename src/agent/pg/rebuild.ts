// Rebuilding this node as a standby of the primary: pg_rewind, else a fresh clone swapped in
// when complete. Also a plain clone of an empty (or rejoin --force-clone) node. With [backup]
// tool = "pgbackrest" and clone_from = "backup", a clone is a restore of the latest backup (the
// primary serves no base backup; the standby replays the archive, then streams); pg_basebackup
// from the primary when that fails (no backup yet).
import { dirname } from "node:path";
import { restoreLatest, stanzaInfo } from "../../backup/backups.ts";
import { NOT_STUCK } from "../../core/catch-up.ts";
import { backupEnd, type CloneSource, cloneSource, restoreCovers } from "../../core/clone-source.ts";
import { cloneNeeds, type FsRoom, type LastRefusal, ROOM_RECHECK_MS, roomRefusal, stillShort } from "../../core/clone-room.ts";
import { bytes } from "../../core/liveness.ts";
import { exists, treeBytes } from "../../postgres/fsutil.ts";
import { setStandbySignal } from "../../postgres/managed-config.ts";
import { lookupOsUser, osUidOf } from "../../postgres/users.ts";
import { fsRoomFor } from "../../postgres/liveness-obs.ts";
import { ensureBackrestForRestore } from "../../backup/wal-settings.ts";
import { basebackup, BasebackupError, cloneDirFor, killLeftoverCopies, swapProblem, notCopied, removeOldCopies, removeUnfinishedClone, swapDataDir } from "../../postgres/index.ts";
import type { RejoinEvent } from "./rejoin.ts";
import { CopyInterrupted, NoRoomError, CloneRefusedError } from "./rebuild-errors.ts";
import { Rewinder } from "./rewind-task.ts";
import type { Position } from "../../core/position.ts";
import { cloneNameFor, slotFor } from "./context.ts";
import { type PgHost, splitAddr } from "./host.ts";

/** How a clone made by a restore of the latest backup is described (and told apart). */
const RESTORED = "restore of the latest backup";

/**
 * A copy of a large database at a limited rate takes days (4 TB at 50 MB/s: 23 h): the clone is
 * stopped when it makes no progress for CLONE_STALL_MS, and only a week bounds it as a whole.
 */
const CLONE_TIMEOUT_MS = 7 * 24 * 3600_000;
const CLONE_STALL_MS = 30 * 60_000;

export class Rebuilder {
  /** Stops the copy of the clone under way (restore or pg_basebackup), or null when none runs. */
  private copying: AbortController | null = null;
  /** A clone task runs (its preparation, the stop, the copy, the swap and start). */
  private inClone = false;
  /** Why a vote asked this clone task to give way before its copy began (it then does not begin), or null. */
  private interrupted: string | null = null;
  /** Votes whose detach has not returned yet (loop.ts detach), and why the last one came. */
  private votesPending = 0;
  private voteWhy = "";

  /** The data directory in place came from a restore of the latest backup (this run's last clone). */
  private restoredLast = false;
  /** pg_rewind, and a vote while it runs (loop.ts detach asks rewinder.vote first). */
  readonly rewinder: Rewinder;

  /**
   * `progress`: a rejoin step; `noted`: the progress note (h.note) changed; `repo`: the backup
   * repository a clone restores from; `restingPosition`: the stopped data directory's position
   * (at-rest.ts), known by clock time `deadline`, else null.
   */
  constructor(
    private readonly h: PgHost, private readonly progress: (e: RejoinEvent) => void, private readonly noted: () => void,
    private readonly repo: CloneRepo = BACKREST_REPO, restingPosition: (deadline: number) => Promise<Position | null> = async () => null,
  ) {
    this.rewinder = new Rewinder(h, {
      progress, restingPosition,
      clone: (from, stuck) => this.clone(from, stuck),
      refuseWhileShort: () => void this.refuseWhileShort(),
      endLeftoverCopies: () => this.endLeftoverCopies(),
      rebuilt: () => this.rebuilt(),
      startAsStandby: (from) => this.startAsStandby(from),
    });
  }

  /** A pg_rewind or pg_basebackup an earlier agent left running here (postgres/orphans.ts leftoverCopies): ended before this one starts. */
  private async endLeftoverCopies(): Promise<void> {
    const h = this.h;
    const killed = await killLeftoverCopies(h.node.dataDir, cloneDirFor(h.node.dataDir), await osUidOf(h.node.osUser), 5_000, h.clock);
    if (killed > 0) h.log.warn(`ended ${killed} pg_rewind/pg_basebackup left running by an earlier agent (its restart does not end its children; their deadline was that agent's)`);
  }

  /** Stop, clone from `from`, swap the clone in, start as its standby. */
  cloneFrom(from: string): Promise<void> {
    return this.noting(async () => {
      // Room first, while the server still runs: a clone that cannot fit leaves it running.
      const room = await this.prepare();
      this.throwIfInterrupted(); // a vote came meanwhile: the server stays up, nothing is copied
      await this.h.stopServer("fast", 60);
      await this.cloneOnce(from, room);
    });
  }

  /** Clone with the server already stopped (after pg_rewind); `stuck`: it could not stream with a matching history (core/clone-source.ts). */
  private clone(from: string, stuck = false): Promise<void> {
    return this.noting(async () => this.cloneOnce(from, await this.prepare(), stuck));
  }

  /** `fn`, with the progress note cleared when it fails (the error is reported, not a step in progress). */
  private async noting(fn: () => Promise<void>): Promise<void> {
    // A vote whose detach has not run yet (queued behind this task) counts too; one whose detach
    // already ran does not (the decision of this task was taken after it, on the leader it saw then).
    this.interrupted = this.votesPending > 0 ? this.voteWhy : null;
    this.inClone = true;
    try {
      await fn();
    } catch (e) {
      this.h.note = "";
      throw e instanceof BasebackupError && e.noRoom ? new NoRoomError(e.message) : e;
    } finally {
      this.inClone = false;
    }
  }

  /**
   * Room for the clone before anything of it is written: an unfinished clone of an earlier attempt
   * removed (it would refuse this one), the copies beyond keep_old - 1 too (the swap moves one more
   * aside; a former primary's stays until the new server runs), then the room checked against a
   * refusal that still holds and against this node's own copy of the database (pg_basebackup's
   * estimate comes a second into the copy, which can fill a nearly full disk in that second).
   * The removals run in the background (each as large as a database: seconds to minutes that a vote
   * must not wait for) and the room is measured once they end: measured before, it would count
   * what they are about to free as taken. A vote ends the wait, and the walk of the data directory
   * (CopyInterrupted); the removals go on. Throws NoRoomError; returns the room.
   */
  private async prepare(): Promise<FsRoom> {
    const h = this.h;
    const swap = await swapProblem(h.node.dataDir);
    if (swap) throw new CloneRefusedError(`no clone: ${swap}`);
    const target = cloneDirFor(h.node.dataDir);
    await this.endLeftoverCopies();
    h.note = "removing previous data directories and unfinished clones";
    this.noted();
    // After the passes queued before (an interrupted clone's removal).
    void this.removePass(() => removeUnfinishedClone(target, h.log), `removing the unfinished clone ${target}`);
    void this.pruneOldCopies(Math.max(0, h.cfg.rejoin.keep_old - 1), { sparePrimaries: true });
    await this.passesDone();
    if (await exists(target)) throw new Error(`the unfinished clone ${target} could not be removed (see the log): no clone`);
    const room = this.refuseWhileShort();
    const own = await treeBytes(h.node.dataDir, notCopied, () => this.throwIfInterrupted());
    if (own !== null && this.roomFor(target, room, own, `the primary, as large as this node's own data directory`)) {
      throw new NoRoomError(`${this.lastRoom!.text} (a primary much smaller than this copy is cloned once it is moved away)`);
    }
    return room;
  }

  /**
   * A vote needs this node (loop.ts detach): the copy under way stops, so the executor is free for
   * the detach within its bound. A clone or restore can take hours, and while it held the executor
   * this node refused every vote: in a three-node cluster no failover until it ended. Nothing of the
   * copy is in use yet (the data directory is swapped only after it): the next clone starts afresh,
   * from whichever primary leads then. A clone task that has not begun its copy (or is about to
   * begin: a vote whose detach has not returned yet, voteDetached) does not begin it. The swap and start that follow a
   * copy are not stopped: the detach waits for them. True when a clone task was told.
   */
  interruptCopy(why: string): boolean {
    this.votesPending++;
    this.voteWhy = why;
    if (!this.inClone) return false;
    // Before the copy (preparing, stopping the server): it does not begin.
    if (!this.copying) {
      this.interrupted ??= why;
      return true;
    }
    if (this.copying.signal.aborted) return false;
    this.h.log.warn(`stopping the clone under way: ${why} (the copy is taken again afterwards)`);
    this.copying.abort(why);
    return true;
  }

  /** The detach of a vote that called interruptCopy returned (whatever its outcome). */
  voteDetached(): void {
    this.votesPending = Math.max(0, this.votesPending - 1);
  }

  /** A vote asked this clone task to give way before its copy began: it ends here. */
  private throwIfInterrupted(): void {
    if (!this.interrupted) return;
    this.h.log.warn(`not starting the clone's copy: ${this.interrupted} (taken afterwards)`);
    throw new CopyInterrupted(`clone not started: ${this.interrupted}`);
  }

  /** The removal passes queued before, unless a vote asks for the executor meanwhile (CopyInterrupted). */
  private async passesDone(): Promise<void> {
    while (this.passesLeft > 0) {
      this.throwIfInterrupted();
      await this.h.clock.sleep(50);
    }
    this.throwIfInterrupted(); // a vote during the last wait
  }

  private async cloneOnce(from: string, room: FsRoom, stuck = false): Promise<void> {
    const h = this.h;
    const s = h.ctx.secrets();
    if (!s) throw new Error("no replication credentials");
    this.progress({ kind: "rebuild", how: "clone" });
    const target = cloneDirFor(h.node.dataDir);
    this.throwIfInterrupted();
    const copy = new AbortController();
    this.copying = copy;
    let how: string;
    try {
      const restoreConfigured = h.cfg.backup.tool === "pgbackrest" && h.cfg.backup.clone_from === "backup";
      const source = cloneSource({ restoreConfigured, stuck, lastCloneRestored: this.restoredLast });
      if (restoreConfigured && source === "primary") h.log.warn("this standby was restored from the latest backup and could not stream: the archive misses WAL the backup needs; cloning from the primary this time (pg_basebackup)");
      how = await this.copy(from, target, room, copy.signal, source);
    } catch (e) {
      // The unfinished copy goes in the background, as every removal (as large as the database:
      // the executor is for the vote now); the next clone's preparation waits for that pass.
      if (e instanceof CopyInterrupted) void this.removePass(() => removeUnfinishedClone(target, h.log), "removing the interrupted clone");
      throw e;
    } finally {
      this.copying = null;
    }
    await this.swapAndStart(target, from, how);
  }

  /** The copy into `target`: a restore of the latest backup, else pg_basebackup from `from`. Returns how it was made. */
  private async copy(from: string, target: string, room: FsRoom, signal: AbortSignal, source: CloneSource): Promise<string> {
    const h = this.h;
    if (source === "backup" && (await this.restoreFromBackup(target, room, signal))) return RESTORED;
    if (signal.aborted) throw new CopyInterrupted(`clone not started: ${String(signal.reason)}`);
    const [host, port] = splitAddr(from);
    const rate = h.cfg.rejoin.clone_max_rate_kb;
    h.log.info(`cloning from the primary at ${from} into ${target}${rate ? ` at most ${rate} kB/s (rejoin.clone_max_rate_kb)` : ""}`);
    let shown = -1;
    const passfile = await h.writePassfile(host, port);
    const { ms } = await basebackup({
      bins: h.node.bins, osUser: h.node.osUser, log: h.log, host, port, user: h.cfg.postgres.repl_user,
      passfile, target, slot: slotFor(h.ctx.nodeId), applicationName: cloneNameFor(h.ctx.nodeId), tls: await h.tls.client(), signal,
      timeoutMs: CLONE_TIMEOUT_MS, stallMs: CLONE_STALL_MS, ...(rate ? { maxRateKbPerSec: rate } : {}), room: (estimate) => this.roomFor(target, room, estimate, `the primary at ${from}`),
      onProgress: (pr) => {
        if (pr.percent >= shown + 10 || pr.percent === 100) {
          shown = pr.percent;
          h.note = `cloning ${pr.percent}% (${pr.doneKb}/${pr.totalKb} kB)`;
          h.log.info(h.note);
          this.noted();
        }
      },
    }).catch((e: Error) => Promise.reject(signal.aborted ? new CopyInterrupted(e.message) : e));
    h.log.info(`clone complete in ${ms} ms`);
    return `pg_basebackup from ${from}`;
  }

  /** The last clone refused for want of room (core/clone-room.ts): the next attempt refuses again without asking the source while it holds. */
  private lastRoom: LastRefusal | null = null;

  /** The room beside the data directory now; throws NoRoomError while the last refusal still holds. */
  private refuseWhileShort(): FsRoom {
    const h = this.h;
    const room = fsRoomFor(dirname(cloneDirFor(h.node.dataDir))); // a first clone may make the parent too
    const last = this.lastRoom;
    if (last && stillShort(last, room, h.clock.now())) {
      throw new NoRoomError(`${last.text} (from the estimate of ${Math.round((h.clock.now() - last.at) / 1000)} s ago: the room here is still short; the source is asked again once it suffices, or ${ROOM_RECHECK_MS / 60_000} minutes after that estimate)`);
    }
    return room;
  }

  /** Why a clone of `estimateBytes` from `what` may not start beside the data directory, with `room` there before it (remembered, logged), or null. */
  private roomFor(target: string, room: FsRoom, estimateBytes: number, what: string): string | null {
    const r = roomRefusal(estimateBytes, room, dirname(target), what);
    this.lastRoom = r ? { ...r, at: this.h.clock.now() } : null;
    if (r) this.h.log.error(r.text);
    else this.h.log.info(`room for a clone of ${what} (${bytes(estimateBytes)}): ${bytes(cloneNeeds(estimateBytes, room))} needed, ${bytes(room.availBytes)} free on the file system of ${dirname(target)}`);
    return r?.text ?? null;
  }

  /** [backup] clone_from = "backup": the latest backup restored into `target`; false (logged) when there is none or it failed. */
  private async restoreFromBackup(target: string, room: FsRoom, signal: AbortSignal): Promise<boolean> {
    const h = this.h;
    if (h.cfg.backup.tool !== "pgbackrest" || h.cfg.backup.clone_from !== "backup") return false;
    h.note = "cloning from the backup repository (pgbackrest restore)";
    this.noted();
    h.log.info(`${h.note} into ${target}`);
    const run = { osUser: h.node.osUser, log: h.log, timeoutMs: CLONE_TIMEOUT_MS, signal };
    try {
      const paths = await this.repo.paths(h.cfg, h.socketDir, h.log);
      // The restore is as large as the backup's database: it fits here, or neither it nor a base backup starts.
      const latest = (await this.repo.info(paths, run)).backups.at(-1);
      // The clone must bring at least what this data directory held: the node votes with the clone's position once it is in place.
      const end = latest ? backupEnd(latest) : null;
      if (latest && !restoreCovers(end, h.heldPosition)) {
        h.log.warn(`the latest backup (${latest.label}) ends at ${end ? `${end.timeline}/${end.lsn}` : "an unknown position"}, before what this node's data directory holds (${h.heldPosition!.timeline}/${h.heldPosition!.lsn}): cloning from the primary with pg_basebackup instead (a restore would lower this node's voting position below WAL it held, maybe commits it acknowledged)`);
        return false;
      }
      const refused = latest ? this.roomFor(target, room, latest.sizeBytes, `the latest backup (${latest.label})`) : null;
      if (refused) throw new NoRoomError(refused);
      const { ms } = await this.repo.restore(paths, run, target);
      h.log.info(`restored from the backup repository in ${ms} ms: replays the archive, then streams`);
      return true;
    } catch (e) {
      if (e instanceof NoRoomError) throw e;
      if (signal.aborted) throw new CopyInterrupted(`restore from the backup repository stopped: ${String(signal.reason)}`);
      h.log.warn(`restore from the backup repository failed (${(e as Error).message}): cloning from the primary with pg_basebackup instead`);
      return false;
    }
  }

  private async swapAndStart(target: string, from: string, how: string): Promise<void> {
    const h = this.h;
    h.note = "";
    // A standby's data from its first moment in place: a crash before its first start leaves a copy
    // (backup_label, its source's pg_control) that the next round must not take for a former primary.
    const u = await lookupOsUser(h.node.osUser);
    await setStandbySignal(target, true, { uid: u.uid, gid: u.gid });
    this.restoredLast = false; // the data directory is being replaced
    const old = await swapDataDir(target, h.node.dataDir);
    this.restoredLast = how === RESTORED; // in place, whether or not its first start works
    h.rewindMarker.clear(); // a fresh directory: an unfinished rewind of the one moved aside no longer matters
    h.ownTimelineMarker.clear(); // nor a start on the old directory's own timeline
    h.restoreMarker.clear(); // nor a restore from a backup under way in it
    h.creationMarker.clear(); // nor a creation of the cluster in it
    const keep = h.cfg.rejoin.keep_old;
    if (old) h.log.warn(keep > 0 ? `previous data directory kept at ${old}` : `previous data directory moved aside to ${old}: removed once the new server runs (rejoin.keep_old = 0)`);
    h.log.info(`data directory created by ${how}`);
    await this.startAsStandby(from);
    // In the background: a large copy takes a while to remove, and the rounds go on meanwhile.
    void this.pruneOldCopies(keep, { newest: old });
  }

  /** The removal passes, one after the other (two walks of one tree would trip over each other), and how many have not ended. */
  private passes: Promise<void> = Promise.resolve();
  private passesLeft = 0;

  /** The data directories swaps moved aside beyond the newest `keep` removed (basebackup.ts removeOldCopies). Never fails. */
  private pruneOldCopies(keep: number, o: { newest?: string | null; sparePrimaries?: boolean }): Promise<void> {
    const h = this.h;
    return this.removePass(() => removeOldCopies(h.node.dataDir, keep, h.log, o), `removing previous data directories (rejoin.keep_old = ${h.cfg.rejoin.keep_old})`);
  }

  /** One removal pass after those queued before it. Never fails (logged; left for the next pass). */
  private removePass(fn: () => Promise<unknown>, what: string): Promise<void> {
    this.passesLeft++;
    this.passes = this.passes.then(fn).then(() => undefined, (e: Error) => this.h.log.error(`${what}: ${e.message} (left for the next pass)`)).finally(() => this.passesLeft--);
    return this.passes;
  }

  /** Former primary (or stuck standby) → standby of `from`: pg_rewind, else a fresh clone (rewind-task.ts). */
  rewindFrom(from: string, stuck: boolean): Promise<void> {
    return this.rewinder.rewindFrom(from, stuck);
  }

  /** The data directory was replaced or rewound: what was known of the one before goes. */
  private rebuilt(): void {
    const h = this.h;
    h.catchUp = NOT_STUCK;
    h.knownTli = 0;
    h.heldPosition = null;
  }

  private async startAsStandby(from: string): Promise<void> {
    const h = this.h;
    this.rebuilt();
    await h.writeConfig(true, from);
    this.progress({ kind: "starting" });
    await h.startServer();
  }
}

/** The backup repository a clone restores from: pgBackRest (src/backup); a stand-in in tests. */
export interface CloneRepo {
  paths: typeof ensureBackrestForRestore;
  info: typeof stanzaInfo;
  restore: (...a: Parameters<typeof restoreLatest>) => Promise<{ ms: number }>;
}

export { CloneRefusedError, CopyInterrupted, NoRoomError } from "./rebuild-errors.ts";

const BACKREST_REPO: CloneRepo = { paths: ensureBackrestForRestore, info: stanzaInfo, restore: restoreLatest };
