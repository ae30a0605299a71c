// Bootstrap from a backup ([bootstrap] from_backup): the first node restores the latest backup of
// the repository, replays the archive to the end or to a target time/LSN (point-in-time recovery),
// and is promoted by PostgreSQL when it gets there; the other nodes then clone from it as usual.
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { cloneDirFor, swapDataDir, swapProblem } from "../postgres/basebackup.ts";
import { SafeDir } from "../postgres/fsutil.ts";
import { stripKeys } from "../postgres/managed-config.ts";
import { probe } from "../postgres/probe.ts";
import type { Db } from "../postgres/sql.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { restoreLatest } from "./backups.ts";
import { ensureBackrestForRestore } from "./wal-settings.ts";

export interface BootstrapHost {
  readonly cfg: Config;
  readonly socketDir: string;
  readonly node: { dataDir: string; osUser: string };
  readonly log: Logger;
  localDb(): Db;
  writeConfig(standby: boolean): Promise<string[]>;
  startServer(timeoutSec?: number): Promise<void>;
  sleep(ms: number): Promise<void>;
}

/** Settings pgBackRest's restore writes into postgresql.auto.conf that must not outlive this recovery. */
const RECOVERY_KEYS = ["restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn", "recovery_target_xid", "recovery_target_name", "recovery_target_action", "recovery_target_inclusive", "recovery_target_timeline"];

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
  const what = b.target_time ? `to ${b.target_time}` : b.target_lsn ? `to LSN ${b.target_lsn}` : "to the end of the archive";
  h.log.info(`creating the cluster from the latest backup in ${h.cfg.backup.repo_path} (stanza ${p.stanza}), recovering ${what}`);
  const { ms } = await restoreLatest(p, { osUser: h.node.osUser, log: h.log, timeoutMs: 24 * 3600_000 }, target, {
    standby: false, ...(b.target_time ? { targetTime: b.target_time } : {}), ...(b.target_lsn ? { targetLsn: b.target_lsn } : {}),
  });
  await swapDataDir(target, h.node.dataDir);
  h.log.info(`backup restored in ${ms} ms: replaying the archive`);
  await h.writeConfig(false);
  await h.startServer();
  const end = Date.now() + h.cfg.postgres.start_timeout_s * 1000 * 10;
  for (;;) {
    const s = await probe(h.localDb());
    if (s.up && !s.inRecovery) break;
    if (Date.now() > end) throw new Error(`recovery from the backup did not end within ${h.cfg.postgres.start_timeout_s * 10} s`);
    await h.sleep(200);
  }
  await clearRecoveryTargets(h);
  h.log.info(`recovery ${what} complete: promoted`);
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
