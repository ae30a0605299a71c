// When a standby counts as stuck (core/ha.ts LocalPg.stuck: rewound, or rebuilt when its history
// agrees but the WAL it needs is gone). Pure; the round feeds it each observation with the time.
//
// Not streaming from a ready primary is not enough: a standby that restores WAL from the archive
// (restore_command) streams only once it has caught up, which after a long absence takes minutes,
// and a clone would throw that work away. So what counts is the time it spends neither streaming
// nor replaying: every change of its replay position starts the count again, and so does a replay
// that waits on purpose or for its queries (replayHeld). Time inside a restore_command call (the
// startup process in IPC:RestoreCommand, PostgreSQL 15 and later) does not count, up to RESTORE_MS
// of one call: a segment fetched slowly from a remote repository is no reason for a clone, a call
// that hangs for minutes is. The time between calls does count: a standby whose archive keeps
// failing (each call, then a stream attempt, then wal_retrieve_retry_interval) is stuck once those
// gaps add up to STUCK_MS.

/** A standby that has neither streamed nor replayed for this long (restore_command calls left out) while the primary is ready is stuck. */
export const STUCK_MS = 15_000;

/** Time inside one restore_command call (seen at every observation since its start) left out of the count up to this long. */
export const RESTORE_MS = 5 * 60_000;

export interface CatchUp {
  /**
   * Time (ms, as of the last observation) the standby has spent neither streaming nor replaying,
   * restore_command calls within their bound left out; null: it does not count (not a running
   * standby, streaming, or no primary to stream from).
   */
  idleMs: number | null;
  /** The clock (ms) at the last observation; null: none yet. */
  at: number | null;
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

export const NOT_STUCK: CatchUp = { idleMs: null, at: null, replay: null, restoringSince: null };

export function stepCatchUp(prev: CatchUp, o: CatchUpObs, now: number): CatchUp {
  if (!o.standby) return NOT_STUCK;
  const restoringSince = restoring(o.startupWait) ? (prev.restoringSince ?? now) : null;
  const next = { at: now, replay: o.replayLsn, restoringSince };
  if (o.streaming || !o.primaryReady) return { ...next, idleMs: null };
  const replayed = (o.replayLsn !== null && o.replayLsn !== prev.replay) || replayHeld(o.startupWait);
  if (replayed || prev.idleMs === null || prev.at === null) return { ...next, idleMs: 0 };
  // The time since the last observation counts unless this one finds a call within its bound.
  const fetching = restoringSince !== null && now - restoringSince <= RESTORE_MS;
  return { ...next, idleMs: prev.idleMs + (fetching ? 0 : Math.max(0, now - prev.at)) };
}

/** Stuck as of the last observation: neither streamed nor replayed for longer than STUCK_MS, restore_command calls within their bound left out. */
export function isStuck(c: CatchUp): boolean {
  return c.idleMs !== null && c.idleMs > STUCK_MS;
}
