// Server lifecycle through initdb and pg_ctl, always as os_user. Settings live in pgherd.conf,
// so no -o options are passed. Failures become a PgCtlError whose `kind` lets the caller choose a
// reaction (adopt, back off, report) rather than retrying blindly.
import { lstatSync, readdirSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { pgTool, type PgBins } from "./binaries.ts";
import { inspectDataDir, pidAlive, readPostmasterPid } from "./datadir.ts";
import { runTool, runToolOk, stderrTail, type ToolResult } from "./exec.ts";
import { ensureDir, exists, prepareOwnedFile, readFileSafe, writeFileAtomic, type Owner } from "./fsutil.ts";
import { stoppedProcesses } from "./liveness-obs.ts";
import { readyInPidFile, REAP_WAIT_S, reapedWithin, stoppedInPidFile } from "./pid-file-waits.ts";
import { isServerOf, killServer, leftoverProcesses, procLinksUnreadable, readPidFile } from "./orphans.ts";
import { lookupOsUser, osUidOf } from "./users.ts";

/** An immediate stop waits this long for the postmaster to react to SIGQUIT before SIGKILL. */
const IMMEDIATE_GRACE_S = 2;

export interface PgNode {
  bins: PgBins;
  dataDir: string;
  osUser: string;
  log: Logger;
}

export type PgCtlErrorKind =
  | "port-in-use" | "already-running" | "start-timeout" | "start-failed" | "stop-failed" | "status-failed" | "not-empty"
  | "initdb-failed" | "reload-refused";

export class PgCtlError extends Error {
  override readonly name = "PgCtlError";
  constructor(readonly kind: PgCtlErrorKind, message: string, readonly detail = "") {
    super(message);
  }
}

export interface InitdbOptions {
  superuser: string;
  /** Default: --no-locale (C collation: identical sort order on every host, no glibc collation drift). */
  locale?: string;
  encoding?: string;
  /** Skip fsync (tests only). */
  noSync?: boolean;
  timeoutMs?: number;
}

const HBA_HEADER = "# pg_hba.conf: pgherd inserts its managed block at the top. Add your own rules below it.\n";
const IDENT_HEADER = "# pg_ident.conf: pgherd inserts its managed block at the top.\n";

/**
 * initdb with data checksums (pg_rewind and corruption detection), peer auth for local and
 * scram for TCP. The generated pg_hba/pg_ident (which allow every local user and any password
 * login from 127.0.0.1) are emptied: until writeManagedConfig runs, nothing can connect.
 */
export async function initdb(n: PgNode, o: InitdbOptions): Promise<void> {
  const info = await inspectDataDir(n.dataDir, n);
  if (!info.empty) throw new PgCtlError("not-empty", `initdb: ${n.dataDir} is not empty; refusing to overwrite it`);
  const u = await lookupOsUser(n.osUser);
  await ensureDir(n.dataDir, 0o700, { uid: u.uid, gid: u.gid });
  const args = [
    "-D", n.dataDir, "--data-checksums", "--auth-local=peer", "--auth-host=scram-sha-256",
    "-U", o.superuser, `--encoding=${o.encoding ?? "UTF8"}`,
    ...(o.locale ? [`--locale=${o.locale}`] : ["--no-locale"]),
    ...(o.noSync ? ["--no-sync"] : []),
    ...(n.bins.version >= 14 ? ["--no-instructions"] : []),
  ];
  const res = await runTool({ bin: pgTool(n.bins, "initdb"), args, user: n.osUser, timeoutMs: o.timeoutMs ?? 180_000, log: n.log });
  if (res.code !== 0 || res.timedOut) {
    throw new PgCtlError("initdb-failed", `initdb of ${n.dataDir} failed: ${stderrTail(res.stderr) || `exit ${res.code}`}`, res.stderr);
  }
  const owner = { uid: u.uid, gid: u.gid };
  await writeFileAtomic(join(n.dataDir, "pg_hba.conf"), HBA_HEADER, { mode: 0o600, owner });
  await writeFileAtomic(join(n.dataDir, "pg_ident.conf"), IDENT_HEADER, { mode: 0o600, owner });
}

export interface StartOptions {
  /** Server log for output before/without logging_collector; must be writable by os_user. */
  logFile: string;
  /** The log collector's directory (log_directory), when logging_collector is on: depending on the
   * version, a start error (a port in use) comes after the collector took over the output. */
  collectorDir?: string;
  timeoutSec?: number;
  /** Whole-number settings for this start only (`pg_ctl -o "-c name=value"`): above every file. */
  settings?: Readonly<Record<string, number>>;
  /** Called right before pg_ctl runs; what it throws ends the start there (a lease lost meanwhile: Fencer.asPrimary's still). */
  mayStart?: () => void;
}

/** pg_ctl's -o for `settings` (names checked, whole numbers only: pg_ctl hands -o to a shell). */
function startSettings(settings: Readonly<Record<string, number>> | undefined): string[] {
  const entries = Object.entries(settings ?? {});
  for (const [k, v] of entries) if (!/^[a-z_]+$/.test(k) || !Number.isSafeInteger(v) || v < 0) throw new PgCtlError("start-failed", `start setting ${k} = ${v}: not a setting name and a whole number`);
  return entries.length ? ["-o", entries.map(([k, v]) => `-c ${k}=${v}`).join(" ")] : [];
}

/** pg_ctl start -w. Throws PgCtlError: already-running (adopt it), port-in-use, start-timeout (may still come up), start-failed. */
export async function start(n: PgNode, o: StartOptions): Promise<void> {
  const pm = await readPostmasterPid(n.dataDir);
  if (pm?.alive && pm.servesThisDir !== false) {
    throw new PgCtlError("already-running", `a postmaster (pid ${pm.pid}, port ${pm.port}) already serves ${n.dataDir}: adopt it`);
  }
  const u = await lookupOsUser(n.osUser);
  const owner = { uid: u.uid, gid: u.gid };
  // pg_ctl opens it as os_user; we only create it for os_user (never through a link) and note its size.
  const offset = await prepareOwnedFile(o.logFile, 0o600, owner);
  const collectorBefore = collectorSizes(o.collectorDir);
  const began = Date.now();
  const t = o.timeoutSec ?? 60;
  o.mayStart?.();
  const tool = runTool({
    bin: pgTool(n.bins, "pg_ctl"),
    args: ["start", "-D", n.dataDir, "-w", "-t", String(t), "-s", "-l", o.logFile, ...startSettings(o.settings)],
    user: n.osUser, timeoutMs: (t + 15) * 1000, log: n.log,
  });
  // pg_ctl -w looks at postmaster.pid every 100 ms; the server says "ready" there the moment it
  // accepts connections: return then (a crashed primary restarts up to 100 ms sooner). pg_ctl
  // finishes on its own a moment later.
  const watch = { on: true };
  const first = await Promise.race([tool, readyInPidFile(n.dataDir, began, watch)]);
  watch.on = false;
  if (first === "ready") {
    tool.catch(() => undefined);
    return;
  }
  const res = first;
  if (res.code === 0 && !res.timedOut) return;
  const early = await readFrom(o.logFile, offset, owner);
  // A start that timed out may still be running: nothing to wait for.
  const collected = res.timedOut ? await collectorTail(o.collectorDir, collectorBefore, began, owner) : await collectorTailSettled(n, o.collectorDir, collectorBefore, began, owner, early);
  const err = startError(n, res, `${early}\n${collected}`.trim(), t);
  n.log.warn(err.message);
  throw err;
}

/** Classify a failed pg_ctl start from its stderr and the server log it wrote (LC_ALL=C: English). */
function startError(n: PgNode, res: ToolResult, serverLog: string, t: number): PgCtlError {
  const both = `${res.stderr}\n${serverLog}`;
  if (/Address already in use/i.test(both)) {
    const port = /already running on port (\d+)/.exec(both)?.[1] ?? /\.s\.PGSQL\.(\d+)/.exec(both)?.[1] ?? "?";
    const addr = /could not bind .*?address "([^"]*)": Address already in use/i.exec(both)?.[1];
    return new PgCtlError("port-in-use", `cannot start ${n.dataDir}: port ${port} is already in use${addr ? ` on ${addr}` : ""}`, serverLog);
  }
  if (/lock file .* already exists/.test(both)) {
    return new PgCtlError("already-running", `cannot start ${n.dataDir}: another server holds its lock file`, serverLog);
  }
  if (res.timedOut || /did not start in time/.test(res.stderr)) {
    return new PgCtlError("start-timeout", `server in ${n.dataDir} not ready after ${t} s; it may still be starting (check status)`, serverLog);
  }
  const why = stderrTail(serverLog, 4) || stderrTail(res.stderr) || `pg_ctl exit ${res.code}`;
  return new PgCtlError("start-failed", `cannot start ${n.dataDir}: ${why}`, serverLog);
}

