// Clone a primary with pg_basebackup into a NEW directory (the caller swaps it in with
// swapDataDir). A failed or timed-out clone removes only the directory it created; the old data
// directory is moved aside by the swap, and removeOldCopies removes those beyond the newest few.
import { lstat, readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Logger } from "../log.ts";
import { pgTool, type PgBins } from "./binaries.ts";
import { runTool, stderrTail } from "./exec.ts";
import { ensureDir, exists, inParent, removeTree } from "./fsutil.ts";
import { asideName, type AsideEntry, oldCopiesBeyond, removingName } from "./old-copies.ts";
import { buildConninfo } from "./pgconf.ts";
import { lookupOsUser } from "./users.ts";

export interface BasebackupProgress { doneKb: number; totalKb: number; percent: number }

export interface BasebackupOptions {
  bins: PgBins;
  osUser: string;
  log: Logger;
  host: string;
  port: number;
  user: string;
  /** libpq passfile (readable by os_user, outside any data directory: base backups copy the data directory). Never PGPASSWORD. */
  passfile?: string;
  /** New, missing or empty directory. */
  target: string;
  /** Physical slot on the primary to stream WAL through during the copy (created by the primary). */
  slot?: string;
  /** Let pg_basebackup create the slot (-C). Default false. */
  createSlot?: boolean;
  applicationName?: string;
  /** libpq TLS keywords (NodeTls.client(): verify-full, sslrootcert, channel_binding); absent: plain. */
  tls?: Readonly<Record<string, string>>;
  timeoutMs: number;
  maxRateKbPerSec?: number;
  /** Skip the final fsync of the copy (tests only: a crash could leave a corrupt standby). */
  noSync?: boolean;
  onProgress?: (p: BasebackupProgress) => void;
  /**
   * Asked once, with pg_basebackup's estimate of the source's size (its first progress line, about
   * a second into the copy): a reason to stop (no room), or null to go on. A stopped copy fails with
   * that reason (BasebackupError.noRoom) and its target is removed.
   */
  room?: (estimateBytes: number) => string | null;
  /**
   * Stopped when the copy shows no progress for this long (a phase line of -v, or a -P line whose kB
   * moved; the start, with the source's checkpoint and size estimate, counts too), until the copy is
   * done (its "write-ahead log end point" line): the WAL it then waits for and the final fsync are
   * bounded by timeoutMs alone.
   */
  stallMs?: number;
  /**
   * Stops the copy (a vote needs this node: src/agent/pg/rebuild.ts). The unfinished target is left
   * for the next clone's preparation to remove (removeUnfinishedClone): removing a large tree here
   * would hold the caller for as long.
   */
  signal?: AbortSignal;
}

export class BasebackupError extends Error {
  override readonly name = "BasebackupError";
  constructor(message: string, readonly stderr: string, readonly timedOut: boolean, readonly noRoom = false) {
    super(message);
  }
}

/**
 * pg_basebackup writes a tablespace to the absolute path it has on the source, which must be empty
 * (and creatable) here: on a node that held data it is not, on a fresh host its parent may not be
 * the PostgreSQL user's, and every clone fails the same way. Says so, naming the docs, when a
 * directory other than the clone's own was the problem.
 */
