// Retention runs only once a new backup is complete. pgherd runs backups with --no-archive-check
// (archive_mode = always) and checks their WAL itself; pgBackRest's expire after the backup
// (expire-auto, on by default) counted a backup whose WAL was never archived and removed the older,
// restorable ones with their WAL (found by review: with archiving failing, each scheduled full backup
// expired one that could be restored, and a standby's backup that failed that check was taken again on
// the primary, expiring a second one). A stand-in pgbackrest logs its commands.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stopArchived, takeBackup, WalNotArchived } from "../../src/backup/backups.ts";
import { backrestPaths } from "../../src/backup/pgbackrest.ts";
import { memoryLogger } from "../../src/log.ts";
import { PG_OS_USER } from "../helpers/pg.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-expire-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const calls = join(root, "calls");
const infoFile = join(root, "info.json");
const fake = join(root, "pgbackrest");
// As pgBackRest does, a backup without --no-expire-auto runs expire at its end.
writeFileSync(fake, `#!/bin/sh\necho "$*" >> ${calls}\ncase "$1" in info) cat ${infoFile} ;; backup) case "$*" in *--no-expire-auto*) ;; *) echo "expire (auto)" >> ${calls} ;; esac ;; esac\nexit 0\n`, { mode: 0o755 });

function info(archiveMax: string, newStop = "000000010000000000000009"): string {
  const b = (label: string, stop: string) => ({ label, type: "full", timestamp: { start: 1, stop: 2 }, archive: { start: stop, stop }, info: { size: 1, repository: { size: 1 } } });
  return JSON.stringify([{ status: { code: 0, message: "ok" }, archive: [{ id: "16-1", min: "000000010000000000000001", max: archiveMax }],
    backup: [b("20261207-010000F", "000000010000000000000003"), b("20261207-020000F", newStop)] }]);
}

function commands(): string[] {
  return readFileSync(calls, "utf8").trim().split("\n").map((l) => l.split(" ")[0]!);
}

const p = backrestPaths({ cluster: "main", postgres: { data_dir: join(root, "data") }, backup: { stanza: "" } } as never, fake);

test("a backup whose WAL is not archived expires nothing; one whose WAL is archived expires after the check", async () => {
  const log = memoryLogger();
  const run = { osUser: PG_OS_USER, log, timeoutMs: 10_000 };

  writeFileSync(calls, "", { mode: 0o666 });
  chmodSync(calls, 0o666);
  writeFileSync(infoFile, info("000000010000000000000008"), { mode: 0o644 }); // the new backup stopped in ...09: not archived
  const failed = takeBackup(p, run, "full", 1_200);
  await expect(failed).rejects.toThrow(/was not archived within 1200 ms/);
  await expect(failed).rejects.toBeInstanceOf(WalNotArchived); // taken: the leader does not take another (backup-fallback.test.ts)
  expect(commands()).not.toContain("expire"); // neither pgBackRest's own after the backup nor pgherd's

  writeFileSync(calls, "");
  writeFileSync(infoFile, info("000000010000000000000009"));
  const b = await takeBackup(p, run, "full", 10_000);
  expect(b.label).toBe("20261207-020000F");
  const c = commands();
  expect(c.filter((x) => x === "expire")).toHaveLength(1);
  expect(c.at(-1)).toBe("expire"); // after the WAL check's info
  expect(c.indexOf("info")).toBeGreaterThan(c.indexOf("backup"));
}, 30_000);

// After a failover the old timeline's segments may run past the new one's: a former primary archived
// writes the new primary never received. Before the new timeline's first segment is archived, the
// archive's newest segment is one of those, and a comparison of log/seg alone counted the backup's
// WAL as archived (review), and expired older backups for it.
test("the archive's newest segment on another timeline does not count as the backup's WAL archived", async () => {
  expect(stopArchived("00000001000000000000001F", "000000020000000000000012")).toBe(false); // before: true
  expect(stopArchived("000000020000000000000011", "000000020000000000000012")).toBe(false);
  expect(stopArchived("000000020000000000000012", "000000020000000000000012")).toBe(true);
  expect(stopArchived("000000020000000100000000", "0000000200000000000000FF")).toBe(true);
  expect(stopArchived("000000030000000000000013", "000000020000000000000012")).toBe(false); // a later timeline: the segment may be missing
  expect(stopArchived(null, "000000020000000000000012")).toBe(false);

  const run = { osUser: PG_OS_USER, log: memoryLogger(), timeoutMs: 10_000 };
  writeFileSync(calls, "");
  writeFileSync(infoFile, info("00000001000000000000001F", "000000020000000000000012"));
  await expect(takeBackup(p, run, "full", 1_200)).rejects.toBeInstanceOf(WalNotArchived);
  expect(commands()).not.toContain("expire");
}, 30_000);
