// Room for a clone (pg_basebackup or a restore of the latest backup) on the file system of the data
// directory it will replace. Pure; the rebuild measures the file system and the source's size.
//
// A clone that does not fit fails with ENOSPC only after it has filled the file system, which may
// also hold this agent's state (its fsync'd votes), the server's logs and other services' files,
// and a failed clone is retried: without this check every attempt fills the disk again. The source's
// size is first this node's own data directory (a standby's or former primary's copy of the same
// database, measured before anything is written), then pg_basebackup's own estimate (its first
// progress line, about a second into the copy, when its WAL stream has made its first 16 MB
// segment) or, for a restore, the backup's database size in the repository's info.

import { bytes, type FsRoom, LIVENESS_DEFAULTS, type LivenessThresholds } from "./liveness.ts";

export type { FsRoom };

/** WAL written on the primary while the copy runs also arrives in the clone (pg_basebackup -X stream): an allowance, not a bound (a busy primary can write more during a long copy). */
export const WAL_SLACK_SHARE = 0.05;
export const WAL_SLACK_MIN_BYTES = 64 * 1024 * 1024;

/** After a refusal, an attempt within this long refuses again from the known need while the room is still short, without asking the source. */
export const ROOM_RECHECK_MS = 10 * 60_000;

/**
 * Bytes a clone of `estimateBytes` needs free: the copy, the WAL streamed meanwhile (5 %, at least
 * 64 MiB), and what must stay free once it is in place, the amount below which the liveness check
 * calls the file system full (core/liveness.ts): a clone that leaves less would start a server that
 * is judged full at once.
 */
export function cloneNeeds(estimateBytes: number, fs: FsRoom, t: LivenessThresholds = LIVENESS_DEFAULTS): number {
  const slack = Math.max(WAL_SLACK_MIN_BYTES, Math.ceil(estimateBytes * WAL_SLACK_SHARE));
  const reserve = Math.ceil(Math.min(t.fullBytes, t.fullRatio * fs.sizeBytes));
  return estimateBytes + slack + reserve;
}

export interface RoomRefusal {
  needBytes: number;
  /** One line for the log, the rebuild's error and `cluster ls`. */
  text: string;
}

/** Why a clone of `estimateBytes` from `what` may not start on the file system of `path`; null: it fits. */
export function roomRefusal(estimateBytes: number, fs: FsRoom, path: string, what: string, t: LivenessThresholds = LIVENESS_DEFAULTS): RoomRefusal | null {
  const needBytes = cloneNeeds(estimateBytes, fs, t);
  if (fs.availBytes >= needBytes) return null;
  return {
    needBytes,
    text: `no room for a clone of ${what} (${bytes(estimateBytes)}): it needs ${bytes(needBytes)} free on the file system of ${path} ` +
      `(the copy, WAL streamed meanwhile, and what must stay free), which has ${bytes(fs.availBytes)} of ${bytes(fs.sizeBytes)}; ` +
      `the clone is not made: free space there (rejoin.keep_old sets how many previous data directories stay)`,
  };
}

export interface LastRefusal {
  needBytes: number;
  /** Clock ms of the refusal. */
  at: number;
  text: string;
}

/**
 * The last refusal still holds: it is recent and the room has not grown to its need. The next
 * attempt then refuses without asking the source again (a base backup starts with a checkpoint on
 * the primary, and a restore reads the repository); every ROOM_RECHECK_MS it asks again, the source
 * may have shrunk.
 */
export function stillShort(last: LastRefusal | null, fs: FsRoom, now: number): boolean {
  return last !== null && now - last.at < ROOM_RECHECK_MS && fs.availBytes < last.needBytes;
}
