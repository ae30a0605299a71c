// When a standby counts as stuck (core/ha.ts LocalPg.stuck: rewound, or rebuilt when its history
// agrees but the WAL it needs is gone). Pure; the round feeds it each observation with the time.
//
// Not streaming from a ready primary is not enough: a standby that restores WAL from the archive
// (restore_command) streams only once it has caught up, which after a long absence takes minutes,
// and a clone would throw that work away. So the clock runs only while the standby neither streams
// nor replays: every change of its replay position starts it again, and so does a replay that
// waits on purpose or for its queries (replayHeld). A restore_command call in progress (the startup
// process in IPC:RestoreCommand, PostgreSQL 14 and later) holds the clock too, for up to RESTORE_MS
// in one sighting: one segment fetched from a slow repository is no reason for a clone, a call that
// hangs for minutes is.

/** A standby that has neither streamed nor replayed for this long while the primary is ready is stuck. */
export const STUCK_MS = 15_000;

/** One restore_command call may hold the clock this long (seen in every observation since its start). */
export const RESTORE_MS = 5 * 60_000;

export interface CatchUp {
  /** Since when (clock ms) the standby has neither streamed nor replayed; null: it does not count. */
  since: number | null;
  /** The replay position at the last observation (null: unknown or not a standby). */
  replay: string | null;
  /** Since when the startup process has been seen running restore_command at every observation; null: not now. */
  restoringSince: number | null;
}

export interface CatchUpObs {
  /** The server runs, answers and is in recovery. */
  standby: boolean;
  streaming: boolean;
  /** The leader's server runs as a primary: there is something to stream from. */
  primaryReady: boolean;
  /** pg_last_wal_replay_lsn(); null when unknown. */
  replayLsn: string | null;
  /** The startup process's wait ("type:event", pg_stat_activity), null: none or unknown. */
  startupWait: string | null;
}

/**
 * The startup process waits with WAL to replay: paused (pg_wal_replay_pause, a recovery target's
 * pause), recovery_min_apply_delay, or a recovery conflict with the standby's queries (a snapshot,
 * a tablespace, a buffer pin or a lock; up to max_standby_archive_delay, 30 s by default). Its
 * replay stands still, but it is not short of WAL. Waiting for WAL (the retry interval, the stream,
 * restore_command: `restoring`, bounded by RESTORE_MS) is not among these.
 */
export function replayHeld(wait: string | null): boolean {
  return wait !== null && /^(IPC:RecoveryPause|Timeout:RecoveryApplyDelay|IPC:RecoveryConflict\w*|BufferPin:\w+|Lock:\w+)$/.test(wait);
}

/** The startup process runs restore_command: fetching a segment (or a history file) from the archive. */
export const restoring = (wait: string | null): boolean => wait === "IPC:RestoreCommand";

export const NOT_STUCK: CatchUp = { since: null, replay: null, restoringSince: null };

export function stepCatchUp(prev: CatchUp, o: CatchUpObs, now: number): CatchUp {
  if (!o.standby) return NOT_STUCK;
  const restoringSince = restoring(o.startupWait) ? (prev.restoringSince ?? now) : null;
  if (o.streaming || !o.primaryReady) return { since: null, replay: o.replayLsn, restoringSince };
  const fetching = restoringSince !== null && now - restoringSince <= RESTORE_MS;
  const replayed = (o.replayLsn !== null && o.replayLsn !== prev.replay) || replayHeld(o.startupWait) || fetching;
  return { since: replayed || prev.since === null ? now : prev.since, replay: o.replayLsn, restoringSince };
}

export function isStuck(c: CatchUp, now: number): boolean {
  return c.since !== null && now - c.since > STUCK_MS;
}
