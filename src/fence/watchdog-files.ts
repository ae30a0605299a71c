// The fencing watchdog's own files in the state directory, beside the lease file (lease-file.ts):
// its pid file, which the agent reads to know whether its watchdog runs, and its features file,
// which says what that process can do (an agent may run beside a watchdog of another release).
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const WATCHDOG_PID_FILE = "watchdog.pid";
/** `PID STARTTIME FEATURE…`: what the watchdog process PID (started at STARTTIME, /proc/PID/stat) can do. */
export const WATCHDOG_FEATURES_FILE = "watchdog.features";
/** The watchdog verifies a lease record's check and reads again when it fails: the agent may write in place. */
export const CHECKED_LEASE = "checked-lease-1";
/** The watchdog signals only the lease's OS user's processes (Lease.osUid). */
export const LEASE_OS_UID = "lease-os-uid-1";

export function watchdogAlive(stateDir: string): boolean {
  return livingWatchdog(stateDir) !== null;
}

/**
 * The pid of the watchdog that watches `stateDir`, if it runs: the pid file's process must be a
 * `watchdog --state-dir <stateDir>`. A pid reused after a reboot by any other process, even one
 * with "watchdog" in its name (pgpool-II's, another cluster's), would leave the host unguarded.
 */
export function livingWatchdog(stateDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(stateDir, WATCHDOG_PID_FILE), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return null;
    process.kill(pid, 0);
    return watchesDir(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0"), stateDir) ? pid : null;
  } catch {
    return null;
  }
}

/** Whether a command line (argv) is a watchdog for `stateDir` (as ensureWatchdog starts it, or an operator with another spelling of the path). */
export function watchesDir(argv: readonly string[], stateDir: string): boolean {
  const at = argv.indexOf("--state-dir");
  const dir = at >= 0 ? argv[at + 1] : argv.find((a) => a.startsWith("--state-dir="))?.slice("--state-dir=".length);
  return argv.includes("watchdog") && dir !== undefined && resolve(dir) === resolve(stateDir);
}

/** The start time of process `pid` (clock ticks after boot, /proc/PID/stat field 22): with the pid, it names one process. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  if (!start || !/^\d+$/.test(start)) throw new Error(`/proc/${pid}/stat: no start time`);
  return start;
}

/** What the watchdog `pid` (alive) can do, from the features file it wrote; none for an older watchdog, which writes none. */
export function watchdogFeatures(stateDir: string, pid: number): string[] {
  try {
    const [who, start, ...features] = readFileSync(join(stateDir, WATCHDOG_FEATURES_FILE), "utf8").trim().split(" ");
    return Number(who) === pid && start === startTime(pid) ? features : [];
  } catch {
    return [];
  }
}

/** The watchdog `pid` verifies lease checks. */
export function watchdogChecksLease(stateDir: string, pid: number): boolean {
  return watchdogFeatures(stateDir, pid).includes(CHECKED_LEASE);
}

/** The watchdog's pid file (as every version writes it), after its features file (newer watchdogs only). */
export function writeWatchdogPid(stateDir: string): void {
  try {
    writeFileSync(join(stateDir, WATCHDOG_FEATURES_FILE), `${process.pid} ${startTime(process.pid)} ${CHECKED_LEASE} ${LEASE_OS_UID}\n`, { mode: 0o600 });
  } catch {
    // without it the agent writes by rename, which this watchdog reads as well
  }
  writeFileSync(join(stateDir, WATCHDOG_PID_FILE), `${process.pid}\n`, { mode: 0o600 });
}
