// core/catch-up.ts: one test per rule of when a standby counts as stuck.
import { describe, expect, test } from "bun:test";
import { type CatchUp, type CatchUpObs, isStuck, NOT_STUCK, replayHeld, RESTORE_MS, restoring, STUCK_MS, stepCatchUp } from "../../src/core/catch-up.ts";

// A standby short of WAL: its startup process sleeps between attempts to get it.
const waiting: CatchUpObs = { standby: true, streaming: false, primaryReady: true, replayLsn: "0/3000000", startupWait: "Timeout:RecoveryRetrieveRetryInterval" };
const fetch: CatchUpObs = { ...waiting, startupWait: "IPC:RestoreCommand" };

/** Feed `obs` at times `at` (ms), starting from no history. */
function run(steps: [number, CatchUpObs][], from: CatchUp = NOT_STUCK): CatchUp {
  return steps.reduce((c, [now, o]) => stepCatchUp(c, o, now), from);
}

/** The same observation every 500 ms over [from, to]. */
function every500(from: number, to: number, o: CatchUpObs, c: CatchUp = NOT_STUCK): CatchUp {
  for (let t = from; t <= to; t += 500) c = stepCatchUp(c, o, t);
  return c;
}

describe("a standby is stuck", () => {
  test("when it neither streams nor replays for longer than STUCK_MS while the primary is ready", () => {
    const c = run([[0, waiting], [5_000, waiting], [STUCK_MS, waiting]]);
    expect(c.idleMs).toBe(STUCK_MS);
    expect(isStuck(c)).toBe(false);
    expect(isStuck(stepCatchUp(c, waiting, STUCK_MS + 1))).toBe(true);
  });

  test("not while its replay moves: a standby restoring from the archive is catching up", () => {
    let c = NOT_STUCK;
    for (let t = 0, seg = 3; t <= 120_000; t += 500, seg++) c = stepCatchUp(c, { ...waiting, replayLsn: `0/${seg.toString(16)}000000` }, t);
    expect(isStuck(c)).toBe(false);
    // Once the archive has nothing more, the count runs from the last move.
    c = stepCatchUp(c, { ...waiting, replayLsn: c.replay }, 125_000);
    expect(c.idleMs).toBe(5_000);
    expect(isStuck(stepCatchUp(c, { ...waiting, replayLsn: c.replay }, 120_000 + STUCK_MS + 1))).toBe(true);
  });

  test("not while it streams, and streaming starts the count again", () => {
    const c = run([[0, waiting], [14_000, { ...waiting, streaming: true }], [16_000, waiting]]);
    expect(c.idleMs).toBe(0);
    expect(isStuck(stepCatchUp(c, waiting, 16_000 + STUCK_MS))).toBe(false);
  });

  test("not while there is no primary to stream from", () => {
    const c = run([[0, waiting], [10_000, { ...waiting, primaryReady: false }], [20_000, waiting], [30_000, waiting]]);
    expect(c.idleMs).toBe(10_000);
    expect(isStuck(c)).toBe(false);
  });

  test("never a server that is not a running standby (stopped, starting, a primary)", () => {
    const c = run([[0, waiting], [10_000, { ...waiting, standby: false, replayLsn: null }]]);
    expect(c).toEqual(NOT_STUCK);
    expect(isStuck(c)).toBe(false);
  });

  test("not while its replay waits on purpose or for its queries (paused, apply delay, a recovery conflict)", () => {
    for (const held of ["IPC:RecoveryPause", "Timeout:RecoveryApplyDelay", "IPC:RecoveryConflictSnapshot", "IPC:RecoveryConflictTablespace", "BufferPin:BufferPin", "Lock:relation"]) {
      expect(replayHeld(held)).toBe(true);
      const c = run([[0, waiting], [10_000, { ...waiting, startupWait: held }], [20_000, waiting]]);
      expect(c.idleMs).toBe(10_000);
      expect(isStuck(c)).toBe(false);
    }
  });

  test("waiting for WAL is no progress: the retry interval, the stream, reading WAL", () => {
    for (const wait of ["Timeout:RecoveryRetrieveRetryInterval", "Activity:RecoveryWalStream", "IO:WALRead", null]) {
      expect(replayHeld(wait)).toBe(false);
      expect(restoring(wait)).toBe(false);
      const c = run([[0, waiting], [10_000, { ...waiting, startupWait: wait }], [STUCK_MS + 1, waiting]]);
      expect(isStuck(c)).toBe(true);
    }
  });

  test("an unknown replay position is no progress", () => {
    const c = run([[0, { ...waiting, replayLsn: null }], [10_000, { ...waiting, replayLsn: null }], [STUCK_MS + 1, { ...waiting, replayLsn: null }]]);
    expect(isStuck(c)).toBe(true);
  });

  test("not while one restore_command call runs, for up to RESTORE_MS: a slow archive is no reason for a clone", () => {
    expect(restoring(fetch.startupWait)).toBe(true);
    expect(replayHeld(fetch.startupWait)).toBe(false);
    const c = every500(0, RESTORE_MS, fetch);
    expect(c.restoringSince).toBe(0);
    expect(c.idleMs).toBe(0);
    // The time after the call counts again.
    const after = every500(RESTORE_MS + 500, RESTORE_MS + STUCK_MS + 500, waiting, c);
    expect(after.restoringSince).toBeNull();
    expect(isStuck(after)).toBe(true);
  });

  test("a restore_command call that hangs past RESTORE_MS counts from then on", () => {
    const c = every500(0, RESTORE_MS + STUCK_MS, fetch);
    expect(c.restoringSince).toBe(0);
    expect(isStuck(c)).toBe(false);
    expect(isStuck(stepCatchUp(c, fetch, RESTORE_MS + STUCK_MS + 500))).toBe(true);
  });

  test("an archive that keeps failing (a call, then the retry interval) is stuck once the gaps between calls add up to STUCK_MS", () => {
    // Each cycle: a 2 s call seen at every observation, then 5 s of wal_retrieve_retry_interval.
    let c = NOT_STUCK;
    let stuckAt: number | null = null;
    for (let t = 0; t <= 60_000 && stuckAt === null; t += 500) {
      c = stepCatchUp(c, t % 7_000 < 2_000 ? fetch : waiting, t);
      if (isStuck(c)) stuckAt = t;
    }
    // About STUCK_MS / 5 s cycles of 7 s: ~21 s, where counting from the last call would never end.
    expect(stuckAt).not.toBeNull();
    expect(stuckAt!).toBeGreaterThan(STUCK_MS);
    expect(stuckAt!).toBeLessThanOrEqual(STUCK_MS * 7 / 5 + 2_000);
  });

  test("each call has its own bound: a call after a gap is left out again, up to RESTORE_MS", () => {
    const c = run([[0, fetch], [RESTORE_MS - 1_000, fetch], [RESTORE_MS - 500, waiting], [RESTORE_MS, fetch], [2 * RESTORE_MS - 500, fetch]]);
    expect(c.restoringSince).toBe(RESTORE_MS);
    expect(c.idleMs).toBe(500);
    // Streaming, a missing primary or a stop end the sighting as well.
    expect(stepCatchUp(c, { ...fetch, startupWait: "Activity:RecoveryWalStream", streaming: true }, 2 * RESTORE_MS).restoringSince).toBeNull();
    expect(stepCatchUp(c, { ...fetch, standby: false }, 2 * RESTORE_MS)).toEqual(NOT_STUCK);
  });
});
