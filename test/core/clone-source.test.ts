// Where a clone copies from (src/core/clone-source.ts): one test per rule.
import { expect, test } from "bun:test";
import { backupEnd, cloneSource, restoreCovers } from "../../src/core/clone-source.ts";
import { ZERO_POSITION } from "../../src/core/position.ts";

test("without clone_from = backup (and pgBackRest): always the primary", () => {
  for (const stuck of [false, true]) for (const lastCloneRestored of [false, true]) expect(cloneSource({ restoreConfigured: false, stuck, lastCloneRestored })).toBe("primary");
});

test("with it: the latest backup, for a stuck standby too when its data did not come from a restore", () => {
  expect(cloneSource({ restoreConfigured: true, stuck: false, lastCloneRestored: false })).toBe("backup");
  expect(cloneSource({ restoreConfigured: true, stuck: false, lastCloneRestored: true })).toBe("backup");
  expect(cloneSource({ restoreConfigured: true, stuck: true, lastCloneRestored: false })).toBe("backup");
});

test("a standby restored from the latest backup that then could not stream is cloned from the primary: the same backup would stop at the same gap in the archive", () => {
  expect(cloneSource({ restoreConfigured: true, stuck: true, lastCloneRestored: true })).toBe("primary");
});

test("where a backup ends: its last segment's timeline and its stop LSN; unknown when either cannot be read", () => {
  expect(backupEnd({ walStop: "000000030000000000000005", lsnStop: "0/5000100" })).toEqual({ timeline: 3, lsn: "0/5000100" });
  expect(backupEnd({ walStop: "0000000A0000000100000002", lsnStop: "1/2000138" })).toEqual({ timeline: 10, lsn: "1/2000138" });
  expect(backupEnd({ walStop: "", lsnStop: "0/5000100" })).toBeNull();
  expect(backupEnd({ walStop: "000000030000000000000005", lsnStop: "" })).toBeNull();
});

test("a restore replaces data only when the backup ends at or past what the data directory held: else the node would vote below WAL it held, maybe commits it acknowledged (found by review)", () => {
  const held = { timeline: 3, lsn: "0/7000000" };
  // A standby that acknowledged commits up to 0/7000000, the latest backup ending before: pg_basebackup instead.
  expect(restoreCovers({ timeline: 3, lsn: "0/5000100" }, held)).toBe(false);
  expect(restoreCovers({ timeline: 3, lsn: "0/7000000" }, held)).toBe(true);
  expect(restoreCovers({ timeline: 4, lsn: "0/5000100" }, held)).toBe(true); // a later timeline compares ahead, as in elections
  expect(restoreCovers({ timeline: 2, lsn: "0/9000000" }, held)).toBe(false);
  expect(restoreCovers(null, held)).toBe(false); // where it ends is not known
  // Nothing held (an empty data directory, a first clone): any backup.
  expect(restoreCovers({ timeline: 1, lsn: "0/3000000" }, null)).toBe(true);
  expect(restoreCovers(null, ZERO_POSITION)).toBe(true);
});
