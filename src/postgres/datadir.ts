// Inspect a data directory without starting anything: is it empty, which major wrote it, which
// cluster (system identifier) and timeline it belongs to, its shutdown state, and whether a
// live postmaster already serves it (so the agent ADOPTS it instead of starting a second one).
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { pgTool, type PgBins } from "./binaries.ts";
import { runTool } from "./exec.ts";
import { chownTree, ensureDir, readFileSafe } from "./fsutil.ts";
import { lookupOsUser, isRoot } from "./users.ts";

export interface ControlData {
  systemIdentifier: string;
  /** "in production", "in archive recovery", "shut down", "shut down in recovery", "in crash recovery", ... */
  state: string;
  /** Timeline of the latest checkpoint (may lag the real one right after a promotion). */
  timeline: number;
  checkpointLsn: string;
  minRecoveryEndLsn: string;
  checksums: boolean;
  walLevel: string;
  raw: Readonly<Record<string, string>>;
}

export interface PostmasterPid {
  pid: number;
  dataDir: string;
  port: number | null;
  socketDir: string | null;
  listenAddresses: string | null;
  /** "starting" | "ready" | "standby" | "stopping" (PG ≥ 10), null if not written yet. */
  status: string | null;
  /** The pid exists (kill 0 succeeds or EPERM). */
  alive: boolean;
  /** The live pid's cwd is this data dir (Linux /proc); null when that cannot be checked. */
  servesThisDir: boolean | null;
}

export interface DataDirInfo {
  path: string;
  exists: boolean;
  /** Missing or no entries (lost+found is ignored: a data dir on its own mount). */
  empty: boolean;
  /** Major version from PG_VERSION, null if absent or not read (control: false). */
  pgVersion: number | null;
  control: ControlData | null;
  /** Why control is null although PG_VERSION exists. */
  controlError: string | null;
  postmaster: PostmasterPid | null;
  /** A postmaster is alive for this dir: adopt it, do not start another. */
  running: boolean;
}

export interface InspectOptions {
  bins: PgBins; osUser: string; log: Logger;
  /** Run pg_controldata (a process) for `control`; default true. A caller about to query a running server can skip it. */
  control?: boolean;
}

export async function inspectDataDir(path: string, o: InspectOptions): Promise<DataDirInfo> {
  // Synchronous calls here and in readPostmasterPid (every monitoring round): an async one costs a
  // trip through Bun's thread pool (docs/design.md, Footprint).
  let entries: string[] | null;
  try {
    entries = readdirSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    entries = null;
  }
  const base: DataDirInfo = {
    path, exists: entries !== null, empty: true, pgVersion: null, control: null, controlError: null, postmaster: null, running: false,
  };
  if (entries === null) return base;
  base.empty = entries.filter((n) => n !== "lost+found").length === 0;
  // PG_VERSION only says whether pg_controldata can run: not read each round (control: false).
  const pv = o.control === false ? null : await readFileSafe(join(path, "PG_VERSION")).catch(() => null);
  if (pv !== null) {
    const v = Number.parseFloat(pv.trim());
    base.pgVersion = Number.isFinite(v) ? v : null;
  }
  if (pv !== null) {
    const res = await runTool({
      bin: pgTool(o.bins, "pg_controldata"), args: ["-D", path], user: o.osUser, timeoutMs: 15_000, log: o.log, quiet: true,
    }).catch((e: Error) => e);
    if (res instanceof Error) base.controlError = res.message;
    else if (res.code !== 0) base.controlError = `pg_controldata exited ${res.code}: ${res.stderr.trim()}`;
    else {
      const parsed = parseControlData(res.stdout);
      if (typeof parsed === "string") base.controlError = parsed;
      else base.control = parsed;
    }
  }
  base.postmaster = await readPostmasterPid(path);
  base.running = base.postmaster !== null && base.postmaster.alive && base.postmaster.servesThisDir !== false;
  return base;
}

