// core/catch-up.ts: one test per rule of when a standby counts as stuck.
import { describe, expect, test } from "bun:test";
import { type CatchUp, type CatchUpObs, isStuck, NOT_STUCK, replayHeld, RESTORE_MS, restoring, STUCK_MS, stepCatchUp } from "../../src/core/catch-up.ts";

// A standby short of WAL: its startup process sleeps between attempts to get it.
const waiting: CatchUpObs = { standby: true, streaming: false, primaryReady: true, replayLsn: "0/3000000", startupWait: "Timeout:RecoveryRetrieveRetryInterval" };

/** Feed `obs` at times `at` (ms), starting from no history. */
function run(steps: [number, CatchUpObs][]): CatchUp {
  return steps.reduce((c, [now, o]) => stepCatchUp(c, o, now), NOT_STUCK);
}

describe("a standby is stuck", () => {
  test("when it neither streams nor replays for longer than STUCK_MS while the primary is ready", () => {
    const c = run([[0, waiting], [5_000, waiting], [STUCK_MS, waiting]]);
    expect(c.since).toBe(0);
    expect(isStuck(c, STUCK_MS)).toBe(false);
    expect(isStuck(c, STUCK_MS + 1)).toBe(true);
  });

  test("not while its replay moves: a standby restoring from the archive is catching up", () => {
    let c = NOT_STUCK;
    for (let t = 0, seg = 3; t <= 120_000; t += 500, seg++) c = stepCatchUp(c, { ...waiting, replayLsn: `0/${seg.toString(16)}000000` }, t);
    expect(isStuck(c, 120_000)).toBe(false);
    // Once the archive has nothing more, the clock runs from the last move.
    c = stepCatchUp(c, { ...waiting, replayLsn: c.replay }, 125_000);
    expect(c.since).toBe(120_000);
    expect(isStuck(c, 120_000 + STUCK_MS + 1)).toBe(true);
  });

  test("not while it streams, and streaming starts the clock again", () => {
    const c = run([[0, waiting], [14_000, { ...waiting, streaming: true }], [16_000, waiting]]);
    expect(c.since).toBe(16_000);
    expect(isStuck(c, 16_000 + STUCK_MS)).toBe(false);
  });

  test("not while there is no primary to stream from", () => {
    const c = run([[0, waiting], [10_000, { ...waiting, primaryReady: false }], [20_000, waiting]]);
    expect(c.since).toBe(20_000);
    expect(isStuck(c, 30_000)).toBe(false);
  });

  test("never a server that is not a running standby (stopped, starting, a primary)", () => {
    const c = run([[0, waiting], [10_000, { ...waiting, standby: false, replayLsn: null }]]);
    expect(c).toEqual(NOT_STUCK);
    expect(isStuck(c, 1e9)).toBe(false);
  });

  test("not while its replay waits on purpose or for its queries (paused, apply delay, a recovery conflict)", () => {
    for (const held of ["IPC:RecoveryPause", "Timeout:RecoveryApplyDelay", "IPC:RecoveryConflictSnapshot", "IPC:RecoveryConflictTablespace", "BufferPin:BufferPin", "Lock:relation"]) {
      expect(replayHeld(held)).toBe(true);
      const c = run([[0, waiting], [10_000, { ...waiting, startupWait: held }], [20_000, waiting]]);
      expect(c.since).toBe(10_000);
      expect(isStuck(c, 20_000)).toBe(false);
    }
  });

  test("waiting for WAL is no progress: the retry interval, the stream, reading WAL", () => {
    for (const wait of ["Timeout:RecoveryRetrieveRetryInterval", "Activity:RecoveryWalStream", "IO:WALRead", null]) {
      expect(replayHeld(wait)).toBe(false);
      expect(restoring(wait)).toBe(false);
      const c = run([[0, waiting], [10_000, { ...waiting, startupWait: wait }], [STUCK_MS + 1, waiting]]);
      expect(isStuck(c, STUCK_MS + 1)).toBe(true);
    }
  });

  test("an unknown replay position is no progress", () => {
    const c = run([[0, { ...waiting, replayLsn: null }], [10_000, { ...waiting, replayLsn: null }]]);
    expect(c.since).toBe(0);
    expect(isStuck(c, STUCK_MS + 1)).toBe(true);
  });

  test("not while one restore_command call runs, for up to RESTORE_MS: a slow archive is no reason for a clone", () => {
    const fetch: CatchUpObs = { ...waiting, startupWait: "IPC:RestoreCommand" };
    expect(restoring(fetch.startupWait)).toBe(true);
    expect(replayHeld(fetch.startupWait)).toBe(false);
    let c = NOT_STUCK;
    for (let t = 0; t <= RESTORE_MS; t += 500) c = stepCatchUp(c, fetch, t);
    expect(c.restoringSince).toBe(0);
    expect(c.since).toBe(RESTORE_MS);
    expect(isStuck(c, RESTORE_MS + STUCK_MS)).toBe(false);
    // The call's end counts as nothing either: the clock runs from the last sighting within the bound.
    const done = stepCatchUp(c, waiting, RESTORE_MS + 500);
    expect(done.restoringSince).toBeNull();
    expect(isStuck(done, RESTORE_MS + STUCK_MS + 1)).toBe(true);
  });

  test("a restore_command call that hangs past RESTORE_MS no longer holds the clock", () => {
    const fetch: CatchUpObs = { ...waiting, startupWait: "IPC:RestoreCommand" };
    let c = NOT_STUCK;
    for (let t = 0; t <= RESTORE_MS + STUCK_MS + 1_000; t += 500) c = stepCatchUp(c, fetch, t);
    expect(c.restoringSince).toBe(0);
    expect(c.since).toBe(RESTORE_MS);
    expect(isStuck(c, RESTORE_MS + STUCK_MS)).toBe(false);
    expect(isStuck(c, RESTORE_MS + STUCK_MS + 1)).toBe(true);
  });

  test("a call's bound counts from the sighting after any other wait: each call gets its own", () => {
    const fetch: CatchUpObs = { ...waiting, startupWait: "IPC:RestoreCommand" };
    const c = run([[0, fetch], [RESTORE_MS - 1_000, fetch], [RESTORE_MS - 500, waiting], [RESTORE_MS, fetch], [2 * RESTORE_MS - 500, fetch]]);
    expect(c.restoringSince).toBe(RESTORE_MS);
    expect(c.since).toBe(2 * RESTORE_MS - 500);
    // Streaming, a missing primary or a stop end the sighting as well.
    expect(stepCatchUp(c, { ...fetch, startupWait: "Activity:RecoveryWalStream", streaming: true }, 2 * RESTORE_MS).restoringSince).toBeNull();
    expect(stepCatchUp(c, { ...fetch, standby: false }, 2 * RESTORE_MS)).toEqual(NOT_STUCK);
  });
});
