// The agent's side of fencing: it writes the lease deadline (host-wide clock) to a small file
// that a separate watchdog process watches (inotify). When the agent freezes, crashes or loses its lease,
// nobody extends the deadline and the watchdog stops PostgreSQL at the lease end, without any
// help from the agent's event loop.
//
// The file is one JSON object padded with spaces to a fixed size, whose first key is a check of
// the rest (64-bit wyhash). Beside a watchdog that verifies it (it says so in watchdog.features) the
// agent writes an *extension* (same term, a deadline no earlier than the last) in place, through
// a shared mapping of the file: a copy into the page cache, 3 µs of CPU with the check of the file,
// instead of ~160 µs for write-to-tmp + rename, and no inotify event, so the watchdog is not woken:
// it reads the extension when it wakes at the deadline it knows, which is no later than the file's.
// Everything else (a shorter deadline, a disarm, a new term, the first record) is renamed into
// place as before, and wakes the watchdog at once. A read that races an in-place write may see a
// mix of the two records, whose digits could form a later deadline than either: the check rejects
// it and the reader reads again. Beside an older watchdog (no features file, or one naming another
// process) every record is renamed into place, as before: that watchdog ignores the check key.
import { spawn } from "node:child_process";
import { closeSync, fstatSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { uidOf } from "../postgres/orphans.ts";
import { HostClock, hostMonotonicMs } from "./clock.ts";
import { CHECKED_LEASE, LEASE_OS_UID, livingWatchdog, watchdogFeatures } from "./watchdog-files.ts";

export const LEASE_FILE = "lease";
/** An extension is renamed into place, not written in place, once the written deadline is this close (ms, host clock). */
const EXPIRY_SLACK_MS = 20;
/** Reads of a record whose check fails before a reader gives up for now (a racing write takes microseconds). */
const TORN_READS = 3;

/** What the agent writes and the watchdog reads (JSON). */
export type Lease = {
  /** Host-monotonic ms (clock.ts) after which PostgreSQL must not accept writes; null = disarmed. */
  deadline: number | null;
  term: number;
  dataDir: string;
  /**
   * The OS user the server runs as (its uid): the watchdog signals only that user's processes,
   * whatever the data directory's path leads to. Absent in an older agent's lease.
   */
  osUid?: number;
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
  if (o.osUid !== undefined) {
    lease.osUid = num("osUid", true);
    if (lease.osUid < 0) throw new Error("osUid: expected an integer >= 0");
  }
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

// {"check":"<16 hex digits>",  then the lease's other keys and spaces up to the record's size. The
// head has the same bytes in every record but the digits, so a mix of two records has it too.
const CHECK_OPEN = Buffer.from('{"check":"', "latin1");
const CHECK_DIGITS = 16;
const HEAD = CHECK_OPEN.length + CHECK_DIGITS + 2;
/** Records are padded to a multiple of this, so that later (longer) numbers still fit in place. */
const RECORD_STEP = 256;

function checkOf(tail: Uint8Array): string {
  return BigInt.asUintN(64, BigInt(Bun.hash.wyhash(tail))).toString(16).padStart(CHECK_DIGITS, "0");
}

/** The lease as a checked record of `size` bytes, or of the next larger multiple of 256 that fits it with 64 bytes to spare. */
export function encodeLease(l: Lease, size = 0): Buffer {
  const body = Buffer.from(JSON.stringify(l).slice(1), "utf8"); // without its "{"
  const n = HEAD + body.length <= size ? size : Math.ceil((HEAD + body.length + 64) / RECORD_STEP) * RECORD_STEP;
  const rec = Buffer.alloc(n, " ");
  CHECK_OPEN.copy(rec, 0);
  rec.write('",', HEAD - 2, "latin1");
  body.copy(rec, HEAD);
  rec.write(checkOf(rec.subarray(HEAD)), CHECK_OPEN.length, "latin1");
  return rec;
}

/**
 * The lease in a lease file's bytes: a checked record (above) or the plain JSON of an older agent
 * (written by rename: never torn). "torn" when the check fails: a read that raced an in-place
 * write (or a damaged file); read again. Throws when it is no lease.
 */
export function decodeLease(bytes: Buffer): Lease | "torn" {
  if (bytes.length >= HEAD && bytes.subarray(0, CHECK_OPEN.length).equals(CHECK_OPEN)) {
    const check = bytes.toString("latin1", CHECK_OPEN.length, CHECK_OPEN.length + CHECK_DIGITS);
    if (bytes.toString("latin1", HEAD - 2, HEAD) !== '",' || checkOf(bytes.subarray(HEAD)) !== check) return "torn";
  }
  return parseLease(JSON.parse(bytes.toString("utf8"))); // the check key is dropped with the other unknown ones
}

export class LeaseFile {
  private readonly file: string;
  /** The file mapped for in-place writes (only while the watchdog verifies checks), its inode, and the record size. */
  private map: Uint8Array | null = null;
  private mapIno = 0;
  private size = 0;
  /** The running watchdog verifies the check (it said so in its features file): write in place. */
  private inPlace = false;
  private last: number | null | undefined;
  private lastTerm = -1;
  /** The term of the record last written (arm(), disarm() or the announcement). */
  private lastWrittenTerm = -1;
  private nextSpawn = 0;
  /** The older watchdog already warned of (chooseWrite). */
  private warnedOlder = 0;
  /** The term this agent armed the lease for; null until arm(), and again after revoke() or disarm(). */
  private armedTerm: number | null = null;
  private armedUntil = 0;
  /** The lease end (performance.now()) of the deadline last written by arm(). */
  private writtenUntil = 0;

  constructor(
    private readonly stateDir: string,
    private readonly dataDir: string,
    /** The uid of the OS user the server runs as (Lease.osUid). */
    private readonly osUid: number,
    private readonly log: Logger,
    private readonly kernel: KernelSpec | null = null,
    /** Maps lease ends to the host clock (the agent shares it with its election driver, which asks it for suspends). */
    private readonly hostClock: HostClock = new HostClock(),
  ) {
    this.file = join(stateDir, LEASE_FILE);
  }

  /**
   * Arm (or extend) with a deadline on this process's performance.now() clock. False: that deadline
   * has already passed on the host clock (the host was suspended since the lease was counted, clock.ts
   * HostClock): no lease. It is written all the same, renamed into place (the watchdog wakes and
   * fences now), and not held.
   */
  arm(term: number, untilLocal: number): boolean {
    // The lease end on the host clock: at or before the true one (clock.ts, HostClock).
    const deadline = this.hostClock.toHost(untilLocal);
    const now = this.hostClock.hostNow();
    const over = deadline <= now;
    // Not held from here on, whether or not the write below succeeds (Fencer.arm: a failed write of
    // a lease still held is retried, not fenced).
    if (over) this.armedTerm = null;
    // Extensions of less than 50 ms are not worth a write; a lease that ends earlier than the one
    // written always is. Not a deadline that only reads earlier: each new sample of the host clock's
    // offset (10 ms steps) maps the same lease end (each follower's answer to one heartbeat) to a
    // deadline up to 10 ms apart; every one is at or before the lease end, so the one written stands.
    const shrunk = untilLocal < this.writtenUntil;
    if (over || !(this.last != null && this.lastTerm === term && !shrunk && deadline - this.last < 50)) {
      this.write({ deadline, term, dataDir: this.dataDir, osUid: this.osUid, writtenAt: now, agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
      // Only once written: a write that failed (ENOSPC, EIO…) is tried again by the next arm(), or a
      // shorter lease end would read as written while the file keeps the longer deadline.
      this.lastTerm = term;
      this.writtenUntil = untilLocal;
    }
    if (over) return false;
    // Held only once the file says so: a write that threw leaves the lease written before (or none),
    // never a longer one than the watchdog guards (Fencer.arm decides what a failure means); an
    // extension not written (under 50 ms) is not held either (review: holds() ran up to 50 ms past
    // the file's deadline, and a primary could be started after the watchdog had fenced).
    this.armedTerm = term;
    this.armedUntil = this.writtenUntil;
    return true;
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

  /** holds(), for a lease of `term`. */
  holdsTerm(term: number): boolean {
    return this.armedTerm === term && this.holds();
  }

  /** Whether arm(term, untilLocal) would only extend the lease last written (same term, no earlier end). */
  isExtension(term: number, untilLocal: number): boolean {
    return this.lastTerm === term && untilLocal >= this.writtenUntil;
  }

  disarm(term: number): void {
    this.armedTerm = null;
    if (this.last === null || this.last === undefined) return;
    this.write({ deadline: null, term, dataDir: this.dataDir, osUid: this.osUid, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) });
  }

  private write(l: Lease): void {
    // Not fsynced: the watchdog reads it through the page cache; after a host crash there is nothing to fence.
    const rec = encodeLease(l, this.size);
    // Not once the deadline written may have passed (the host clock's 10 ms steps, and more): the
    // watchdog may have fenced it, and then sleeps up to a second; a rename wakes it for the new
    // deadline (review: an extension written in place after a fence went unseen for ~1 s).
    const extension = l.deadline !== null && this.last != null && l.deadline >= this.last && l.term === this.lastWrittenTerm && l.writtenAt + EXPIRY_SLACK_MS < this.last;
    if (this.inPlace && extension && this.map !== null && rec.length === this.size && this.mapped()) {
      this.map.set(rec, 0);
    } else {
      this.map = null; // unmapped when collected; nothing writes through it any more
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, rec, { mode: 0o600 });
      renameSync(tmp, this.file);
      this.size = rec.length;
      if (this.inPlace) this.mapFile();
    }
    this.last = l.deadline;
    this.lastWrittenTerm = l.term;
  }

  private mapFile(): void {
    try {
      // The same inode and size before and after the mapping: a file replaced in between is not taken for the one mapped.
      const before = statSync(this.file);
      const map = Bun.mmap(this.file, { shared: true });
      const after = statSync(this.file);
      if (map.length !== this.size || before.size !== this.size || after.size !== this.size || after.ino !== before.ino) return;
      this.map = map;
      this.mapIno = after.ino;
    } catch {
      // the next write renames again
    }
  }

  /**
   * The mapping is still the lease file, whole. Checked before every in-place write: a file
   * removed or replaced would swallow the extension, and one cut short would fault the write
   * (SIGBUS). The next write then renames a new file into place.
   */
  private mapped(): boolean {
    try {
      const st = statSync(this.file);
      if (st.ino === this.mapIno && st.size === this.size) return true;
    } catch {
      // gone
    }
    this.map = null;
    return false;
  }

  /** Writes in place only beside a watchdog that verifies checks, asked once per ensureWatchdog() (every second). */
  private chooseWrite(watchdog: number | null): void {
    const features = watchdog === null ? [] : watchdogFeatures(this.stateDir, watchdog);
    this.inPlace = features.includes(CHECKED_LEASE);
    if (!this.inPlace) this.map = null;
    // A root watchdog may signal any user's process, and an older one does not limit its fence to
    // the lease's OS user. It is replaced when it exits (no lease armed, its agent gone), which an
    // agent's restart does not bring about. Said once per watchdog and agent run.
    if (watchdog !== null && watchdog !== this.warnedOlder && !features.includes(LEASE_OS_UID) && uidOf(watchdog) === 0) {
      this.warnedOlder = watchdog;
      this.log.warn(`the fencing watchdog (pid ${watchdog}) runs as root and does not say it limits its fence to postgres.os_user's processes (an older build, or its features file could not be written); on a standby (its lease disarmed), stop it (kill ${watchdog}) and the agent starts this build's within about a second (docs/upgrade.md)`);
    }
  }

  /** Start the watchdog unless one already watches this state dir (it outlives agent restarts). */
  ensureWatchdog(): void {
    // Announce this agent first, so a new watchdog knows whom it serves; a lease the previous agent
    // armed stays armed (its primary may still run): this agent extends or disarms it later. A torn
    // record (the previous agent died mid-copy) has an unknown deadline: it is announced as a lease
    // that has already expired, so the watchdog fences at once, never as a disarm.
    if (this.last === undefined) {
      // A file that holds no lease (zero bytes or garbage after a power loss: it is not fsynced) is
      // announced as expired like a torn one: the watchdog must start whatever the file holds.
      const me = { osUid: this.osUid, writtenAt: hostMonotonicMs(), agentPid: process.pid, ...(this.kernel ? { kernel: this.kernel } : {}) };
      let prev: Lease | null = null;
      let why = ""; // why the previous record is announced as expired now
      try {
        const r = readCheckedLease(this.file);
        if (r === "torn") why = "failed its check on every read (its writer died mid-write?)";
        // Written later on the host clock than now: by an earlier boot (CLOCK_BOOTTIME starts again
        // at zero), whose deadline may read as minutes or days ahead; nothing of it holds now.
        else if (r?.deadline != null && r.writtenAt > me.writtenAt) why = `was written by an earlier boot (at ${r.writtenAt} ms of its clock; this boot's reads ${me.writtenAt})`;
        else prev = r;
      } catch (e) {
        why = `holds no lease (${(e as Error).message})`;
      }
      if (why) {
        this.log.warn(`${this.file} ${why}: announced as expired now, so the watchdog fences any server left running`);
        this.write({ deadline: me.writtenAt, term: -1, dataDir: this.dataDir, ...me });
      } else if (prev?.deadline != null) this.write({ ...prev, ...me });
      else this.write({ deadline: null, term: -1, dataDir: this.dataDir, ...me });
    }
    const watchdog = livingWatchdog(this.stateDir);
    this.chooseWrite(watchdog);
    if (watchdog !== null) return;
    if (performance.now() < this.nextSpawn) return;
    this.nextSpawn = performance.now() + 2000;
    // /proc/self/exe: the running binary even if its file was replaced or removed meanwhile. Not
    // through caps.ts: the watchdog keeps the agent's ambient CAP_NET_ADMIN to remove the VIP at a fence.
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

/**
 * The lease in `file`: null when there is none or its check failed TORN_READS times in a row.
 * Throws, naming the file, when it holds no lease (damaged): the caller decides what that means.
 */
export function readLeaseFile(file: string): Lease | null {
  let r: Lease | null | "torn";
  try {
    r = readCheckedLease(file);
  } catch (e) {
    throw new Error(`${file} holds no lease: ${(e as Error).message}`);
  }
  return r === "torn" ? null : r;
}

/**
 * The lease in `file`, read again while its check fails (up to TORN_READS times): "torn" if it never
 * passed; null = no file or no lease; throws when the file cannot be read or holds no lease. `at.ino` gets the inode the last read came from (fstat of its fd).
 */
export function readCheckedLease(file: string, at?: { ino: number }): Lease | null | "torn" {
  for (let i = 0; i < TORN_READS; i++) {
    let bytes: Buffer;
    try {
      if (at) {
        const fd = openSync(file, "r");
        try {
          at.ino = fstatSync(fd).ino;
          bytes = readFileSync(fd);
        } finally {
          closeSync(fd);
        }
      } else bytes = readFileSync(file);
    } catch (e) {
      // Absent: no lease. Any other failure (EACCES, EIO, ENFILE…) says nothing of the lease: the caller decides.
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
    const r = decodeLease(bytes); // throws on no lease: the caller says so
    if (r !== "torn") return r;
  }
  return "torn";
}
