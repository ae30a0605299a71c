// When a standby counts as stuck (core/ha.ts LocalPg.stuck: rewound, or rebuilt when its history
// agrees but the WAL it needs is gone). Pure; the round feeds it each observation with the time.
//
// Not streaming from a ready primary is not enough: a standby that restores WAL from the archive
// (restore_command) streams only once it has caught up, which after a long absence takes minutes,
// and a clone would throw that work away. So the clock runs only while the standby neither streams
// nor replays: every change of its replay position starts it again.

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
}

export const NOT_STUCK: CatchUp = { since: null, replay: null };

export function stepCatchUp(prev: CatchUp, o: CatchUpObs, now: number): CatchUp {
  if (!o.standby) return NOT_STUCK;
  if (o.streaming || !o.primaryReady) return { since: null, replay: o.replayLsn };
  const replayed = o.replayLsn !== null && o.replayLsn !== prev.replay;
  return { since: replayed || prev.since === null ? now : prev.since, replay: o.replayLsn };
}

export function isStuck(c: CatchUp, now: number): boolean {
  return c.since !== null && now - c.since > STUCK_MS;
}