export function tablespaceHint(stderr: string, target: string): string {
  const m = /directory "([^"]+)" exists but is not empty|could not (?:create|access) directory "([^"]+)"/.exec(stderr);
  const dir = m?.[1] ?? m?.[2];
  if (!dir || dir === target || dir.startsWith(`${target}/`)) return "";
  return ` (${dir} is a tablespace's location on the source: pgherd does not support tablespaces, and a clone needs that directory empty, or creatable by the PostgreSQL user, on this host; docs/operations.md "Tablespaces")`;
}

/** Parses a -P line such as "  25762/25762 kB (100%), 1/1 tablespace". */
export function parseProgress(line: string): BasebackupProgress | null {
  const m = /(\d+)\/(\d+) kB \((\d+)%\)/.exec(line);
  return m ? { doneKb: Number(m[1]), totalKb: Number(m[2]), percent: Number(m[3]) } : null;
}

export async function basebackup(o: BasebackupOptions): Promise<{ ms: number }> {
  const existing = await readdir(o.target).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? null : Promise.reject(e)));
  if (existing && existing.length > 0) throw new BasebackupError(`clone target ${o.target} is not empty`, "", false);
  if (o.slot !== undefined && !/^[a-z0-9_]{1,63}$/.test(o.slot)) throw new BasebackupError(`invalid slot name ${JSON.stringify(o.slot)}`, "", false);
  const u = await lookupOsUser(o.osUser);
  await ensureDir(o.target, 0o700, { uid: u.uid, gid: u.gid });

  // Host/port/user via conninfo keeps application_name (shown in pg_stat_replication during the copy).
  const conninfo = buildConninfo({ host: o.host, port: o.port, user: o.user, applicationName: o.applicationName ?? "pgherd_clone", connectTimeoutSec: 10, extra: o.tls });
  const env: Record<string, string> = o.passfile ? { PGPASSFILE: o.passfile } : {};
  const args = [
    // -v: its phases (the end of the copy, "write-ahead log end point", ends the stall watch).
    "-d", conninfo, "-D", o.target, "-X", "stream", "-c", "fast", "-P", "-v", "-w", "--no-password",
    ...(o.slot ? [`--slot=${o.slot}`] : []), ...(o.slot && o.createSlot ? ["-C"] : []),
    ...(o.maxRateKbPerSec ? [`--max-rate=${o.maxRateKbPerSec}k`] : []), ...(o.noSync ? ["--no-sync"] : []),
  ];
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  o.signal?.addEventListener("abort", interrupt, { once: true });
  if (o.signal?.aborted) stop.abort();
  let refused: string | null = null;
  let asked = false;
  let stalled = false;
  let copied = false;
  let lastKb = -1;
  let stall: ReturnType<typeof setTimeout> | undefined;
  const watch = (go: boolean) => {
    clearTimeout(stall);
    if (go && o.stallMs) stall = setTimeout(() => { stalled = true; stop.abort(); }, o.stallMs);
  };
  watch(true);
  const res = await runTool({
    bin: pgTool(o.bins, "pg_basebackup"), args, env, user: o.osUser, timeoutMs: o.timeoutMs, log: o.log, signal: stop.signal,
    onStderrLine: (l) => {
      const p = parseProgress(l);
      if (/write-ahead log end point/.test(l)) copied = true;
      // Signs of progress: a phase line, or a progress line whose kB moved; none once the copy is done.
      if (!p || p.doneKb !== lastKb) watch(!copied);
      if (!p) return;
      lastKb = p.doneKb;
      if (o.room && !asked && p.totalKb > 0) {
        asked = true;
        refused = o.room(p.totalKb * 1024);
        if (refused) return stop.abort();
      }
      o.onProgress?.(p);
    },
  }).catch(async (e: Error) => {
    if (!o.signal?.aborted) await removeTree(o.target);
    throw e;
  }).finally(() => {
    watch(false);
    o.signal?.removeEventListener("abort", interrupt);
  });
  if (!refused && !stalled && res.code === 0 && !res.timedOut) return { ms: res.ms };
  if (o.signal?.aborted) throw new BasebackupError(`pg_basebackup from ${o.host}:${o.port} stopped: ${String(o.signal.reason ?? "interrupted")}`, res.stderr, false);
  await removeTree(o.target);
  if (refused) throw new BasebackupError(refused, res.stderr, false, true);
  if (stalled) throw new BasebackupError(`pg_basebackup from ${o.host}:${o.port} made no progress for ${Math.round((o.stallMs ?? 0) / 1000)} s: stopped (the source or the network stalls)`, res.stderr, true);
  const why = res.timedOut ? `timed out after ${o.timeoutMs} ms` : stderrTail(res.stderr.split("\n").filter((l) => !parseProgress(l)).join("\n")) || `exit ${res.code}`;
  throw new BasebackupError(`pg_basebackup from ${o.host}:${o.port} failed: ${why}${tablespaceHint(res.stderr, o.target)}`, res.stderr, res.timedOut);
}

/** What a base backup leaves out of a data directory at its top level (pg_basebackup's exclusions). */
const TOP_NOT_COPIED: ReadonlySet<string> = new Set(["pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans", "postmaster.pid", "postmaster.opts"]);

/**
 * Whether a base backup leaves `name` out (for treeBytes: how much of this node's own data directory a
 * clone of the same database copies): the top-level directories above, temporary files, the relcache
 * init file, and an unlogged relation's forks but its init fork (a file `<relfilenode>_init` beside).
 */
export function notCopied(name: string, siblings: ReadonlySet<string>, depth: number): boolean {
  if (depth === 0 && TOP_NOT_COPIED.has(name)) return true;
  if (name.startsWith("pgsql_tmp") || name === "pg_internal.init") return true;
  const rel = /^(\d+)(?:_(?:fsm|vm)|\.\d+)?$/.exec(name);
  return rel !== null && siblings.has(`${rel[1]}_init`);
}

