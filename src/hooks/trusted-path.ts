// Whether a program the configuration names (a hook, pgpool's PCP tools) is one only the agent's
// user or root can have put there. An agent running as root runs it as root: a hook file that the
// PostgreSQL OS user could rewrite (a database superuser's COPY … TO PROGRAM) would run as root at
// the next role change (review). The rule, as sshd's StrictModes: the file, and every directory from
// / down to it (for the path as named and for where its links lead), belong to root or to the
// agent's user and are not writable by group or others; a world-writable directory with the sticky
// bit (/tmp) is fine, as its entries are checked themselves. Every link on the way is followed and
// the directory it lies in checked, so no other user can change what the path leads to between the
// check and the start: the caller runs the path as named.
import { lstatSync, readlinkSync, realpathSync, type Stats } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

function componentProblem(p: string, st: Stats, uid: number): string | null {
  if (st.uid !== 0 && st.uid !== uid) return `${p} belongs to uid ${st.uid}, not to root or the agent's user (uid ${uid})`;
  const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky) return `${p} is writable by ${st.mode & 0o002 ? "others" : "its group"} (mode ${(st.mode & 0o7777).toString(8)})`;
  return null;
}

/**
 * Every component of `path` from / down, lstat'ed, following each link as the kernel would (the
 * directory a link lies in is checked before the link is followed: only a trusted user could have
 * pointed it elsewhere; re-review: a link in a directory others may write could be pointed at
 * /usr/bin/true, skipping a pre_promote gate); the first problem or null.
 */
function chainProblem(path: string, uid: number, depth = 0): string | null {
  if (depth > 40) return `${path}: too many levels of links`;
  const abs = resolve(path);
  const parts: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    parts.unshift(p);
    if (p === dirname(p)) break;
  }
  for (const p of parts) {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) {
      // A link another user owns (in a sticky /tmp, say) may be repointed by its owner at any time (re-review).
      if (st.uid !== 0 && st.uid !== uid) return `${p} is a link that belongs to uid ${st.uid}, not to root or the agent's user (uid ${uid})`;
      const target = resolve(dirname(p), readlinkSync(p));
      const rest = relative(p, abs);
      return chainProblem(rest ? join(target, rest) : target, uid, depth + 1);
    }
    const problem = componentProblem(p, st, uid);
    if (problem) return problem;
  }
  return null;
}

/** Why `path` may not be run by an agent of uid `uid` (a path that leads nowhere included: re-review), or null. */
export function untrustedProgram(path: string, uid = process.getuid?.() ?? 0): string | null {
  try {
    realpathSync(path);
  } catch (e) {
    return `${path} is not run: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : (e as Error).message}`;
  }
  try {
    const problem = chainProblem(path, uid);
    return problem ? `${path} is not run: ${problem} (another user could change what the agent runs)` : null;
  } catch (e) {
    return `${path} is not run: ${(e as Error).message}`;
  }
}

/**
 * Why the directory `dir`, or the nearest of its ancestors that exists (the rest mkdir makes, this
 * user's own), is a place another user could change (chainProblem: every component from / down, and
 * where links lead), or null. A root agent's state directory (store/dir.ts).
 */
export function untrustedDir(dir: string, uid = process.getuid?.() ?? 0): string | null {
  let p = resolve(dir);
  for (;;) {
    try {
      lstatSync(p);
      break;
    } catch {
      if (p === dirname(p)) return null;
      p = dirname(p);
    }
  }
  try {
    return chainProblem(p, uid);
  } catch (e) {
    return (e as Error).message;
  }
}
