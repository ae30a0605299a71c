// When the primary takes a scheduled backup ([backup] full_every_hours / incr_every_hours). Pure:
// time and the repository's last backups are passed in. The schedule lives in the repository, not
// in an agent's memory: a new primary after a failover or switchover continues it, and a backup
// the old primary finished is not taken again.
import type { BackupType } from "./backups.ts";

export interface ScheduleInput {
  /** Wall-clock ms (pgBackRest's backup timestamps are wall-clock seconds). */
  now: number;
  fullEveryMs: number;
  incrEveryMs: number;
  /** When the newest full backup / the newest backup of any type stopped (ms; 0 = none). */
  lastFullMs: number;
  lastAnyMs: number;
}

/** The backup due now, or null. A full one when there is none yet; incremental ones on top of it. */
export function dueBackup(i: ScheduleInput): BackupType | null {
  if (i.fullEveryMs > 0 && i.now - i.lastFullMs >= i.fullEveryMs) return "full";
  if (i.incrEveryMs > 0 && i.now - i.lastAnyMs >= i.incrEveryMs) return i.lastFullMs > 0 ? "incr" : "full";
  return null;
}

/** The newest stop time (ms) of the full backups and of all backups, from `pgbackrest info`. */
export function lastBackups(backups: readonly { type: BackupType; stop: number }[]): { lastFullMs: number; lastAnyMs: number } {
  return {
    lastFullMs: Math.max(0, ...backups.filter((b) => b.type === "full").map((b) => b.stop * 1000)),
    lastAnyMs: Math.max(0, ...backups.map((b) => b.stop * 1000)),
  };
}
