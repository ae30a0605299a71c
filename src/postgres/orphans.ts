// After a postmaster is killed (-9), its backends live on for a moment, attached to the shared
// memory, and a new postmaster refuses to start ("another server holds its lock file"). A
// restart in place kills those leftovers: processes whose working directory is the data dir.
import { closeSync, constants as C, openSync, readdirSync, readlinkSync, readFileSync, readSync, realpathSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";

/**
 * PostgreSQL processes left in `dataDir`: a postgres command line, not dead, and run by `osUid`, the
 * configured OS user, who must own the data directory too. The OS user may own the data
 * directory's parent (Debian: /var/lib/postgresql) and put a link to another user's cluster in its
 * place: a root agent then finds nothing there, and never kills another user's process.
 */
export function leftoverProcesses(dataDir: string, osUid: number): number[] {
  return osUserProcessesIn(dataDir, osUid, (cmd, pid) => (cmd.startsWith("postgres") || cmd.includes("/postgres")) && !deadOrZombie(pid));
}

/**
 * processesIn, for processes run by `osUid` (the OS user) in a data directory that user owns: none
 * when another user owns what the path leads to (a link put in the data directory's place), and
 * never another user's process. What a root agent may signal there.
 */
export function osUserProcessesIn(dataDir: string, osUid: number, match: (cmdline: string, pid: number) => boolean): number[] {
  if (!ownedBy(dataDir, osUid)) return [];
  return processesIn(dataDir, (cmd, pid) => uidOf(pid) === osUid && match(cmd, pid));
}

/** The data directory (its real path) is owned by `osUid`. */
function ownedBy(dataDir: string, osUid: number): boolean {
  try {
    return statSync(realPath(dataDir)).uid === osUid;
  } catch {
    return false;
  }
}

/** The real uid of `pid`, or null when it cannot be read. */
export function uidOf(pid: number): number | null {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return null;
  }
}

