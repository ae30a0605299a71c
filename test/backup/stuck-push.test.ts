// backup/stuck-push.ts: the archive pushes of one data directory, found by their working directory,
// command line and user (real processes), ended with SIGTERM; others are left alone.
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { archivePushProcesses, endArchivePushes } from "../../src/backup/stuck-push.ts";
import { waitFor } from "../helpers/proc.ts";

/** The OS user here: this process's, which owns the directories the tests make. */
const ME = process.getuid!();
/** A process that waits 30 s and does not fork: its command line is exactly what it was given. */
const HOLD = "setTimeout(() => {}, 30_000)";
const exited = (p: ReturnType<typeof spawn>) => new Promise<string | null>((r) => p.once("exit", (_c, sig) => r(sig)));

test("the pushes running in the data directory are ended; a push elsewhere and another command there are not", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-push-"));
  const other = mkdtempSync(join(tmpdir(), "pgherd-push-"));
  // The arguments after -e: what /proc/<pid>/cmdline shows for `pgherd backup wal-push …` and `pgbackrest … archive-push …`.
  const walPush = spawn(process.execPath, ["-e", HOLD, "pgherd", "backup", "wal-push", "pg_wal/000000010000000000000003"], { cwd: dir });
  const archivePush = spawn(process.execPath, ["-e", HOLD, "pgbackrest", "--stanza=main", "archive-push", "pg_wal/000000010000000000000003"], { cwd: dir });
  const elsewhere = spawn(process.execPath, ["-e", HOLD, "pgherd", "backup", "wal-push", "x"], { cwd: other });
  const unrelated = spawn(process.execPath, ["-e", HOLD, "postgres", "-D", dir], { cwd: dir });
  try {
    for (;;) { // until each runs (spawn returns before the exec)
      const found = archivePushProcesses(dir, ME);
      if (found.includes(walPush.pid!) && found.includes(archivePush.pid!)) break;
      await Bun.sleep(10);
    }
    expect(archivePushProcesses(dir, ME).sort()).toEqual([walPush.pid!, archivePush.pid!].sort());
    const gone = [exited(walPush), exited(archivePush)];
    expect(endArchivePushes(dir, ME)).toBe(2);
    expect(await Promise.all(gone)).toEqual(["SIGTERM", "SIGTERM"]);
    expect(elsewhere.exitCode).toBe(null);
    expect(unrelated.exitCode).toBe(null);
    expect(endArchivePushes(dir, ME)).toBe(0);
  } finally {
    for (const p of [walPush, archivePush, elsewhere, unrelated]) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    rmSync(other, { recursive: true, force: true });
  }
});

test("a data_dir named through a symlink: its pushes are found all the same (/proc names the real directory)", async () => {
  const base = mkdtempSync(join(tmpdir(), "pgherd-push-"));
  const real = join(base, "real");
  const link = join(base, "pgdata");
  mkdirSync(real);
  symlinkSync(real, link);
  const walPush = spawn(process.execPath, ["-e", HOLD, "pgherd", "backup", "wal-push", "pg_wal/000000010000000000000003"], { cwd: link });
  try {
    for (;;) { // until it runs (spawn returns before the exec)
      if (archivePushProcesses(link, ME).includes(walPush.pid!)) break;
      await Bun.sleep(10);
    }
    const gone = exited(walPush);
    expect(endArchivePushes(link, ME)).toBe(1);
    expect(await gone).toBe("SIGTERM");
  } finally {
    walPush.kill("SIGKILL");
    rmSync(base, { recursive: true, force: true });
  }
});

test.skipIf(process.getuid?.() !== 0)("as root: a push of another user, in the data directory or in another user's directory linked in its place, is not ended", async () => {
  const base = mkdtempSync(join(tmpdir(), "pgherd-push-"));
  const data = join(base, "data"); // the OS user's (here root's)
  const theirs = join(base, "theirs"); // nobody's
  const link = join(base, "linked");
  mkdirSync(data);
  mkdirSync(theirs);
  chownSync(theirs, 65534, 65534);
  chmodSync(base, 0o755);
  symlinkSync(theirs, link);
  const asNobody = { uid: 65534, gid: 65534 };
  // bash keeps its arguments as its command line, and waits in a builtin (a read on the stdin pipe
  // this process holds open) so it forks nothing: a child between its fork and its exec has the
  // same command line, directory and user, and is a second push to find (CI: [pid, pid + 2]).
  const inData = spawn("/bin/bash", ["-c", "read -r -t 30 _; :", "pgherd", "backup", "wal-push", "x"], { cwd: data, detached: true, ...asNobody });
  const inTheirs = spawn("/bin/bash", ["-c", "read -r -t 30 _; :", "pgbackrest", "archive-push", "x"], { cwd: theirs, detached: true, ...asNobody });
  try {
    // Until each runs as nobody with its own command line (spawn returns before the exec).
    const running = (p: ReturnType<typeof spawn>, arg: string) => {
      try {
        return readFileSync(`/proc/${p.pid}/cmdline`, "utf8").split("\0").includes(arg) && /^Uid:\s+65534\b/m.test(readFileSync(`/proc/${p.pid}/status`, "utf8"));
      } catch {
        return false;
      }
    };
    await waitFor(() => running(inData, "wal-push") && running(inTheirs, "archive-push"), { timeoutMs: 5000, intervalMs: 10, what: "nobody's pushes to run" });
    expect(archivePushProcesses(data, ME)).toEqual([]);
    expect(archivePushProcesses(link, ME)).toEqual([]);
    expect(endArchivePushes(link, ME)).toBe(0);
    // Asked as their own user, they are found: the user is what kept them out.
    expect(archivePushProcesses(data, 65534)).toEqual([]); // data is not nobody's directory
    expect(archivePushProcesses(link, 65534)).toEqual([inTheirs.pid!]);
    expect(inData.exitCode).toBe(null);
    expect(inTheirs.exitCode).toBe(null);
  } finally {
    for (const p of [inData, inTheirs]) {
      try {
        process.kill(-p.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }
    rmSync(base, { recursive: true, force: true });
  }
});
