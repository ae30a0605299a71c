// A clock shared by every process on the host: CLOCK_BOOTTIME via /proc/uptime (10 ms
// resolution, never jumps). The agent and its watchdog are separate processes, and Bun's
// performance.now()/hrtime start at zero in each process, so they cannot share those.
import { readFileSync } from "node:fs";

export function hostMonotonicMs(): number {
  const text = readFileSync("/proc/uptime", "utf8");
  const secs = Number.parseFloat(text.slice(0, text.indexOf(" ")));
  if (!Number.isFinite(secs)) throw new Error(`/proc/uptime: unexpected content ${JSON.stringify(text)}`);
  return Math.floor(secs * 1000);
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
