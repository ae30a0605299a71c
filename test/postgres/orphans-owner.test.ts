// A restart in place kills the killed postmaster's leftover backends: processes whose working
// directory is the data directory. Only the data directory owner's (the server's user): a root
// agent never kills another user's process that sits in that directory (or one a link made
// look like it).
import { afterAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { leftoverProcesses } from "../../src/postgres/orphans.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";

const kids: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "pgherd-orphans-"));
afterAll(() => {
  for (const k of kids) k.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** A process named like a backend ("postgres: ...") in `dir`, run as uid/gid. */
function backendLike(uid: number, gid: number): number {
  const k = spawn("/bin/bash", ["-c", "exec -a 'postgres: checkpointer' sleep 60"], { cwd: dir, uid, gid, stdio: "ignore" });
  kids.push(k);
  return k.pid!;
}

test.skipIf(process.getuid?.() !== 0)("leftovers are the data directory owner's postgres processes only", async () => {
  const pg = await lookupOsUser(PG_OS_USER);
  chownSync(dir, pg.uid, pg.gid);
  chmodSync(dir, 0o755);
  const ours = backendLike(pg.uid, pg.gid);
  const theirs = backendLike(65534, 65534);
  await waitFor(() => leftoverProcesses(dir).includes(ours), { timeoutMs: 3000, what: "the owner's process seen" });
  expect(leftoverProcesses(dir)).toEqual([ours]);
  expect(leftoverProcesses(dir)).not.toContain(theirs);
});
