// A clock shared by every process on the host: CLOCK_BOOTTIME, as /proc/uptime shows it (10 ms
// resolution, never jumps). The agent and its watchdog are separate processes, and Bun's
// performance.now()/hrtime start at zero in each process, so they cannot share those.
import { readFileSync } from "node:fs";

/** CLOCK_BOOTTIME in ms, truncated to /proc/uptime's 10 ms, read from /proc/uptime (a file read per call). */
export function hostMonotonicMs(): number {
  const text = readFileSync("/proc/uptime", "utf8");
  // Whole centiseconds, without floating point: floor(1.13 * 1000) would be 1129.
  const m = /^(\d+)\.(\d\d) /.exec(text);
  if (!m) throw new Error(`/proc/uptime: unexpected content ${JSON.stringify(text)}`);
  return Number(m[1]) * 1000 + Number(m[2]) * 10;
}

const CLOCK_BOOTTIME = 7; // linux/time.h
type Boottime = () => number;
let boottime: Boottime | null | undefined; // undefined: not tried yet; null: unavailable

/**
 * The same value as hostMonotonicMs() (the kernel's /proc/uptime is CLOCK_BOOTTIME truncated to
 * centiseconds: this truncates the same way, so the agent writes the deadlines it wrote before),
 * read with clock_gettime through bun:ffi: about 0.1 µs instead of a 6.5 µs file read. For the
 * agent, which reads it for every lease write; loaded on first use, so the watchdog, which reads
 * the clock about once a second and stays small, never loads bun:ffi. Without glibc (no
 * libc.so.6) it reads /proc/uptime.
 */
export function fastHostMonotonicMs(): number {
  if (boottime === undefined) boottime = loadBoottime();
  return boottime ? boottime() : hostMonotonicMs();
}

function loadBoottime(): Boottime | null {
  try {
    const ffi = require("bun:ffi") as typeof import("bun:ffi");
    const libc = ffi.dlopen("libc.so.6", { clock_gettime: { args: [ffi.FFIType.i32, ffi.FFIType.ptr], returns: ffi.FFIType.i32 } });
    const ts = new BigInt64Array(2); // struct timespec { tv_sec; tv_nsec } on 64-bit Linux
    const at = ffi.ptr(ts);
    const read = () => {
      if (libc.symbols.clock_gettime(CLOCK_BOOTTIME, at) !== 0) throw new Error("clock_gettime(CLOCK_BOOTTIME) failed");
      return Number(ts[0]) * 1000 + Math.floor(Number(ts[1]) / 10_000_000) * 10;
    };
    // Trust it only if it agrees with /proc/uptime (a 32-bit timespec or another clock id would not).
    const before = read();
    const uptime = hostMonotonicMs();
    const after = read();
    if (!(before <= uptime && uptime <= after)) return null;
    return read;
  } catch {
    return null;
  }
}

/** Time as the shell sees it: monotonic ms, timers that can be cancelled, sleep. Injected in tests. */
export interface Clock {
  now(): number;
  /** Run `fn` after `ms`; returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
  sleep: (ms) => Bun.sleep(ms),
};
