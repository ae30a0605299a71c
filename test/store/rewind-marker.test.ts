// A pg_rewind that began to write and did not finish leaves blocks of two histories behind the old
// pg_control: the marker says so across agent restarts, and pg_rewind's own output says whether it
// got that far (found by review: such a directory was started, or rewound again).
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rewindTouchedTarget } from "../../src/postgres/rewind.ts";
import { OWN_TIMELINE_MARKER_FILE, OwnTimelineMarker } from "../../src/store/own-timeline-marker.ts";
import { RESTORE_MARKER_FILE, RestoreMarker } from "../../src/store/restore-marker.ts";
import { REWIND_MARKER_FILE, RewindMarker } from "../../src/store/rewind-marker.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-rewind-marker-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("set before the rewind, read back by a later agent, cleared after it", () => {
  const m = new RewindMarker(root, "/var/lib/postgresql/data");
  expect(m.get()).toBeNull();
  m.set("10.0.0.1:5432", new Date("2026-12-04T18:00:00Z"));
  expect(statSync(join(root, REWIND_MARKER_FILE)).mode & 0o777).toBe(0o600);
  expect(new RewindMarker(root, "/var/lib/postgresql/data").get()).toEqual({ dataDir: "/var/lib/postgresql/data", from: "10.0.0.1:5432", at: "2026-12-04T18:00:00.000Z" });
  // About another data directory (postgres.data_dir changed since): not this one's.
  expect(new RewindMarker(root, "/srv/pg").get()).toBeNull();
  m.clear();
  expect(existsSync(join(root, REWIND_MARKER_FILE))).toBe(false);
  expect(m.get()).toBeNull();
  m.clear(); // gone already: fine
});

test("a marker that cannot be read counts as an unfinished rewind (the safe side: a rebuild)", () => {
  writeFileSync(join(root, REWIND_MARKER_FILE), "{ torn");
  expect(new RewindMarker(root, "/d").get()).toMatchObject({ dataDir: "/d", from: "unknown" });
  new RewindMarker(root, "/d").clear();
});

test("a start on the own timeline: set before it, read back by a later agent, cleared after; unreadable counts as set", () => {
  const m = new OwnTimelineMarker(root, "/var/lib/postgresql/data");
  expect(m.get()).toBeNull();
  m.set(3, new Date("2026-12-07T13:00:00Z"));
  expect(statSync(join(root, OWN_TIMELINE_MARKER_FILE)).mode & 0o777).toBe(0o600);
  expect(new OwnTimelineMarker(root, "/var/lib/postgresql/data").get()).toEqual({ dataDir: "/var/lib/postgresql/data", timeline: 3, at: "2026-12-07T13:00:00.000Z" });
  expect(new OwnTimelineMarker(root, "/srv/pg").get()).toBeNull();
  expect(new RewindMarker(root, "/var/lib/postgresql/data").get()).toBeNull(); // a file of its own
  m.clear();
  expect(m.get()).toBeNull();
  writeFileSync(join(root, OWN_TIMELINE_MARKER_FILE), "{ torn");
  expect(m.get()).toMatchObject({ dataDir: "/var/lib/postgresql/data", timeline: 1 }); // pinned: a wrong pin fails loudly, none would follow the newest timeline
  m.clear();
});

test("a restore from a backup: set before the directory is in place, marked failed when PostgreSQL ended it short of its target, cleared after; unreadable counts as under way", () => {
  const m = new RestoreMarker(root, "/var/lib/postgresql/data");
  expect(m.get()).toBeNull();
  m.set("to 2026-01-31 12:00:00+00", new Date("2026-12-10T09:00:00Z"));
  expect(statSync(join(root, RESTORE_MARKER_FILE)).mode & 0o777).toBe(0o600);
  expect(new RestoreMarker(root, "/var/lib/postgresql/data").get()).toEqual({ dataDir: "/var/lib/postgresql/data", target: "to 2026-01-31 12:00:00+00", at: "2026-12-10T09:00:00.000Z" });
  expect(new RestoreMarker(root, "/srv/pg").get()).toBeNull();
  m.fail("to 2026-01-31 12:00:00+00", "the archive ends before it");
  expect(m.get()).toMatchObject({ target: "to 2026-01-31 12:00:00+00", failed: "the archive ends before it" });
  m.clear();
  expect(m.get()).toBeNull();
  writeFileSync(join(root, RESTORE_MARKER_FILE), "{ torn");
  expect(m.get()).toMatchObject({ dataDir: "/var/lib/postgresql/data", target: expect.stringContaining("unknown") });
  expect(m.get()?.failed).toBeUndefined();
  m.clear();
});

test("pg_rewind's output says whether it reached its writes ('need to copy' comes right before them)", () => {
  // From a real run (LC_ALL=C, --progress), then failures before and after the point of no return.
  const done = "pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\npg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\npg_rewind: need to copy 195 MB (total source directory size is 214 MB)\n     0/200459 kB (0%) copied\n200459/200459 kB (100%) copied\npg_rewind: creating backup label and updating control file\npg_rewind: syncing target data directory\npg_rewind: Done!";
  expect(rewindTouchedTarget(done)).toBe(true);
  expect(rewindTouchedTarget("pg_rewind: need to copy 67 MB (total source directory size is 86 MB)\n 1024/69321 kB (1%) copied\npg_rewind: error: could not fetch remote file \"base/5/16384\": server closed the connection unexpectedly")).toBe(true);
  expect(rewindTouchedTarget("pg_rewind: error: could not connect to server: Connection refused")).toBe(false);
  expect(rewindTouchedTarget("pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\npg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\npg_rewind: error: could not open file \"pg_wal/000000010000000000000002\": No such file or directory")).toBe(false);
  expect(rewindTouchedTarget("pg_rewind: error: target server must be shut down cleanly")).toBe(false);
});