export type StopMode = "smart" | "fast" | "immediate";

/**
 * pg_ctl stop, waiting as -w would (stoppedInPidFile). Returns false when no server was running (idempotent). An immediate stop (a
 * fence) does not wait for a server that cannot react: stopped processes (SIGSTOP) are killed at
 * once, and a postmaster still there IMMEDIATE_GRACE_S after SIGQUIT is killed with its children.
 */
export async function stop(n: PgNode, mode: StopMode = "fast", timeoutSec = 60): Promise<boolean> {
  const pidFile = join(n.dataDir, "postmaster.pid");
  if (!(await exists(pidFile))) return false;
  const uid = await osUidOf(n.osUser);
  // pg_ctl signals whatever process has the pid the file names. Left by a crash, that pid may
  // since belong to another process of the OS user (another cluster's server): pg_ctl is run only
  // for this data directory's server. (A file without a usable pid, a single-user server's
  // included, is left to pg_ctl, which says what it is.)
  const pid = readPidFile(pidFile);
  if (pid !== null && !isServerOf(pid, n.dataDir, uid)) {
    // Not known to be another process: the links of a live one cannot be read (root without
    // CAP_SYS_PTRACE, a security module). Nothing is signalled, and the stop is not taken as done.
    const unreadable = pidAlive(pid) ? procLinksUnreadable(pid, uid) : null;
    if (unreadable) throw new PgCtlError("stop-failed", `stop of ${n.dataDir}: pid ${pid} (postmaster.pid) cannot be checked (${unreadable}): not signalled`);
    // The postmaster is gone (a zombie included): an immediate stop (a fence) still ends the
    // processes it started that still run there; otherwise nothing runs to stop, as pg_ctl said.
    if (mode === "immediate") {
      const left = leftoverProcesses(n.dataDir, uid).length;
      if (left > 0) return kill(n, uid, `its postmaster (pid ${pid} in postmaster.pid) is gone, ${left} of its processes still run`);
    }
    // One that exited a moment ago (killed by a fence) may still be a zombie, its pid in use until
    // its parent (init, mostly) reaps it, and PostgreSQL refuses a lock file naming a pid in use (a
    // start; pg_rewind's single-user crash recovery): a stop that is followed by one waits for that,
    // a few seconds at most (the caller's next try comes after its backoff).
    const wait = Math.min(timeoutSec, REAP_WAIT_S);
    if (mode !== "immediate" && !(await reapedWithin(pid, wait * 1000))) {
      throw new PgCtlError("stop-failed", `pg_ctl stop -m ${mode} of ${n.dataDir}: its postmaster (pid ${pid}) exited but was not reaped within ${wait} s`);
    }
    return false;
  }
  if (mode === "immediate") {
    const frozen = stoppedProcesses(n.dataDir, uid);
    if (frozen) return kill(n, uid, `${frozen}: it cannot react to SIGQUIT`);
  }
  const t = mode === "immediate" ? Math.min(timeoutSec, IMMEDIATE_GRACE_S) : timeoutSec;
  // pg_ctl only signals (-W); stoppedInPidFile waits as pg_ctl -w would, but looks every
  // STOP_POLL_MS instead of every 100 ms: a switchover's write outage includes this wait.
  const res = await runTool({
    bin: pgTool(n.bins, "pg_ctl"), args: ["stop", "-D", n.dataDir, "-m", mode, "-W", "-s"],
    user: n.osUser, timeoutMs: 15_000, log: n.log,
  });
  const signalled = res.code === 0 && !res.timedOut;
  if (signalled && (await stoppedInPidFile(n.dataDir, t * 1000))) return true;
  if (!(await status(n)).running) return false;
  if (mode === "immediate") return kill(n, uid, `no reaction to SIGQUIT within ${t} s`);
  const why = signalled ? `the server did not shut down within ${t} s` : stderrTail(res.stderr) || `exit ${res.code}`;
  throw new PgCtlError("stop-failed", `pg_ctl stop -m ${mode} of ${n.dataDir} failed: ${why}`);
}

