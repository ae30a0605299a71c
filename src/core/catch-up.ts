// When a standby counts as stuck (core/ha.ts LocalPg.stuck: rewound, or rebuilt when its history
// agrees but the WAL it needs is gone). Pure; the round feeds it each observation with the time.
//
// Not streaming from a ready primary is not enough: a standby that restores WAL from the archive
// (restore_command) streams only once it has caught up, which after a long absence takes minutes,
// and a clone would throw that work away. So the clock runs only while the standby neither streams
// nor replays: every change of its replay position starts it again, and so does a replay that
// waits on purpose or for its queries (replayHeld). A single restore_command call that outlasts
// STUCK_MS is not told apart from a standby that cannot get its WAL.

/** A standby that has neither streamed nor replayed for this long while the primary is ready is stuck. */
export const STUCK_MS = 15_000;

export interface CatchUp {
  /** Since when (clock ms) the standby has neither streamed nor replayed; null: it does not count. */
  since: number | null;
  /** The replay position at the last observation (null: unknown or not a standby). */
  replay: string | null;
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
 * restore_command) is not among these.
 */
export function replayHeld(wait: string | null): boolean {
  return wait !== null && /^(IPC:RecoveryPause|Timeout:RecoveryApplyDelay|IPC:RecoveryConflict\w*|BufferPin:\w+|Lock:\w+)$/.test(wait);
}

export const NOT_STUCK: CatchUp = { since: null, replay: null };

export function stepCatchUp(prev: CatchUp, o: CatchUpObs, now: number): CatchUp {
  if (!o.standby) return NOT_STUCK;
  if (o.streaming || !o.primaryReady) return { since: null, replay: o.replayLsn };
  const replayed = (o.replayLsn !== null && o.replayLsn !== prev.replay) || replayHeld(o.startupWait);
  return { since: replayed || prev.since === null ? now : prev.since, replay: o.replayLsn };
}

export function isStuck(c: CatchUp, now: number): boolean {
  return c.since !== null && now - c.since > STUCK_MS;
}
