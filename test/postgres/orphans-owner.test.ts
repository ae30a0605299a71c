// A restart in place kills the killed postmaster's leftover backends: processes whose working
// directory is the data directory. Only the configured OS user's, in a data directory that user
// owns: a root agent never kills another user's process that sits in that directory, nor one in
// another user's directory that a link put in the data directory's place (the OS user may own the
// data directory's parent: Debian's /var/lib/postgresql).
import { afterAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isServerOf, leftoverProcesses } from "../../src/postgres/orphans.ts";
import { clearStaleLocks } from "../../src/postgres/stale-locks.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal, rootWithPtraceMissing } from "../helpers/require.ts";

requireReal("the leftover-process tests", rootWithPtraceMissing());

const kids: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "pgherd-orphans-"));
afterAll(() => {
  for (const k of kids) k.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** A process named like a backend ("postgres: ...") in `cwd`, run as uid/gid. */
function backendLike(uid: number, gid: number, cwd = dir): number {
  const k = spawn("/bin/bash", ["-c", "exec -a 'postgres: checkpointer' sleep 60"], { cwd, uid, gid, stdio: "ignore" });
  kids.push(k);
  return k.pid!;
}

test("leftovers are the OS user's postgres processes only", async () => {
  const pg = await lookupOsUser(PG_OS_USER);
  const data = join(dir, "data");
  mkdirSync(data);
  chownSync(data, pg.uid, pg.gid);
  chmodSync(dir, 0o755);
  chmodSync(data, 0o755);
  const ours = backendLike(pg.uid, pg.gid, data);
  const theirs = backendLike(65534, 65534, data);
  await waitFor(() => leftoverProcesses(data, pg.uid).includes(ours), { timeoutMs: 3000, what: "the owner's process seen" });
  await waitFor(() => readFileSync(`/proc/${theirs}/cmdline`, "utf8").startsWith("postgres: "), { timeoutMs: 3000, what: "nobody's process to look like a backend" });
  expect(leftoverProcesses(data, pg.uid)).toEqual([ours]);
  expect(leftoverProcesses(data, pg.uid)).not.toContain(theirs);
  // Asked for another OS user than the data directory's owner: nothing, not even that user's process.
  expect(leftoverProcesses(data, 65534)).toEqual([]);
});

test("another user's cluster linked in place of the data directory has no leftovers", async () => {
  const pg = await lookupOsUser(PG_OS_USER);
  const parent = join(dir, "parent"); // the OS user's, as /var/lib/postgresql is
  const theirDir = join(dir, "theirs");
  for (const d of [parent, theirDir]) mkdirSync(d);
  chmodSync(dir, 0o755);
  chownSync(parent, pg.uid, pg.gid);
  chownSync(theirDir, 65534, 65534);
  chmodSync(theirDir, 0o755);
  const link = join(parent, "main");
  symlinkSync(theirDir, link); // what the OS user could put there
  const theirs = backendLike(65534, 65534, theirDir);
  await waitFor(() => readFileSync(`/proc/${theirs}/cmdline`, "utf8").startsWith("postgres: "), { timeoutMs: 3000, what: "nobody's process to look like a backend" });
  expect(leftoverProcesses(link, pg.uid)).toEqual([]);
  // The owner of the link's target, taken as the expected one (as before the OS user's uid was given), would have found it:
  expect(leftoverProcesses(link, 65534)).toEqual([theirs]);
});

/** The pid of a process that has exited and been reaped: what a killed postmaster leaves in its lock files. */
async function deadPid(): Promise<number> {
  const k = spawn("/bin/true");
  await new Promise((r) => k.once("exit", r));
  return k.pid!;
}

/** `file` holding `pid` as a lock file does, owned by uid/gid. */
function lockFile(file: string, pid: number, uid: number, gid: number): void {
  writeFileSync(file, `${pid}\n/somewhere\n`);
  chownSync(file, uid, gid);
}

test("stale lock files are removed only when they are the OS user's, in its data directory, reached without another user's link", async () => {
  const pg = await lookupOsUser(PG_OS_USER);
  const base = join(dir, "locks"); // root's, 0755: a link here is root's too
  const [data, sock, theirs, parent] = ["data", "sock", "theirs", "pg-parent"].map((d) => join(base, d)) as [string, string, string, string];
  for (const d of [data, sock, theirs, parent]) mkdirSync(d, { recursive: true });
  chmodSync(base, 0o755);
  for (const d of [data, sock, parent]) chownSync(d, pg.uid, pg.gid);
  chownSync(theirs, 65534, 65534);
  const pid = await deadPid();
  const none = { removed: [], kept: [] };
  // The OS user's own: both removed.
  lockFile(join(data, "postmaster.pid"), pid, pg.uid, pg.gid);
  lockFile(join(sock, ".s.PGSQL.5432.lock"), pid, pg.uid, pg.gid);
  expect(clearStaleLocks(data, pg.uid, join(sock, ".s.PGSQL.5432.lock"))).toEqual({ removed: [join(data, "postmaster.pid"), join(sock, ".s.PGSQL.5432.lock")], kept: [] });
  // Through a link root placed (in root's directory): removed as well.
  symlinkSync(data, join(base, "via-root"));
  lockFile(join(data, "postmaster.pid"), pid, pg.uid, pg.gid);
  expect(clearStaleLocks(join(base, "via-root"), pg.uid, join(sock, "absent.lock"))).toEqual({ removed: [join(base, "via-root", "postmaster.pid")], kept: [] });
  // A socket lock file of another user, beside the OS user's data directory: kept, and said.
  lockFile(join(sock, ".s.PGSQL.5433.lock"), pid, 65534, 65534);
  const other = clearStaleLocks(data, pg.uid, join(sock, ".s.PGSQL.5433.lock"));
  expect(other.removed).toEqual([]);
  expect(other.kept).toEqual([expect.stringMatching(/\.s\.PGSQL\.5433\.lock: not a file of postgres\.os_user/)]);
  expect(existsSync(join(sock, ".s.PGSQL.5433.lock"))).toBe(true);
  // Another user's cluster linked in place of the data directory (in the OS user's parent): not
  // reached through that link, and said; and so for a directory of the OS user's own behind it.
  symlinkSync(theirs, join(parent, "main"));
  for (const owner of [{ uid: 65534, gid: 65534 }, pg]) {
    chownSync(theirs, owner.uid, owner.gid);
    lockFile(join(theirs, "postmaster.pid"), pid, owner.uid, owner.gid);
    const linked = clearStaleLocks(join(parent, "main"), pg.uid, join(sock, "absent.lock"));
    expect(linked.removed).toEqual([]);
    expect(linked.kept).toEqual([expect.stringMatching(/pg-parent\/main is a symbolic link .* refusing to follow it as root/)]);
    expect(existsSync(join(theirs, "postmaster.pid"))).toBe(true);
  }
  // A live pid: kept, nothing to say.
  lockFile(join(data, "postmaster.pid"), process.pid, pg.uid, pg.gid);
  expect(clearStaleLocks(data, pg.uid, join(sock, "absent.lock"))).toEqual(none);
});

test("a server of the OS user's own, working in another user's directory linked in place of the data directory, is not taken for its server", async () => {
  // The process-uid check alone would accept it: the data directory's owner is checked too.
  const pg = await lookupOsUser(PG_OS_USER);
  const base = join(dir, "own-in-theirs");
  const [theirs, parent, bin] = ["theirs", "pg-parent", "bin"].map((d) => join(base, d)) as [string, string, string];
  for (const d of [theirs, parent, bin]) mkdirSync(d, { recursive: true });
  for (const d of [base, theirs, bin]) chmodSync(d, 0o755);
  chownSync(theirs, 65534, 65534);
  chownSync(parent, pg.uid, pg.gid);
  copyFileSync(Bun.which("sleep")!, join(bin, "postgres")); // its executable is named postgres, as a server's is
  chmodSync(join(bin, "postgres"), 0o755);
  const k = spawn(join(bin, "postgres"), ["60"], { cwd: theirs, uid: pg.uid, gid: pg.gid, stdio: "ignore" });
  kids.push(k);
  const link = join(parent, "main");
  symlinkSync(theirs, link);
  await waitFor(() => readlinkSync(`/proc/${k.pid}/exe`) === join(bin, "postgres"), { timeoutMs: 3000, what: "the process to run its executable" });
  expect(isServerOf(k.pid!, link, pg.uid)).toBe(false);
  // In a directory of the OS user's, the same process is taken for its server: the owner is what refused it.
  chownSync(theirs, pg.uid, pg.gid);
  expect(isServerOf(k.pid!, link, pg.uid)).toBe(true);
});