/** SIGKILL the server and wait (2 s at most) until none of its processes is left. */
async function kill(n: PgNode, uid: number, why: string): Promise<boolean> {
  const count = killServer(n.dataDir, uid);
  n.log.warn(`PostgreSQL in ${n.dataDir}: ${why}; killed ${count} process(es) with SIGKILL`);
  for (let i = 0; i < 40 && leftoverProcesses(n.dataDir, uid).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  const left = leftoverProcesses(n.dataDir, uid).length;
  if (left > 0) throw new PgCtlError("stop-failed", `PostgreSQL in ${n.dataDir}: ${left} process(es) still alive after SIGKILL`);
  return count > 0;
}

export async function restart(n: PgNode, o: StartOptions & { mode?: StopMode }): Promise<void> {
  await stop(n, o.mode ?? "fast", o.timeoutSec);
  await start(n, o);
}

/**
 * Re-reads pgherd.conf, pg_hba.conf and pg_ident.conf: a SIGHUP to the postmaster, as `pg_ctl
 * reload` sends it, from this process when postmaster.pid names a process of this data directory's
 * server run by the OS user (isServerOf: a pid the OS user wrote is checked before it is signalled,
 * and no other user's server is, through a link put in the data directory's place), which spares the
 * start of pg_ctl (15–40 ms in the failover bench, on a standby's reconnection and a new primary's
 * synchronous names). A live process that is none is refused (pg_ctl would signal it unchecked).
 * Otherwise pg_ctl reload, as the OS user, and its error: no postmaster.pid, a pid that has exited,
 * a single-user server, a signal not permitted.
 */
export async function reload(n: PgNode): Promise<void> {
  const pid = readPidFile(join(n.dataDir, "postmaster.pid"));
  if (pid !== null && isServerOf(pid, n.dataDir, await osUidOf(n.osUser))) {
    try {
      process.kill(pid, "SIGHUP");
      return;
    } catch {
      // gone meanwhile, or not this process's to signal (root without CAP_KILL): pg_ctl says which
    }
  } else if (pid !== null && pidAlive(pid)) {
    throw new PgCtlError("reload-refused", `reload of ${n.dataDir}: postmaster.pid names pid ${pid}, a live process that is not a PostgreSQL server of this data directory run by postgres.os_user (${n.osUser}): not signalled`);
  }
  await runToolOk({ bin: pgTool(n.bins, "pg_ctl"), args: ["reload", "-D", n.dataDir, "-s"], user: n.osUser, timeoutMs: 15_000, log: n.log });
}

export interface ServerStatus { running: boolean; pid: number | null }

/** pg_ctl status: exit 0 running, 3 not running, 4 no accessible data directory. */
export async function status(n: PgNode): Promise<ServerStatus> {
  const res = await runTool({
    bin: pgTool(n.bins, "pg_ctl"), args: ["status", "-D", n.dataDir], user: n.osUser, timeoutMs: 15_000, log: n.log, quiet: true,
  });
  if (res.code === 0) return { running: true, pid: Number(/PID: (\d+)/.exec(res.stdout)?.[1] ?? NaN) || null };
  if (res.code === 3 || res.code === 4) return { running: false, pid: null };
  throw new PgCtlError("status-failed", `pg_ctl status of ${n.dataDir}: exit ${res.code}: ${stderrTail(res.stderr)}`);
}

/** Fallback promotion through the promote signal file (use promote() in promote.ts first). */
export async function pgCtlPromote(n: PgNode, timeoutSec = 60): Promise<void> {
  await runToolOk({
    bin: pgTool(n.bins, "pg_ctl"), args: ["promote", "-D", n.dataDir, "-w", "-t", String(timeoutSec), "-s"],
    user: n.osUser, timeoutMs: (timeoutSec + 15) * 1000, log: n.log,
  });
}

/** How long a failed start waits for the log collector to exit (it writes the server's last words, then exits). */
const COLLECTOR_SETTLE_MS = 2000;

/** Each file's size in the log collector's directory before a start: what the start wrote comes after. */
function collectorSizes(dir: string | undefined): Map<string, number> {
  const sizes = new Map<string, number>();
  if (!dir) return sizes;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isFile()) continue;
      const st = lstatSync(join(dir, e.name));
      if (st.isFile()) sizes.set(e.name, st.size);
    }
  } catch {
    // none yet, or unreadable: read from the start
  }
  return sizes;
}

