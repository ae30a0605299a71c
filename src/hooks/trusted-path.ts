// Whether a program the configuration names (a hook, pgpool's PCP tools) is one only the agent's
// user or root can have put there. An agent running as root runs it as root: a hook file that the
// PostgreSQL OS user could rewrite (a database superuser's COPY … TO PROGRAM) would run as root at
// the next role change (review). The rule, as sshd's StrictModes: the file, and every directory from
// / down to it (for the path as named and for where its links lead), belong to root or to the
// agent's user and are not writable by group or others; a world-writable directory with the sticky
// bit (/tmp) is fine, as its entries are checked themselves.
import { lstatSync, realpathSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";

function componentProblem(p: string, st: Stats, uid: number): string | null {
  if (st.uid !== 0 && st.uid !== uid) return `${p} belongs to uid ${st.uid}, not to root or the agent's user (uid ${uid})`;
  const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky) return `${p} is writable by ${st.mode & 0o002 ? "others" : "its group"} (mode ${(st.mode & 0o7777).toString(8)})`;
  return null;
}

/** Every component of `path` (absolute) from / down, lstat'ed; the first problem or null. */
function chainProblem(path: string, uid: number): string | null {
  const parts: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    parts.unshift(p);
    if (p === dirname(p)) break;
  }
  for (const p of parts) {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) continue; // its target is checked through the real path
    const problem = componentProblem(p, st, uid);
    if (problem) return problem;
  }
  return null;
}

/**
 * Why `path` may not be run by an agent of uid `uid`, or null. A path that does not exist is null:
 * starting it fails with ENOENT, which says so better.
 */
export function untrustedProgram(path: string, uid = process.getuid?.() ?? 0): string | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return null;
  }
  try {
    const problem = chainProblem(path, uid) ?? (real !== resolve(path) ? chainProblem(real, uid) : null);
    return problem ? `${path} is not run: ${problem} (another user could change what the agent runs)` : null;
  } catch (e) {
    return `${path} is not run: ${(e as Error).message}`;
  }
}
