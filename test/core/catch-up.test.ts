// core/catch-up.ts: one test per rule of when a standby counts as stuck.
import { describe, expect, test } from "bun:test";
import { type CatchUp, type CatchUpObs, isStuck, NOT_STUCK, replayHeld, STUCK_MS, stepCatchUp } from "../../src/core/catch-up.ts";

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

  test("waiting for WAL is no progress: the retry interval, the stream, restore_command", () => {
    for (const wait of ["Timeout:RecoveryRetrieveRetryInterval", "Activity:RecoveryWalStream", "IPC:RestoreCommand", "IO:WALRead", null]) {
      expect(replayHeld(wait)).toBe(false);
      const c = run([[0, waiting], [10_000, { ...waiting, startupWait: wait }], [STUCK_MS + 1, waiting]]);
      expect(isStuck(c, STUCK_MS + 1)).toBe(true);
    }
  });

  test("an unknown replay position is no progress", () => {
    const c = run([[0, { ...waiting, replayLsn: null }], [10_000, { ...waiting, replayLsn: null }]]);
    expect(c.since).toBe(0);
    expect(isStuck(c, STUCK_MS + 1)).toBe(true);
  });
});