/**
 * What the log collector wrote for this start: with `logging_collector` on, PostgreSQL redirects its
 * output before it binds its ports, so the reason a start failed (a port in use, a bad setting) is in
 * the collector's file, written by the syslogger, which drains its pipe after the postmaster is gone
 * and then exits (CI107: the file read at once lacked the reason). So when the -l file (`early`) says
 * the output was redirected, wait until no process of the data directory is left, at most
 * COLLECTOR_SETTLE_MS, then read only what the collector's newest file gained since the start (the
 * file of the day holds every earlier run's lines too).
 */
async function collectorTailSettled(n: PgNode, dir: string | undefined, before: Map<string, number>, since: number, owner: Owner, early: string): Promise<string> {
  if (/redirecting log output to logging collector/.test(early)) {
    const until = performance.now() + COLLECTOR_SETTLE_MS;
    const uid = await osUidOf(n.osUser);
    while (leftoverProcesses(n.dataDir, uid).length > 0 && performance.now() < until) await Bun.sleep(50);
  }
  return collectorTail(dir, before, since, owner);
}

/** The end (16 kB) of what the log collector's newest file in `dir` gained since `before`; "" when none. Links are not followed. */
async function collectorTail(dir: string | undefined, before: Map<string, number>, since: number, owner: Owner): Promise<string> {
  if (!dir) return "";
  let newest: { name: string; mtime: number; size: number } | null = null;
  try {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (!e.isFile()) continue;
      const st = await lstat(join(dir, e.name));
      if (st.isFile() && st.mtimeMs >= since - 1000 && (!newest || st.mtimeMs > newest.mtime)) newest = { name: e.name, mtime: st.mtimeMs, size: st.size };
    }
  } catch {
    return "";
  }
  if (!newest) return "";
  const from = before.get(newest.name) ?? 0;
  return readFrom(join(dir, newest.name), Math.max(from > newest.size ? 0 : from, newest.size - 16 * 1024), owner);
}

