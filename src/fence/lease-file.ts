// The agent's side of fencing: it writes the lease deadline (host-wide clock) to a small file
// that a separate watchdog process watches (inotify). When the agent freezes, crashes or loses its lease,
// nobody extends the deadline and the watchdog stops PostgreSQL at the lease end, without any
// help from the agent's event loop.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { hostMonotonicMs } from "./clock.ts";

export const LEASE_FILE = "lease";
export const WATCHDOG_PID_FILE = "watchdog.pid";

/** What the agent writes and the watchdog reads (JSON). */
export type Lease = {
  /** Host-monotonic ms (clock.ts) after which PostgreSQL must not accept writes; null = disarmed. */
  deadline: number | null;
  term: number;
  dataDir: string;
  writtenAt: number;
  /** The agent that wrote it: a watchdog with nothing to guard and no agent left exits. */
  agentPid: number;
  /** The kernel watchdog to keep alive while armed (config [watchdog]); absent or null = none. */
  kernel?: KernelSpec | null;
};
export type KernelSpec = { device: string; timeoutS: number; fenceMs: number };

// Checked by hand, not with zod: the watchdog imports this file and must stay small (its RSS is
// what it loads). Not strict: a watchdog that outlived an agent upgrade must still read the
// deadline of a newer lease file (unknown keys are dropped); a lease it cannot read is no lease.
/** The lease in parsed JSON `v`; throws an Error naming the first bad key. */
export function parseLease(v: unknown): Lease {
  const o = record(v, "lease");
  const num = (k: string, int = false): number => {
    const x = o[k];
    if (typeof x !== "number" || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`${k}: expected ${int ? "an integer" : "a number"}`);
    return x;
  };
  const deadline = o.deadline === null ? null : num("deadline");
  if (typeof o.dataDir !== "string") throw new Error("dataDir: expected a string");
  const lease: Lease = { deadline, term: num("term", true), dataDir: o.dataDir, writtenAt: num("writtenAt"), agentPid: num("agentPid", true) };
  if (o.kernel === null) lease.kernel = null;
  else if (o.kernel !== undefined) {
    const k = record(o.kernel, "kernel");
    const int = (key: string, min: number): number => {
      const x = k[key];
      if (typeof x !== "number" || !Number.isInteger(x) || x < min) throw new Error(`kernel.${key}: expected an integer >= ${min}`);
      return x;
    };
    if (typeof k.device !== "string") throw new Error("kernel.device: expected a string");
    lease.kernel = { device: k.device, timeoutS: int("timeoutS", 1), fenceMs: int("fenceMs", 0) };
  }
  return lease;
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${what}: expected an object`);
  return v as Record<string, unknown>;
}

export class LeaseFile {
  private readonly file: string;
  private last: number | null | undefined;
  private lastTerm = -1;
  private nextSpawn = 0;
  /** The term this agent armed the lease for; null until arm(), and again after revoke() or disarm(). */
  private armedTerm: number | null = null;
  private armedUntil = 0;

  constructor(
    private readonly stateDir: string,
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly kernel: KernelSpec | null = null,
  ) {
    this.file = join(stateDir, LEASE_FILE);
  }

  /** Arm (or extend) with a deadline on this process's performance.now() clock. */
  arm(term: number, untilLocal: number): void {
    const deadline = hostMonotonicMs() + Math.floor(untilLocal - performance.now());
    this.armedTerm = term;
    this.armedUntil = untilLocal;
    // Extensions of less than 50 ms are not worth a write; a shorter deadline always is.
    if (this.last != null && this.lastTerm === term && deadline >= this.last && deadline - this.last < 50) return;
    this.lastTerm = term;
    this.write({ deadline, term, dataDir: this.dataDir, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
  }

  /**
   * The lease is lost (fence): this agent no longer holds it, until the next arm(). The file keeps
   * its deadline, so the watchdog still stops PostgreSQL if the agent's own stop does not.
   */
  revoke(): void {
    this.armedTerm = null;
  }

  /** This agent armed a lease (not revoked since) whose deadline has not passed. */
  holds(): boolean {
    return this.armedTerm !== null && performance.now() < this.armedUntil;
  }

  disarm(term: number): void {
    this.armedTerm = null;
    if (this.last === null || this.last === undefined) return;
    this.write({ deadline: null, term, dataDir: this.dataDir, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
  }

  private write(l: Lease): void {
    // Not fsynced: the watchdog reads it through the page cache; after a host crash there is nothing to fence.
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(l), { mode: 0o600 });
    renameSync(tmp, this.file);
    this.last = l.deadline;
  }

  /** Start the watchdog unless one already watches this state dir (it outlives agent restarts). */
  ensureWatchdog(): void {
    // Announce this agent first, so a new watchdog knows whom it serves; a lease the previous agent
    // armed stays armed (its primary may still run): this agent extends or disarms it later.
    if (this.last === undefined) {
      const prev = readLeaseFile(this.file);
      if (prev?.deadline != null) this.write({ ...prev, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
      else this.write({ deadline: null, term: -1, dataDir: this.dataDir, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
    }
    if (watchdogAlive(this.stateDir)) return;
    if (performance.now() < this.nextSpawn) return;
    this.nextSpawn = performance.now() + 2000;
    // /proc/self/exe: the running binary even if its file was replaced or removed meanwhile.
    const viaBun = /(^|\/)bun(-\w+)?$/.test(process.execPath);
    const args = [...(viaBun ? [process.argv[1]!] : []), "watchdog", "--state-dir", this.stateDir];
    const out = openSync(join(this.stateDir, "watchdog.log"), "a", 0o600);
    try {
      const child = spawn("/proc/self/exe", args, { detached: true, stdio: ["ignore", out, out] });
      child.on("error", (e) => this.log.error(`cannot start the fencing watchdog: ${e.message}; PostgreSQL is not protected against a frozen agent until it runs`));
      child.unref();
      if (child.pid) this.log.info(`started the fencing watchdog (pid ${child.pid})`);
    } finally {
      closeSync(out);
    }
  }
}

/** The lease in `file`, or null when there is none or it does not parse. */
export function readLeaseFile(file: string): Lease | null {
  try {
    return parseLease(JSON.parse(readFileSync(file, "utf8")));
  } catch {
    return null;
  }
}

export function watchdogAlive(stateDir: string): boolean {
  try {
    const pid = Number(readFileSync(join(stateDir, WATCHDOG_PID_FILE), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return false;
    process.kill(pid, 0);
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmd.includes("watchdog");
  } catch {
    return false;
  }
}

export function writeWatchdogPid(stateDir: string): void {
  writeFileSync(join(stateDir, WATCHDOG_PID_FILE), `${process.pid}\n`, { mode: 0o600 });
}
