// Bootstrap from a backup ([bootstrap] from_backup): the first node restores the latest backup of
// the repository, replays the archive to the end or to a target time/LSN (point-in-time recovery),
// and is promoted by PostgreSQL when it gets there; the other nodes then clone from it as usual.
// Until PostgreSQL ended the recovery at its target, a marker in the state directory says so
// (store/restore-marker.ts): nothing else promotes this server or drops its target (core/ha.ts).
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { cloneDirFor, swapDataDir, swapProblem } from "../postgres/basebackup.ts";
import { PgCtlError, serverLogMark, serverLogSince, type PgNode, type ServerLogMark } from "../postgres/ctl.ts";
import { readPostmasterPid } from "../postgres/datadir.ts";
import { SafeDir } from "../postgres/fsutil.ts";
import { stripKeys } from "../postgres/managed-config.ts";
import { probe } from "../postgres/probe.ts";
import type { Db } from "../postgres/sql.ts";
import { failedStartCause, lastFatal } from "../postgres/start-failure.ts";
import { lookupOsUser } from "../postgres/users.ts";
import type { RestoreMarker } from "../store/restore-marker.ts";
import { restoreLatest } from "./backups.ts";
import { ensureBackrestForRestore } from "./wal-settings.ts";

export interface BootstrapHost {
  readonly cfg: Config;
  readonly socketDir: string;
  readonly node: PgNode;
  readonly log: Logger;
  /** The restore under way in this data directory (store/restore-marker.ts). */
  readonly marker: RestoreMarker;
  /** pg_ctl's -l file and the log collector's directory: where a recovery that ends short of its target says so. */
  readonly serverLog: { file: string; collectorDir?: string };
  localDb(): Db;
  writeConfig(standby: boolean): Promise<string[]>;
  startServer(timeoutSec?: number): Promise<void>;
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** Settings pgBackRest's restore writes into postgresql.auto.conf that must not outlive this recovery. */
const RECOVERY_KEYS = ["restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn", "recovery_target_xid", "recovery_target_name", "recovery_target_action", "recovery_target_inclusive", "recovery_target_timeline"];

/** PostgreSQL (14+) ends a recovery whose WAL ran out before its target with this FATAL, instead of promoting. */
const TARGET_NOT_REACHED = /recovery ended before configured recovery target was reached/;

/** How often the wait logs how far the replay got. */
const PROGRESS_LOG_MS = 60_000;

/** What a restore recovers to, as the log, the marker and the status say it. */
export function restoreTarget(b: Config["bootstrap"]): string {
  return b.target_time ? `to ${b.target_time}` : b.target_lsn ? `to LSN ${b.target_lsn}` : "to the end of the archive";
}

/** Restore, start, wait until PostgreSQL promoted itself at the end of recovery; the server is then a primary. */
export async function bootstrapFromBackup(h: BootstrapHost): Promise<void> {
  // The restore is made beside the data directory and renamed into its place, as a clone is: a link
  // or a mount point there fails the rename only after a whole restore, onto the parent's file
  // system, and the next try restored again (review).
  const swap = await swapProblem(h.node.dataDir);
  if (swap) throw new Error(`${swap}: not restoring the backup`);
  const b = h.cfg.bootstrap;
  const p = await ensureBackrestForRestore(h.cfg, h.socketDir, h.log);
  const target = cloneDirFor(h.node.dataDir);
  const what = restoreTarget(b);
  h.log.info(`creating the cluster from the latest backup in ${h.cfg.backup.repo_path} (stanza ${p.stanza}), recovering ${what}`);
  const { ms } = await restoreLatest(p, { osUser: h.node.osUser, log: h.log, timeoutMs: 24 * 3600_000 }, target, {
    standby: false, ...(b.target_time ? { targetTime: b.target_time } : {}), ...(b.target_lsn ? { targetLsn: b.target_lsn } : {}),
  });
  // fsync'd before the directory is in place: from then on only its own recovery ends it.
  h.marker.set(what);
  await swapDataDir(target, h.node.dataDir);
  h.log.info(`backup restored in ${ms} ms: replaying the archive`);
  await recoverToTarget(h, what);
}

/**
 * A restore whose recovery has not ended (store/restore-marker.ts), found by a later round (the agent
 * or the host restarted, or the wait below gave up): the stopped server is started again with the
 * target its files hold, then waited for as after the restore. `what`: the marker's target.
 */
export async function resumeRestore(h: BootstrapHost, what: string): Promise<void> {
  h.log.info(`going on with the restore from the backup, recovering ${what}`);
  await recoverToTarget(h, what);
}

async function recoverToTarget(h: BootstrapHost, what: string): Promise<void> {
  const pm = await readPostmasterPid(h.node.dataDir);
  const mark = await serverLogMark(h.serverLog.file, h.serverLog.collectorDir);
  if (!(pm?.alive && pm.servesThisDir !== false)) {
    // A primary's files: no standby.signal, and the target stays in postgresql.auto.conf (host.ts).
    await h.writeConfig(false);
    try {
      await h.startServer();
    } catch (e) {
      // pg_ctl -w gives up before a long replay reaches a consistent state: the server goes on.
      if (!(e instanceof PgCtlError) || e.kind !== "start-timeout") {
        if (e instanceof PgCtlError && TARGET_NOT_REACHED.test(e.detail)) notReached(h, what, failedStartCause(e));
        throw e;
      }
      h.log.warn(`recovery ${what}: ${e.message}; waiting for it`);
    }
  }
  await waitForPromotion(h, what, mark);
  await clearRecoveryTargets(h);
  h.log.info(`recovery ${what} complete: promoted`);
}

/**
 * Until PostgreSQL ended the recovery with its promotion, for as long as the replay advances. It
 * stops, not promoted, when the replay stood still for start_timeout_s × 10 (1,200 s by default)
 * while the server answers, when the replay is paused, or when the server stopped (a recovery that
 * ran out of WAL before its target is marked failed: never started again). Before a consistent
 * state the server does not answer and its replay cannot be read: waited for while it runs.
 */
async function waitForPromotion(h: BootstrapHost, what: string, mark: ServerLogMark): Promise<void> {
  const stallMs = h.cfg.postgres.start_timeout_s * 10 * 1000;
  let lsn: string | null = null;
  let since = h.now();
  let said = h.now();
  for (;;) {
    const s = await probe(h.localDb());
    if (s.up && !s.inRecovery) return;
    if (s.up) {
      if (s.startupWait === "IPC:RecoveryPause") {
        throw new Error(`recovery ${what}: replay is paused at ${s.replayLsn} (at its target with recovery_target_action = 'pause', or by pg_wal_replay_pause()): not promoted; SELECT pg_wal_replay_resume() lets the recovery go on and end at its target`);
      }
      if (s.replayLsn !== lsn) {
        lsn = s.replayLsn;
        since = h.now();
      } else if (h.now() - since >= stallMs) {
        throw new Error(`recovery ${what}: the replay has stood at ${lsn} for ${Math.round(stallMs / 1000)} s (restore_command cannot fetch the next WAL? see the server log in ${h.serverLog.collectorDir ?? h.serverLog.file}): not promoted; the next round waits for it again`);
      }
      if (h.now() - said >= PROGRESS_LOG_MS) {
        h.log.info(`recovery ${what}: replayed up to ${lsn}`);
        said = h.now();
      }
    } else {
      const pm = await readPostmasterPid(h.node.dataDir);
      if (!(pm?.alive && pm.servesThisDir !== false)) {
        const log = await serverLogSince(h.node, mark);
        if (TARGET_NOT_REACHED.test(log)) notReached(h, what, lastFatal(log) ?? "FATAL: recovery ended before configured recovery target was reached");
        throw new Error(`recovery ${what}: PostgreSQL stopped before it reached its target (${lastFatal(log) ?? `see the server log ${h.serverLog.file}`}): not promoted; the next round starts it again with its target`);
      }
    }
    await h.sleep(200);
  }
}

/** The recovery ran out of WAL before its target: recorded (never started again, core/ha.ts), and thrown. */
function notReached(h: BootstrapHost, what: string, fatal: string): never {
  const why = `PostgreSQL ended the recovery before its target (${fatal}): the archive's WAL ends before the target`;
  h.marker.fail(what, why);
  throw new Error(`recovery ${what}: ${why}; not promoted, and not started again (a start without the target would replay past it)`);
}

/** A recovery target left in auto.conf would stop this server's replay again whenever it is a standby later. */
async function clearRecoveryTargets(h: BootstrapHost): Promise<void> {
  const u = await lookupOsUser(h.node.osUser);
  const owner = { uid: u.uid, gid: u.gid };
  const dir = await SafeDir.open(h.node.dataDir, { osUser: owner });
  try {
    const auto = (await dir.readText("postgresql.auto.conf")) ?? "";
    const clean = stripKeys(auto, RECOVERY_KEYS);
    if (clean.removed.length) await dir.writeAtomic("postgresql.auto.conf", clean.text, { mode: 0o600, owner });
  } finally {
    await dir.close();
  }
}
