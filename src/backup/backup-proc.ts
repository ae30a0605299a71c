// A `pgbackrest backup` of this node's configuration still running from an earlier agent run. The
// agent runs pgBackRest detached (its own process group), and the unit stops the agent alone
// (KillMode=process): a backup under way goes on after an agent restart. The restarted agent must
// report it as running, or the leader would start a second backup of the stanza on another host,
// whose pgBackRest lock (per node) does not see this one (review of 7 December: the first of the two
// to finish expires the other's unfinished backup).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { BackupType } from "./backups.ts";

const TYPES: readonly BackupType[] = ["full", "diff", "incr"];

/**
 * The arguments of `pid` when it runs pgbackrest's `command` with config `conf` as `uid` (another
 * process, one gone or not readable: null). The TLS server's leftover is checked the same way
 * (server-pid.ts).
 */
export function pgbackrestArgs(pid: number, uid: number, conf: string, command: string): string[] | null {
  try {
    if (statSync(`/proc/${pid}`).uid !== uid) return null;
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return basename(argv[0] ?? "") === "pgbackrest" && argv.includes(command) && argv.includes(`--config=${conf}`) ? argv : null;
  } catch {
    return null;
  }
}

/** The backup command line of `pid` (pgbackrest, run as `uid`, command `backup`, with config `conf`), or null. */
export function ourBackup(pid: number, uid: number, conf: string): { pid: number; type: BackupType } | null {
  const argv = pgbackrestArgs(pid, uid, conf, "backup");
  if (!argv) return null;
  const t = argv.find((a) => a.startsWith("--type="))?.slice("--type=".length);
  return { pid, type: TYPES.find((x) => x === t) ?? "incr" };
}

/** The first such process on this host (one /proc walk: at the agent's start, not per report). */
export function findBackup(uid: number, conf: string, proc = "/proc"): { pid: number; type: BackupType } | null {
  let names: string[];
  try {
    names = readdirSync(proc);
  } catch {
    return null;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    const b = ourBackup(Number(n), uid, conf);
    if (b) return b;
  }
  return null;
}