/** Parse `pg_controldata` output (run with LC_ALL=C); returns an error string when key fields are missing. */
export function parseControlData(text: string): ControlData | string {
  const raw: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) raw[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  const sysid = raw["Database system identifier"];
  const state = raw["Database cluster state"];
  const tli = Number(raw["Latest checkpoint's TimeLineID"]);
  if (!sysid || !/^\d+$/.test(sysid) || !state || !Number.isInteger(tli)) {
    return "pg_controldata output lacks system identifier, cluster state or TimeLineID";
  }
  return {
    systemIdentifier: sysid,
    state,
    timeline: tli,
    checkpointLsn: raw["Latest checkpoint location"] ?? "0/0",
    minRecoveryEndLsn: raw["Minimum recovery ending location"] ?? "0/0",
    checksums: (raw["Data page checksum version"] ?? "0") !== "0",
    walLevel: raw["wal_level setting"] ?? "",
    raw,
  };
}

/** Parse postmaster.pid (line 1 pid, 2 data dir, 3 start time, 4 port, 5 socket dir, 6 listen addr, 8 status). */
export function parsePostmasterPid(text: string): Omit<PostmasterPid, "alive" | "servesThisDir"> | null {
  const l = text.split("\n");
  const pid = Number(l[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const port = Number(l[3]);
  const opt = (s: string | undefined) => (s && s.trim() ? s.trim() : null);
  return {
    pid, dataDir: (l[1] ?? "").trim(), port: Number.isInteger(port) && port > 0 ? port : null,
    socketDir: opt(l[4]), listenAddresses: opt(l[5]), status: opt(l[7]),
  };
}

export async function readPostmasterPid(dataDir: string): Promise<PostmasterPid | null> {
  const text = await readFileSafe(join(dataDir, "postmaster.pid")).catch(() => null);
  if (text === null) return null;
  const p = parsePostmasterPid(text);
  if (!p) return null;
  const alive = pidAlive(p.pid);
  let serves: boolean | null = null;
  if (alive) {
    // A stale pid file may name a pid reused by an unrelated process; the postmaster chdir()s into its data dir.
    const orNull = (f: () => string): string | null => { try { return f(); } catch { return null; } };
    const cwd = orNull(() => readlinkSync(`/proc/${p.pid}/cwd`));
    const want = orNull(() => realpathSync(dataDir));
    if (cwd !== null && want !== null) serves = cwd === want;
  }
  return { ...p, alive, servesThisDir: serves };
}

/** The pid exists and is not a zombie (a dead child waiting to be reaped, possibly by a slow init). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return !existsSync("/proc/self/stat"); // with /proc: it just exited; without: trust kill(0)
  }
}

/**
 * When root: make the data dir owned by os_user with mode 0700 (0750 is kept: initdb -g group access).
 * The whole tree is walked only if the top level or PG_VERSION has the wrong owner (walking a large
 * cluster on every start would be slow). Returns the number of entries whose owner changed.
 */
export async function fixDataDirOwnership(dataDir: string, osUser: string, log: Logger): Promise<number> {
  const st = await lstat(dataDir);
  if (!st.isDirectory()) throw new Error(`${dataDir} is not a directory`);
  const mode = (st.mode & 0o777) === 0o750 ? 0o750 : 0o700;
  if (!isRoot()) {
    await ensureDir(dataDir, mode);
    return 0;
  }
  const u = await lookupOsUser(osUser);
  const owner = { uid: u.uid, gid: u.gid };
  const pv = await lstat(join(dataDir, "PG_VERSION")).catch(() => null);
  const wrong = (s: { uid: number; gid: number }) => s.uid !== u.uid || s.gid !== u.gid;
  let changed = 0;
  if (wrong(st) || (pv && wrong(pv))) {
    changed = await chownTree(dataDir, owner);
    log.warn(`data dir ${dataDir}: changed owner of ${changed} entries to ${osUser}`);
  }
  await ensureDir(dataDir, mode, owner);
  return changed;
}
