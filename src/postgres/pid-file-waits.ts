// Waits on postmaster.pid, as pg_ctl -w does, but looking every few ms: the server ready after a
// start, gone after a stop, and an exited postmaster reaped (src/postgres/ctl.ts).
import { closeSync, constants as C, fstatSync, lstatSync, openSync, readSync } from "node:fs";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { pidAlive } from "./datadir.ts";
import { procState } from "./liveness-obs.ts";
import { readPidFile } from "./orphans.ts";
import { errno } from "./safedir-walk.ts";

/** Resolves "ready" once postmaster.pid names a live server started after `sinceMs` that is ready (or a ready hot standby), as pg_ctl -w checks; never resolves otherwise. */
export async function readyInPidFile(dataDir: string, sinceMs: number, watch: { on: boolean }): Promise<"ready"> {
  const file = join(dataDir, "postmaster.pid");
  for (;;) {
    await Bun.sleep(READY_POLL_MS);
    if (!watch.on) return new Promise<never>(() => undefined);
    const text = readSmallRegularFile(file);
    if (text === null) continue;
    const l = text.split("\n");
    const status = l[7]?.trim();
    // pg_ctl allows 2 s of clock skew between its start and the postmaster's.
    if ((status === "ready" || status === "standby") && Number(l[2]) >= Math.floor(sinceMs / 1000) - 2 && pidAlive(Number(l[0]))) return "ready";
  }
}

const READY_POLL_MS = 5;

/**
 * After the stop signal: true once postmaster.pid is gone (the postmaster removes it last, after
 * every child exited and the shutdown checkpoint was written), false if its postmaster died
 * leaving the file or `ms` passed. pg_ctl -w's wait_for_postmaster_stop, looking every STOP_POLL_MS.
 */
export async function stoppedInPidFile(dataDir: string, ms: number): Promise<boolean> {
  const file = join(dataDir, "postmaster.pid");
  // Gone means ENOENT only, as pg_ctl reads it: a file that cannot be read for another reason is not gone.
  const gone = () => lstat(file).then(() => false, (e) => errno(e) === "ENOENT");
  const until = performance.now() + ms;
  for (;;) {
    const pid = readPidFile(file);
    if (pid === null && (await gone())) return true;
    if (pid !== null && !pidAlive(pid)) return gone();
    if (performance.now() > until) return false;
    await Bun.sleep(STOP_POLL_MS);
  }
}

const STOP_POLL_MS = 5;

/** How long a stop waits for an exited postmaster to be reaped. */
export const REAP_WAIT_S = 3;

/** True once `pid` is no zombie (reaped, or never one), false if it still is after `ms`. */
export async function reapedWithin(pid: number, ms: number): Promise<boolean> {
  const until = performance.now() + ms;
  while (procState(pid) === "Z") { // exited, not yet reaped by its parent: the pid still in use
    if (performance.now() > until) return false;
    await Bun.sleep(STOP_POLL_MS);
  }
  return true;
}

/** A regular file's first 4 KiB, opened without following a link or blocking on a FIFO (the data directory is the OS user's); null otherwise. */
function readSmallRegularFile(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(4096);
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString("latin1");
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