/** Processes whose working directory is `dataDir` and whose command line (NUL-separated) `match` accepts. */
export function processesIn(dataDir: string, match: (cmdline: string, pid: number) => boolean): number[] {
  // /proc/<pid>/cwd names the directory with every symlink resolved: compare with the real path.
  const want = realPath(dataDir);
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/cwd`) !== want) continue;
      if (match(readFileSync(`/proc/${name}/cmdline`, "utf8"), Number(name))) out.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

function realPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/** Dead or a zombie: a killed postmaster lingers as a zombie until init reaps it, and PostgreSQL's
 *  lock-file check (kill 0) takes a zombie for a live server. */
export function deadOrZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

/**
 * SIGKILL a server that does not react to pg_ctl (frozen, wedged): its postmaster first (checked to
 * be this data directory's, so it cannot fork more), then every process left in the data directory.
 * SIGKILL reaches a stopped (SIGSTOP) process too. Only processes of `osUid`, the OS user, are
 * signalled. Returns the number of processes signalled.
 */
export function killServer(dataDir: string, osUid: number): number {
  let n = 0;
  const pm = readPidFile(`${resolve(dataDir)}/postmaster.pid`);
  if (pm !== null && isServerOf(pm, dataDir, osUid)) {
    try {
      process.kill(pm, "SIGKILL");
      n++;
    } catch {
      // already gone
    }
  }
  return n + killLeftovers(dataDir, osUid);
}

export function killLeftovers(dataDir: string, osUid: number): number {
  return signalEach(leftoverProcesses(dataDir, osUid), "SIGKILL");
}

/**
 * killLeftovers, then waits (checking every `everyMs`, at most `maxMs`) until none is left: a
 * SIGKILLed process runs on until its exit has torn down its memory, attached to the shared memory
 * all the while, and the lock files are not stale before it is gone (clearStaleLocks keeps them).
 * Returns the number killed.
 */
export async function killLeftoversAndWait(dataDir: string, osUid: number, maxMs: number, clock: { now(): number; sleep(ms: number): Promise<void> }, everyMs = 5): Promise<number> {
  const killed = killLeftovers(dataDir, osUid);
  if (killed === 0) return 0;
  const until = clock.now() + maxMs;
  while (leftoverProcesses(dataDir, osUid).length > 0 && clock.now() < until) await clock.sleep(everyMs);
  return killed;
}

/**
 * A pg_rewind of `dataDir` or a pg_basebackup into `cloneDir` that an earlier agent started, run by
 * `osUid`: the unit's KillMode=process keeps the agent's children across its restart (so that the
 * server keeps running), and the tool's deadline was the old agent's. Left running, a pg_rewind
 * writes into the clone swapped in meanwhile, and a pg_basebackup keeps the member's slot busy and
 * writes into the next clone's directory (review). Found by their command lines, as the agent
 * runs them (src/postgres/rewind.ts, basebackup.ts).
 */
export function leftoverCopies(dataDir: string, cloneDir: string, osUid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      if (uidOf(pid) !== osUid || deadOrZombie(pid)) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      const tool = basename(argv[0] ?? "");
      const d = argv.indexOf("-D");
      if ((tool === "pg_rewind" && argv.includes(`--target-pgdata=${dataDir}`)) || (tool === "pg_basebackup" && d > 0 && argv[d + 1] === cloneDir)) out.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** leftoverCopies, killed (SIGKILL), and waited for (every `everyMs`, at most `maxMs`); the number killed. */
export async function killLeftoverCopies(dataDir: string, cloneDir: string, osUid: number, maxMs: number, clock: { now(): number; sleep(ms: number): Promise<void> }, everyMs = 20): Promise<number> {
  const killed = signalEach(leftoverCopies(dataDir, cloneDir, osUid), "SIGKILL");
  const until = clock.now() + maxMs;
  while (killed > 0 && leftoverCopies(dataDir, cloneDir, osUid).length > 0 && clock.now() < until) await clock.sleep(everyMs);
  return killed;
}

/** `sig` to each pid (one that is gone meanwhile is skipped); the number signalled. */
export function signalEach(pids: number[], sig: NodeJS.Signals): number {
  let n = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

/**
 * Why the /proc links (cwd) of `pid`, a process of `osUid` (the OS user), may not be read by this
 * process (EACCES, EPERM: root without CAP_SYS_PTRACE, a security module), or null when they may,
 * when it is gone, or when another user runs it (not the server's, whatever its links say).
 */
export function procLinksUnreadable(pid: number, osUid: number): string | null {
  try {
    if (uidOf(pid) !== osUid) return null;
    readlinkSync(`/proc/${pid}/cwd`);
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "EACCES" || code === "EPERM" ? `${code} on /proc/${pid}/cwd` : null;
  }
}

/**
 * Root whose effective set lacks CAP_SYS_PTRACE: it cannot read another user's /proc/<pid>/cwd and
 * exe, so isServerOf and leftoverProcesses never recognize the server's processes (and the
 * watchdog would not fence). False for any other user: a process reads its own user's links.
 */
export function rootWithoutPtrace(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    const eff = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    return eff !== undefined && (BigInt(`0x${eff}`) & (1n << 19n)) === 0n; // CAP_SYS_PTRACE = 19
  } catch {
    return false;
  }
}

/**
 * `pid` is a PostgreSQL server of `dataDir`: its executable is postgres, its working directory is
 * the data directory, and it and the data directory belong to `osUid`, the configured OS user.
 * postmaster.pid is writable by that user, so the pid in it may name any process: check before a
 * root process signals it. The user may own the data directory's parent too, and put a link to
 * another user's cluster in its place: its owner is checked, not taken as the expected one.
 */
export function isServerOf(pid: number, dataDir: string, osUid: number): boolean {
  try {
    const want = realpathSync(dataDir);
    if (readlinkSync(`/proc/${pid}/cwd`) !== want) return false;
    const exe = basename(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, ""));
    if (exe !== "postgres" && exe !== "postmaster") return false;
    return uidOf(pid) === osUid && statSync(want).uid === osUid;
  } catch {
    return false; // gone, or no /proc: never signal what cannot be checked
  }
}

/**
 * The pid on the first line of a lock file (postmaster.pid, .s.PGSQL.<port>.lock), or null. The
 * OS user owns these directories: the file is opened without following a link and without
 * blocking (a FIFO in its place must not hang the caller).
 */
export function readPidFile(path: string): number | null {
  try {
    const fd = openSync(path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    try {
      const buf = Buffer.alloc(32);
      const n = readSync(fd, buf, 0, buf.length, 0);
      const pid = Number(buf.subarray(0, n).toString("latin1").split("\n")[0]);
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

/** Processes whose parent is `pid` (/proc/<n>/stat field 4). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