/** A sibling path for a new clone (same filesystem, so the swap is a rename). */
export function cloneDirFor(dataDir: string): string {
  return join(dirname(dataDir), `${basename(dataDir)}.pgherd-clone`);
}

/**
 * Why a clone cannot be swapped in for `dataDir` by rename, or null: a symbolic link would be
 * replaced by the clone (the directory it points to left behind, never pruned), and a mount point
 * cannot be renamed (the clone, made beside it, would lie on the parent's file system anyway).
 */
export async function swapProblem(dataDir: string, mountinfo = "/proc/self/mountinfo"): Promise<string | null> {
  let st;
  try {
    st = await lstat(dataDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  if (st.isSymbolicLink()) {
    return `postgres.data_dir ${dataDir} is a symbolic link: a clone is made beside it and renamed into its place, which would replace the link and leave the directory it points to behind; set data_dir to that directory itself`;
  }
  const mounted = st.dev !== (await stat(dirname(dataDir))).dev || (await mountPoints(mountinfo)).has(await realpath(dataDir));
  if (mounted) {
    return `postgres.data_dir ${dataDir} is a mount point: a clone is made beside it, on the parent's file system, and a mount point cannot be renamed; set data_dir to a directory inside the mount (as initdb advises)`;
  }
  return null;
}

/** Mount points from mountinfo (field 5, octal escapes undone); empty when unreadable. */
async function mountPoints(path: string): Promise<Set<string>> {
  const text = await readFile(path, "utf8").catch(() => "");
  return new Set(text.split("\n").map((l) => l.split(" ")[4]).filter((m): m is string => !!m).map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))));
}

/**
 * Move `dataDir` aside (if it exists) to `<dataDir>.pgherd-old-<stamp>` and `fresh` into its
 * place. Returns the old data's new path (the caller decides when to delete it), or null.
 */
export async function swapDataDir(fresh: string, dataDir: string, now = new Date()): Promise<string | null> {
  if (dirname(fresh) !== dirname(dataDir)) throw new Error(`${fresh} and ${dataDir} must be in the same directory`);
  // Renames relative to the parent opened without following links (it may be os_user's directory).
  return inParent(dataDir, async (parent, name) => {
    const aside = asideName(name, now);
    let moved: string | null = null;
    try {
      await parent.rename(name, aside);
      moved = join(dirname(dataDir), aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    await parent.rename(basename(fresh), name);
    await parent.sync();
    return moved;
  });
}

/**
 * Remove the data directories moved aside for `dataDir` beyond the newest `keep` (old-copies.ts;
 * `newest`: the path this swap moved aside, kept first; `sparePrimaries`: a former primary's copy
 * stays), one after the other: each renamed to its removing name, then removed without following a
 * link (removeTree). Returns the paths removed.
 */
export async function removeOldCopies(dataDir: string, keep: number, log: Logger, o: { newest?: string | null; sparePrimaries?: boolean } = {}): Promise<string[]> {
  const parent = dirname(dataDir);
  const base = basename(dataDir);
  const listed = await readdir(parent).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? [] : Promise.reject(e)));
  const entries: AsideEntry[] = [];
  for (const name of listed.filter((n) => n.startsWith(`${base}.pgherd-`))) {
    // lstat, not the directory entry's type: some file systems do not record it, and a link is no copy.
    const st = await lstat(join(parent, name)).catch(() => null);
    if (!st) continue;
    const primary = o.sparePrimaries && st.isDirectory() ? !(await exists(join(parent, name, "standby.signal"))) : undefined;
    entries.push({ name, dir: st.isDirectory(), primary });
  }
  const removed: string[] = [];
  for (const name of oldCopiesBeyond(entries, base, keep, o.newest ? basename(o.newest) : null, { sparePrimaries: o.sparePrimaries })) {
    const t0 = performance.now();
    // A copy is renamed first; one left half removed already has its removing name.
    const gone = removingName(name);
    if (gone !== name) await inParent(join(parent, name), (d, n) => d.rename(n, gone));
    await removeTree(join(parent, gone));
    log.info(`removed previous data directory ${join(parent, name)} in ${Math.round(performance.now() - t0)} ms`);
    removed.push(join(parent, name));
  }
  return removed;
}

/** An unfinished clone an earlier attempt left at `target` (the agent stopped during it): removed, or no clone could start. */
export async function removeUnfinishedClone(target: string, log: Logger): Promise<void> {
  if (!(await exists(target))) return;
  log.warn(`removing ${target}: an unfinished clone of an earlier attempt`);
  await removeTree(target);
}
