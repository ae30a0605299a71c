// The lock files a killed postmaster leaves (postmaster.pid, the socket's .s.PGSQL.<port>.lock):
// PostgreSQL refuses to start while they name a live process, and a dead postmaster's pid may be
// reused. A restart in place removes them once the postmaster is dead and none of its processes is
// left (orphans.ts). Not in orphans.ts: the fencing watchdog loads that file, and needs none of this.
import { closeSync, fstatSync, lstatSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { deadOrZombie, leftoverProcesses, readPidFile } from "./orphans.ts";
import { errno, walkNoFollow } from "./safedir-walk.ts";

/**
 * Remove postmaster.pid and the socket's lock file when the postmaster they name is dead (or a
 * zombie) and none of its processes remain. As root, only files of `osUid` (the OS user), and
 * postmaster.pid only in a data directory that user owns, each directory reached without following
 * a link another user could have placed (safedir-walk.ts), so that no other user's lock file is
 * removed whatever the paths lead to; not root, the agent is the OS user (exec.ts) and removes what
 * it could remove by hand. `removed`: the files removed; `kept`: why a file that may be stale was
 * not (a refused link, an error), for the log: a start then fails on it.
 */
export function clearStaleLocks(dataDir: string, osUid: number, socketLock: string): { removed: string[]; kept: string[] } {
  const out = { removed: [] as string[], kept: [] as string[] };
  if (leftoverProcesses(dataDir, osUid).length > 0) return out;
  for (const [file, dirOwned] of [[join(dataDir, "postmaster.pid"), true], [socketLock, false]] as const) {
    try {
      if (removeIfStale(file, osUid, dirOwned)) out.removed.push(file);
    } catch (e) {
      if (errno(e) !== "ENOENT") out.kept.push(`${file}: ${(e as Error).message}`);
    }
  }
  return out;
}

/** clearStaleLocks for one file; `dirOwned`: its directory must be the OS user's too. Throws why it cannot look. */
function removeIfStale(path: string, osUid: number, dirOwned: boolean): boolean {
  if (process.getuid?.() !== 0) {
    const pid = readPidFile(path);
    if (pid === null || !deadOrZombie(pid)) return false;
    unlinkSync(path);
    return true;
  }
  const fd = walkNoFollow(dirname(path), false);
  try {
    if (dirOwned && fstatSync(fd).uid !== osUid) throw new Error(`its directory is not postgres.os_user's (uid ${osUid}): not removed`);
    const at = `/proc/self/fd/${fd}/${basename(path)}`;
    const st = lstatSync(at, { throwIfNoEntry: false });
    if (!st) return false;
    if (!st.isFile() || st.uid !== osUid) throw new Error(`not a file of postgres.os_user (uid ${osUid}): not removed`);
    const pid = readPidFile(at);
    if (pid === null || !deadOrZombie(pid)) return false;
    unlinkSync(at);
    return true;
  } finally {
    closeSync(fd);
  }
}
