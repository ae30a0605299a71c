// What the liveness verdict (core/liveness.ts) is made of, gathered without ever waiting without
// bound: process states and WAL file times from /proc and the file system (no server involved),
// disk space (statfs), and a fresh connection that answers SELECT 1 and commits the agent's
// heartbeat (txid_current() in a read-write transaction, synchronous_commit = local) under a deadline.
import { lstatSync, readdirSync, readFileSync, statfsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Attempt, DiskUse, FsRoom } from "../core/liveness.ts";
import { childrenOf, isServerOf, readPidFile } from "./orphans.ts";
import { LocalSession } from "./local-session.ts";
import { DbTimeoutError, sqlState, withDeadline } from "./sql.ts";

/** The postmaster's pid when it is a server of `dataDir` run by `osUid`, the OS user (checked in /proc), else null. */
export function postmasterOf(dataDir: string, osUid: number): number | null {
  const pid = readPidFile(join(dataDir, "postmaster.pid"));
  return pid !== null && isServerOf(pid, dataDir, osUid) ? pid : null;
}

/** The server's processes in state T or t (stopped, traced): "" when none, else e.g. "postmaster 41 and 6 of 7 children stopped (T)". */
export function stoppedProcesses(dataDir: string, osUid: number): string {
  return stoppedStateOf(postmasterOf(dataDir, osUid)).text;
}

/**
 * The processes of postmaster `pm` in state T or t, from /proc alone (no file of the data
 * directory: a caller samples this often). `all`: the postmaster stopped and every child of it
 * stopped or exited (a zombie: a stopped postmaster cannot reap it, nor fork a new one), so
 * nothing of the server can answer.
 */
export function stoppedStateOf(pm: number | null): { text: string; all: boolean } {
  if (pm === null) return { text: "", all: false };
  const states = (listedChildren(pm) ?? childrenOf(pm)).map(procState);
  const n = states.filter((st) => /^[Tt]$/.test(st)).length;
  const main = /^[Tt]$/.test(procState(pm));
  if (!main && n === 0) return { text: "", all: false };
  return {
    text: `${main ? `postmaster ${pm}` : `postmaster ${pm} running`}${n > 0 ? ` and ${n} of ${states.length} children` : ""} stopped (state T)`,
    all: main && states.every((st) => /^[TtZX]?$/.test(st)),
  };
}

/**
 * The children the kernel lists for a single-threaded process (the postmaster) in
 * /proc/PID/task/PID/children: 7 µs, where childrenOf's scan of every /proc/N/stat took 1.4 ms of
 * CPU with ~100 processes on the host (twice a round on a primary). Null without that file
 * (CONFIG_PROC_CHILDREN): the caller scans.
 */
function listedChildren(pid: number): number[] | null {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter((s) => s.trim() !== "").map(Number);
  } catch {
    return null;
  }
}

/** /proc/<pid>/stat state letter ("" when gone). */
export function procState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "";
  }
}

/** Newest modification time (ms) of a WAL segment in pg_wal; null when none can be read. Never follows a link. */
export function walWrittenAt(dataDir: string): number | null {
  const dir = join(dataDir, "pg_wal");
  let newest: number | null = null;
  try {
    for (const name of readdirSync(dir)) {
      if (!/^[0-9A-F]{24}$/.test(name)) continue;
      const m = lstatSync(join(dir, name)).mtimeMs;
      if (newest === null || m > newest) newest = m;
    }
  } catch {
    // unreadable (not ours, gone): no WAL progress signal this round
  }
  return newest;
}

/** The size of the file system `path` is on, and what an unprivileged user may still write there (statfs). */
export function fsRoom(path: string): FsRoom {
  const s = statfsSync(path);
  return { sizeBytes: s.blocks * s.bsize, availBytes: s.bavail * s.bsize };
}

/** fsRoom of the file system `path` is or will be on: that of its nearest existing ancestor (itself when it exists). */
export function fsRoomFor(path: string): FsRoom {
  for (let p = path; ; p = dirname(p)) {
    try {
      return fsRoom(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || p === dirname(p)) throw e;
    }
  }
}

/** Space on the data directory's file system, and on pg_wal's when it is another one. */
export function diskUse(dataDir: string): DiskUse[] {
  const out: DiskUse[] = [];
  const one = (what: DiskUse["what"], path: string) => out.push({ what, path, ...fsRoom(path) });
  try {
    one("data", dataDir);
    const wal = join(dataDir, "pg_wal");
    if (statSync(wal).dev !== statSync(dataDir).dev) one("pg_wal", wal);
  } catch {
    // no data directory yet
  }
  return out;
}

async function attempt(fn: () => Promise<unknown>): Promise<Attempt> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  try {
    await fn();
    return { kind: "ok", ms: ms() };
  } catch (e) {
    const code = sqlState(e);
    const error = (e as Error).message.slice(0, 300);
    // Only a server's own error is an answer; a refused or reset connection (a full listen queue of
    // a frozen postmaster) or our deadline is none.
    if (code && !(e instanceof DbTimeoutError)) return { kind: "error", ms: ms(), error, sqlstate: code };
    return { kind: "timeout", ms: ms(), error };
  }
}

export interface FreshCheck {
  fresh: Attempt;
  /** null: not tried (not asked to, or the connection did not answer). */
  write: Attempt | null;
}

/**
 * A fresh connection: SELECT 1, then (write) the heartbeat commit, each under `deadlineMs`, on a
 * one-shot session of its own (local-session.ts), ended at the end without waiting for the server.
 * `step` hears each outcome as it comes (a caller that stops waiting still knows what answered).
 */
export async function freshCheck(o: { socketDir: string; port: number; superuser: string }, write: boolean, deadlineMs: number, step: (s: Partial<FreshCheck>) => void = () => {}): Promise<FreshCheck> {
  const target = `${o.superuser}@${o.socketDir}:${o.port}`;
  // The agent's own writes never wait for a synchronous standby (sql.ts openLocalDb).
  const end = new AbortController();
  const opening = LocalSession.open({ socketDir: o.socketDir, port: o.port, user: o.superuser, settings: { application_name: "pgherd", synchronous_commit: "local" } }, end.signal);
  try {
    const fresh = await attempt(() => withDeadline(opening.then((s) => s.query("SELECT 1")), deadlineMs, `fresh connection on ${target}`));
    step({ fresh });
    if (fresh.kind !== "ok" || !write) return { fresh, write: null };
    const w = await attempt(() => withDeadline(opening.then((s) => s.query("BEGIN READ WRITE; SELECT txid_current(); COMMIT")), deadlineMs, `heartbeat commit on ${target}`));
    step({ write: w });
    return { fresh, write: w };
  } finally {
    // Ends the session, open or still opening (a startup that outlived its deadline may never complete).
    end.abort();
    opening.catch(() => undefined);
  }
}
