// core/clone-room.ts: one test per rule of when a clone has room to start.
import { describe, expect, test } from "bun:test";
import { cloneNeeds, type LastRefusal, ROOM_RECHECK_MS, roomRefusal, stillShort, WAL_SLACK_MIN_BYTES } from "../../src/core/clone-room.ts";
import { LIVENESS_DEFAULTS } from "../../src/core/liveness.ts";

const MB = 1024 * 1024;
const GB = 1024 * MB;

describe("room for a clone", () => {
  test("it needs the copy, 5 % (at least 64 MiB) for the WAL streamed meanwhile, and the liveness check's full threshold", () => {
    const big = { sizeBytes: 1000 * GB, availBytes: 0 };
    expect(cloneNeeds(100 * GB, big)).toBe(100 * GB + 5 * GB + LIVENESS_DEFAULTS.fullBytes);
    expect(cloneNeeds(100 * MB, big)).toBe(100 * MB + WAL_SLACK_MIN_BYTES + LIVENESS_DEFAULTS.fullBytes);
    // On a small file system the threshold is its 2 %, the smaller of the two.
    const small = { sizeBytes: 500 * MB, availBytes: 0 };
    expect(cloneNeeds(100 * MB, small)).toBe(100 * MB + WAL_SLACK_MIN_BYTES + Math.ceil(0.02 * 500 * MB));
  });

  test("a clone that fits starts; one that does not is refused with the sizes and the place named", () => {
    const need = cloneNeeds(10 * GB, { sizeBytes: 100 * GB, availBytes: 0 });
    expect(roomRefusal(10 * GB, { sizeBytes: 100 * GB, availBytes: need }, "/var/lib/postgresql/16", "the primary at 10.0.0.1:5432")).toBeNull();
    const r = roomRefusal(10 * GB, { sizeBytes: 100 * GB, availBytes: need - 1 }, "/var/lib/postgresql/16", "the primary at 10.0.0.1:5432");
    expect(r?.needBytes).toBe(need);
    expect(r?.text).toContain("no room for a clone of the primary at 10.0.0.1:5432 (10.0 GB)");
    expect(r?.text).toContain("/var/lib/postgresql/16");
    expect(r?.text).toContain(`which has ${(((need - 1) / GB)).toFixed(1)} GB of 100.0 GB`);
  });

  test("after a refusal the next attempts refuse without asking the source while the room is short, for ROOM_RECHECK_MS", () => {
    const last: LastRefusal = { needBytes: 12 * GB, at: 1_000, text: "no room" };
    const fs = { sizeBytes: 100 * GB, availBytes: 11 * GB };
    expect(stillShort(null, fs, 2_000)).toBe(false);
    expect(stillShort(last, fs, 2_000)).toBe(true);
    expect(stillShort(last, fs, 1_000 + ROOM_RECHECK_MS - 1)).toBe(true);
    // Then the source is asked again: it may have shrunk.
    expect(stillShort(last, fs, 1_000 + ROOM_RECHECK_MS)).toBe(false);
  });

  test("space freed meanwhile lets the next attempt ask the source at once", () => {
    const last: LastRefusal = { needBytes: 12 * GB, at: 1_000, text: "no room" };
    expect(stillShort(last, { sizeBytes: 100 * GB, availBytes: 12 * GB }, 2_000)).toBe(false);
  });
});