/** Where the server's log ends now: what it writes later is read by serverLogSince. */
export interface ServerLogMark { logFile: string; offset: number; collectorDir?: string; sizes: Map<string, number>; at: number }

export async function serverLogMark(logFile: string, collectorDir?: string): Promise<ServerLogMark> {
  const offset = (await lstat(logFile).catch(() => null))?.size ?? 0;
  return { logFile, offset, ...(collectorDir ? { collectorDir } : {}), sizes: collectorSizes(collectorDir), at: Date.now() };
}

/**
 * What the server logged since `m`: the -l file's and the log collector's newest file's (the end of
 * each). A server that ended on its own (a recovery that stopped short of its target,
 * backup/bootstrap.ts) says why there; a line an earlier run wrote is not read as this one's.
 */
export async function serverLogSince(n: PgNode, m: ServerLogMark): Promise<string> {
  const u = await lookupOsUser(n.osUser);
  const owner = { uid: u.uid, gid: u.gid };
  const size = (await lstat(m.logFile).catch(() => null))?.size ?? 0;
  const early = await readFrom(m.logFile, size < m.offset ? 0 : Math.max(m.offset, size - 16 * 1024), owner);
  return `${early}\n${await collectorTail(m.collectorDir, m.sizes, m.at, owner)}`;
}

/** What the server logged since `offset` (64 kB at most); never through a link, never a file os_user could not read. */
async function readFrom(path: string, offset: number, owner: Owner): Promise<string> {
  return (await readFileSafe(path, owner, offset, 64 * 1024).catch((e: Error) => `(server log unreadable: ${e.message})`)) ?? "";
}
