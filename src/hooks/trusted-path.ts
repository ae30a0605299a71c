// Whether a program the configuration names (a hook, pgpool's PCP tools) is one only the agent's
// user or root can have put there. An agent running as root runs it as root: a hook file that the
// PostgreSQL OS user could rewrite (a database superuser's COPY … TO PROGRAM) would run as root at
// the next role change (review). The rule, as sshd's StrictModes: the file, and every directory from
// / down to it (for the path as named and for where its links lead), belong to root or to the
// agent's user and are not writable by group or others; a world-writable directory with the sticky
// bit (/tmp) is fine, as its entries are checked themselves. What runs is the checked real path.
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
 * The real path of `path` to run, checked, for an agent of uid `uid`; or why it may not be run. The
 * caller runs the real path: every directory on it is trusted, so nothing can be swapped in between
 * the check and the start (through a link of a link, or a file recreated after the check: re-review).
 */
export function trustedProgram(path: string, uid = process.getuid?.() ?? 0): { real: string } | { problem: string } {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (e) {
    return { problem: `${path} is not run: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : (e as Error).message}` };
  }
  try {
    const problem = chainProblem(real, uid);
    return problem ? { problem: `${path} is not run: ${problem} (another user could change what the agent runs)` } : { real };
  } catch (e) {
    return { problem: `${path} is not run: ${(e as Error).message}` };
  }
}

/** trustedProgram's problem, or null. */
export function untrustedProgram(path: string, uid?: number): string | null {
  const t = trustedProgram(path, uid);
  return "problem" in t ? t.problem : null;
}
