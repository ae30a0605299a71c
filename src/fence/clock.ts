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

/** Largest rate error assumed between performance.now() and CLOCK_BOOTTIME: twice NTP's largest slew (500 ppm). */
const RATE_ERROR = 0.001;

/**
 * performance.now() mapped to the host clock through an offset sampled from /proc/uptime at most
 * every `refreshMs`, for the agent, which maps a lease end for every write: no file read per write.
 * Every error makes a mapped time EARLIER than the true one, never later (a deadline from it fences
 * sooner, never later): a sample reads /proc/uptime (truncated to 10 ms: earlier) before it reads
 * performance.now() (time passing in between: earlier); a host suspend moves CLOCK_BOOTTIME and not
 * performance.now() (CLOCK_MONOTONIC), so an offset sampled before it is too small (earlier); and
 * should the two clocks' rates differ (performance.now() on an unslewed clock), RATE_ERROR times the
 * sample's age is taken off.
 */
export class HostClock {
  private offset = 0;
  private sampledAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly refreshMs = 1000,
    private readonly host: () => number = hostMonotonicMs,
    private readonly local: () => number = () => performance.now(),
  ) {}

  /** `localMs` (a performance.now() time) on the host clock, in whole ms: at or before the true value. */
  toHost(localMs: number): number {
    let now = this.local();
    if (now - this.sampledAt >= this.refreshMs) {
      const h = this.host();
      now = this.local();
      this.offset = h - now;
      this.sampledAt = now;
    }
    const age = Math.max(0, now - this.sampledAt) + Math.max(0, localMs - now);
    return Math.floor(localMs + this.offset - Math.ceil(age * RATE_ERROR));
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
