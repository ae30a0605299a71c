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
/** /proc/uptime's resolution: it truncates CLOCK_BOOTTIME to whole centiseconds. */
const STEP_MS = 10;
/**
 * How far the offset must grow beyond its noise before a suspend is reported (HostClock.suspended):
 * the agent then gives up its lease, a failover, so only a growth that no measurement explains
 * counts. The noise itself is under 10 ms plus the earlier sample's read gap (measured per sample:
 * up to 10 ms on a loaded 2-core host); 40 ms on top of it, 50 ms in all with a quick read, leaves
 * room for what that reasoning may miss, and a suspend-to-RAM or hibernation lasts seconds.
 */
const SUSPEND_MARGIN_MS = 40;

/**
 * performance.now() mapped to the host clock through an offset sampled from /proc/uptime at most
 * every `refreshMs` (or at each suspended()), for the agent, which maps a lease end for every write:
 * no file read per write. performance.now() is CLOCK_MONOTONIC (Bun 1.4, seen in a debugger), which
 * stands still while the host is suspended (suspend-to-RAM, hibernation) and CLOCK_BOOTTIME does not:
 * the offset BOOTTIME − MONOTONIC grows by the suspend's length, and never changes otherwise (NTP
 * slews both alike).
 *
 * Every error makes a mapped time EARLIER than the true one, never later (a deadline from it fences
 * sooner, never later): a sample reads /proc/uptime (truncated to 10 ms: earlier) before it reads
 * performance.now() (time passing in between: earlier); should the two clocks' rates differ
 * (performance.now() on an unslewed clock), RATE_ERROR times the sample's age is taken off. A lease
 * end is counted from a heartbeat sent earlier, on the local clock: if the host was suspended after
 * that send, the lease ended by the suspend's length earlier in real time than the new offset says
 * (review: a re-armed lease moved the watchdog's deadline 10 s past the resume). So an offset that
 * grew beyond what the truncation and the read gap explain is a suspend: every local time before
 * `keepMs` past the sample that found it, the end of any lease counted from before it, keeps the
 * offset from before it; only later ones take the new one. A suspend shorter than that noise (10 ms
 * plus the read gap) cannot be told from the truncation and may map up to that much later; no real
 * suspend is that short.
 */
export class HostClock {
  private offset = 0;
  private sampledAt = Number.NEGATIVE_INFINITY;
  /** The last sample's read gap (ms between the performance.now() reads around its /proc/uptime read). */
  private gap = 0;
  /** After a suspend: the offset from before it and when that was sampled, for local times before `until`. */
  private kept: { offset: number; at: number; until: number } | null = null;
  /** Suspends found and not yet reported by suspended() (ms, about their length). */
  private unreported = 0;

  constructor(
    private readonly refreshMs = 1000,
    private readonly host: () => number = hostMonotonicMs,
    private readonly local: () => number = () => performance.now(),
    /** The longest lease mapped (its start to its end): the agent passes its configuration's; the default covers etcd's longest ttl_s. */
    private readonly keepMs = 60_000,
  ) {}

  /** `localMs` (a performance.now() time, a lease end) on the host clock, in whole ms: at or before the true value. */
  toHost(localMs: number): number {
    const now = this.fresh();
    const k = this.kept !== null && localMs < this.kept.until ? this.kept : { offset: this.offset, at: this.sampledAt };
    return this.map(localMs, now, k.offset, k.at);
  }

  /** The host clock now (through the newest offset), in whole ms: at or before the true value. */
  hostNow(): number {
    const now = this.fresh();
    return this.map(now, now, this.offset, this.sampledAt);
  }

  /** Samples now; how long the host was suspended since the last call (ms, about), 0: it was not. */
  suspended(): number {
    this.sample(this.local());
    const ms = this.unreported;
    this.unreported = 0;
    return ms;
  }

  private map(localMs: number, now: number, offset: number, at: number): number {
    const age = Math.max(0, now - at) + Math.max(0, localMs - now);
    return Math.floor(localMs + offset - Math.ceil(age * RATE_ERROR));
  }

  /** performance.now(), after a new sample if the last is `refreshMs` old. */
  private fresh(): number {
    const now = this.local();
    return now - this.sampledAt >= this.refreshMs ? this.sample(now) : now;
  }

  /** A new sample, `before` read just before it; returns performance.now() as it was taken. */
  private sample(before: number): number {
    const h = this.host();
    const now = this.local();
    const offset = h - now;
    if (Number.isFinite(this.sampledAt)) {
      // Two samples of one offset differ by less than the truncation plus the earlier one's read
      // gap (each is at most the true offset, and at least it minus both), and the rate margin.
      const noise = STEP_MS + this.gap + Math.ceil((now - this.sampledAt) * RATE_ERROR);
      const grown = offset - this.offset;
      if (grown > noise) {
        // A second suspend within the first's window keeps the first's (smaller) offset, longer.
        const k = this.kept !== null && now < this.kept.until ? this.kept : { offset: this.offset, at: this.sampledAt };
        this.kept = { offset: k.offset, at: k.at, until: now + this.keepMs };
      }
      if (grown > noise + SUSPEND_MARGIN_MS) this.unreported += Math.round(grown);
    }
    this.offset = offset;
    this.sampledAt = now;
    this.gap = now - before;
    return now;
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
