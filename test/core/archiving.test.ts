// core/archiving.ts: when archiving counts as failing, when that is said, and when its end is.
import { describe, expect, test } from "bun:test";
import { type ArchiverReading, archiveReport, ARCHIVING_WORKS, type ArchivingNews, type ArchivingState, archivingLine, failingNow, stepArchiving } from "../../src/core/archiving.ts";

const T0 = Date.parse("2025-03-01T10:00:00Z");
const WARN = 60_000;
const WAL = (n: number) => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;

/** Archived segment 4 at T0 - 10 s; nothing waiting. */
const works: ArchiverReading = { at: T0, archived: 4, failed: 0, lastArchivedWal: WAL(4), lastArchivedAt: T0 - 10_000, lastFailedWal: null, lastFailedAt: null, ready: 0 };
/** Segment 5 failed at `failedAt`, `ready` waiting, read at `at`. */
const failing = (at: number, failedAt: number, ready = 2): ArchiverReading => ({ ...works, at, failed: 3, lastFailedWal: WAL(5), lastFailedAt: failedAt, ready });

/** Feed readings in order; the news said, in order. */
function run(rs: ArchiverReading[], from: ArchivingState = ARCHIVING_WORKS): { state: ArchivingState; said: ArchivingNews[] } {
  const said: ArchivingNews[] = [];
  let state = from;
  for (const r of rs) {
    const s = stepArchiving(state, r, WARN);
    state = s.state;
    if (s.say) said.push(s.say);
  }
  return { state, said };
}

describe("failing now", () => {
  test("the last failure is newer than the last success and a segment waits", () => {
    expect(failingNow(works)).toBe(false);
    expect(failingNow(failing(T0, T0 - 1000))).toBe(true);
    // Never archived anything, and failed.
    expect(failingNow({ ...failing(T0, T0 - 1000), lastArchivedWal: null, lastArchivedAt: null })).toBe(true);
  });

  test("not when a success came after the failure (a retry went through)", () => {
    expect(failingNow({ ...failing(T0, T0 - 5000), lastArchivedWal: WAL(5), lastArchivedAt: T0 - 1000 })).toBe(false);
  });

  test("not when nothing waits (the failed file went another way)", () => {
    expect(failingNow(failing(T0, T0 - 1000, 0))).toBe(false);
  });
});

describe("said once per episode", () => {
  test("a failure is said once it has lasted the warning time, from the first failure seen, not from the last retry", () => {
    const first = T0 + 1000;
    const r = run([
      failing(T0 + 2000, first),
      failing(T0 + 30_000, T0 + 29_000), // PostgreSQL retried: its last failure moved on
      failing(first + WARN - 1, first + WARN - 2000),
    ]);
    expect(r.said).toEqual([]);
    expect(r.state).toEqual({ since: first, said: false });
    const s = stepArchiving(r.state, failing(first + WARN, first + WARN - 1000, 7), WARN);
    expect(s.say).toEqual({ kind: "failing", since: first, forMs: WARN, wal: WAL(5), ready: 7, lastArchivedWal: WAL(4), lastArchivedAt: T0 - 10_000 });
    expect(s.state).toEqual({ since: first, said: true });
  });

  test("then nothing more while it goes on", () => {
    const r = run([failing(T0, T0), failing(T0 + WARN, T0 + WARN), failing(T0 + 2 * WARN, T0 + 2 * WARN), failing(T0 + 10 * WARN, T0 + 10 * WARN, 900)]);
    expect(r.said.map((n) => n.kind)).toEqual(["failing"]);
  });

  test("a failure retried with success before the warning time is never said, and leaves nothing behind", () => {
    const r = run([failing(T0 + 1000, T0), { ...works, at: T0 + 5000, archived: 6, lastArchivedWal: WAL(6), lastArchivedAt: T0 + 4000, lastFailedAt: T0, lastFailedWal: WAL(5), failed: 3 }]);
    expect(r.said).toEqual([]);
    expect(r.state).toEqual(ARCHIVING_WORKS);
  });

  test("its end is said once a segment was archived after it began, with how long it lasted", () => {
    const r = run([failing(T0, T0), failing(T0 + WARN, T0 + WARN - 500), { ...works, at: T0 + 90_000, archived: 9, lastArchivedWal: WAL(9), lastArchivedAt: T0 + 89_000, lastFailedAt: T0 + WARN - 500, lastFailedWal: WAL(5), ready: 1 }]);
    expect(r.said.map((n) => n.kind)).toEqual(["failing", "recovered"]);
    expect(r.said[1]).toEqual({ kind: "recovered", forMs: 90_000, wal: WAL(9), ready: 1 });
    expect(r.state).toEqual(ARCHIVING_WORKS);
    // A new failure later is a new episode, said again.
    const again = run([failing(T0 + 200_000, T0 + 200_000), failing(T0 + 200_000 + WARN, T0 + 200_000 + WARN)], r.state);
    expect(again.said.map((n) => n.kind)).toEqual(["failing"]);
  });

  test("a reset of pg_stat_archiver (a crash restart) forgets the failure but archives nothing: the episode goes on, no end is said", () => {
    const reset: ArchiverReading = { at: T0 + WARN + 5000, archived: 0, failed: 0, lastArchivedWal: null, lastArchivedAt: null, lastFailedWal: null, lastFailedAt: null, ready: 12 };
    const r = run([failing(T0, T0), failing(T0 + WARN, T0 + WARN), reset, failing(T0 + 2 * WARN, T0 + 2 * WARN)]);
    expect(r.said.map((n) => n.kind)).toEqual(["failing"]);
    expect(r.state).toEqual({ since: T0, said: true });
  });

  test("nothing left waiting ends it too", () => {
    const r = run([failing(T0, T0), failing(T0 + WARN, T0 + WARN), { ...failing(T0 + WARN + 1000, T0 + WARN), ready: 0 }]);
    expect(r.said.map((n) => n.kind)).toEqual(["failing", "recovered"]);
  });
});

describe("report and log lines", () => {
  test("the report names the failure's start only once it was said", () => {
    const early = archiveReport(failing(T0 + 1000, T0), { since: T0, said: false });
    expect(early.failingSince).toBeNull();
    expect(early.lastFailedAt).toBe("2025-03-01T10:00:00.000Z");
    expect(early.ready).toBe(2);
    const late = archiveReport(failing(T0 + WARN, T0), { since: T0, said: true });
    expect(late).toEqual({
      at: "2025-03-01T10:01:00.000Z", archived: 4, failed: 3, lastArchivedWal: WAL(4), lastArchivedAt: "2025-03-01T09:59:50.000Z",
      lastFailedWal: WAL(5), lastFailedAt: "2025-03-01T10:00:00.000Z", ready: 2, failingSince: "2025-03-01T10:00:00.000Z",
    });
  });

  test("the warning names the segment, how many wait and since when; the end how long it took", () => {
    const s = stepArchiving({ since: T0, said: false }, failing(T0 + 75_000, T0 + 70_000, 5), WARN);
    expect(archivingLine(s.say!)).toBe(`WAL archiving has been failing for 75 s (since 2025-03-01T10:00:00.000Z): ${WAL(5)} is not archived, 5 file(s) wait in pg_wal and it keeps growing until archiving works; the last one archived was ${WAL(4)} at 2025-03-01T09:59:50.000Z (archive_command's own messages are in PostgreSQL's log)`);
    expect(archivingLine({ kind: "recovered", forMs: 90_000, wal: WAL(9), ready: 0 })).toBe(`WAL archiving works again after 90 s: ${WAL(9)} archived, 0 file(s) still waiting`);
  });
});
