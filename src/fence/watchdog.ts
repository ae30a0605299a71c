// `pgherd watchdog`: a tiny process beside the agent that stops PostgreSQL when the leader's
// lease runs out and nobody extended it (agent frozen, killed or cut off). It sleeps until the
// lease deadline or a change of the lease file (inotify through fs.watch; polling every
// POLL_MS only if the watch cannot be set up) and, past the deadline, sends SIGQUIT to the postmaster: PostgreSQL's
// immediate shutdown, which terminates every backend at once, so no further commit is
// acknowledged. It needs nothing from the agent's event loop. With [watchdog] configured it
// also keeps the kernel watchdog alive while the lease is valid (kernel-watchdog.ts): if this
// process freezes as well, the kernel resets the host within the same fence budget.
import { existsSync, realpathSync, statSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { hostMonotonicMs } from "./clock.ts";
import { childrenOf, deadOrZombie, isServerOf, leftoverProcesses, procLinksUnreadable, readPidFile, rootWithoutPtrace } from "../postgres/orphans.ts";
import { KernelWatchdog, mayPet } from "./kernel-watchdog.ts";
import { LEASE_FILE, readCheckedLease, type Lease } from "./lease-file.ts";
import { watchdogAlive, writeWatchdogPid } from "./watchdog-files.ts";

const POLL_MS = 20;
/** Longest sleep without a lease change: checks for a gone agent or state dir, and a host suspend. */
const IDLE_WAKE_MS = 1000;
const IDLE_EXIT_MS = 10_000;
const HARD_KILL_AFTER_MS = 100;
/** A torn read that would fence (a passed deadline, or a replaced file) is read again every 1 ms for at least this long first. */
export const TORN_RETRY_MS = 5;

/** What the watchdog logs through: the agent's Logger fits, and so does the lean one of watchdog-main.ts. */
export type WatchdogLog = { info(msg: string): void; warn(msg: string): void; error(msg: string): void };

export async function runWatchdog(stateDir: string, log: WatchdogLog): Promise<void> {
  if (watchdogAlive(stateDir)) {
    log.info("another watchdog already watches this state dir");
    return;
  }
  writeWatchdogPid(stateDir);
  const wake = new Wake();
  const watcher = watchLease(stateDir, wake, log);
  // Before the line that says it watches (a test reads what came before it as the start).
  if (rootWithoutPtrace()) log.error("running as root without CAP_SYS_PTRACE: it cannot read the /proc links of the server's processes, so it cannot tell the server from another process and will not fence it; add CAP_SYS_PTRACE to the unit's CapabilityBoundingSet (docs/install.md, the root drop-in)");
  log.info(`fencing watchdog watching ${join(stateDir, LEASE_FILE)} ${watcher.ok ? "for changes (inotify)" : `every ${POLL_MS} ms`}`);
  let fencedFor: number | null = null;
  /** The fenced lease whose virtual IP could not be removed (tried again), and when last tried. */
  let vipLeft: Lease | null = null;
  let vipTried = 0;
  let vipBusy = false;
  /** The last lease read whose check passed (or an older agent's plain one): kept while reads fail their check. */
  let verified: Lease | null = null;
  /** The inode `verified` was read from: only that file's later records are extensions of it. */
  let verifiedIno = 0;
  let idleSince: number | null = null;
  const kernel = new KernelWatchdog();
  let kernelKey = ""; // the lease term and device last tried: a failure is retried for the next one only
  let lastError = "";
  const say = (level: "warn" | "error", why: string) => {
    if (why !== lastError) log[level](why);
    lastError = why;
  };
  const stop = (sig: string) => {
    // An orderly stop (shutdown, an operator): disarm the kernel watchdog, or it resets the host.
    if (kernel.active) log.warn(`${sig}: disarming the kernel watchdog and exiting`);
    kernel.disarm();
    process.exit(0);
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  // Their default action ends the process: a `killall -HUP pgherd` meant to reload the agent must
  // not end the fencing (and reset the host through an armed kernel watchdog).
  for (const sig of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const) process.on(sig, () => log.info(`${sig} ignored (the watchdog has nothing to reload)`));

  /** One look at the lease; the ms to sleep until the next (a change of the file wakes earlier), or false = exit. */
  const round = async (): Promise<number | false> => {
    // A state dir removed, renamed or unmounted (a node wiped while its agent was frozen or killed)
    // ends this process only once nothing is armed: a verified lease stays in force, as for a lease
    // file it cannot read, and is fenced at its deadline (review: it exited here at once, with the
    // kernel watchdog disarmed, and the old primary ran on beside the next leader).
    const gone = !existsSync(stateDir);
    // A record that fails its check (a read racing the agent's in-place write, whose mixed digits
    // could form a later deadline) is never used. In the file the lease was verified from, the
    // last verified lease stays in force (in place the agent writes only extensions: its deadline
    // is no later than the file's) and the file is read again after POLL_MS. In a file that
    // replaced it, the deadline is unknown and may be earlier: the lease counts as expired now.
    // Before a torn read fences, the file is read again every 1 ms until a read begun TORN_RETRY_MS
    // after the first (rereadTorn): an agent preempted mid-copy of an extension finishes it; one
    // frozen mid-copy is fenced that much later.
    const look = () => {
      const at = { ino: 0 };
      const read = readLease(stateDir, log, at, verified);
      return { read, ino: at.ino, now: hostMonotonicMs() };
    };
    const wouldFence = (r: { ino: number; now: number }) => verified !== null && (r.ino !== verifiedIno || (verified.deadline !== null && fencedFor !== verified.deadline && r.now > verified.deadline));
    const { read, ino, now } = await rereadTorn(look, (r) => r.read === "torn" && wouldFence(r));
    const torn = read === "torn" || read === "unreadable"; // either way: the last verified lease, read again every POLL_MS
    if (read === "unreadable") {
      // Kept as it is (readLease said so): fenced at its deadline unless a readable file says otherwise.
    } else if (read !== "torn") {
      verified = read;
      verifiedIno = ino;
    } else if (verified !== null && ino !== verifiedIno) {
      say("warn", `${join(stateDir, LEASE_FILE)} was replaced and failed its check ${TORN_READS_SAID}: its deadline is unknown, the lease of term ${verified.term} counts as expired now`);
      // Now, not the verified lease's deadline when that has passed: that one was fenced, and the
      // replacement's server would be left running (review).
      verified = { ...verified, deadline: now };
      verifiedIno = ino;
    } else say("warn", `${join(stateDir, LEASE_FILE)} failed its check ${TORN_READS_SAID}: keeping the last verified lease (deadline ${verified?.deadline ?? "none"}) and reading it again every ${POLL_MS} ms`);
    const lease = verified;
    // Nothing armed (or already fenced) and the agent gone: exit; the next agent starts a new watchdog.
    const idle = !lease || lease.deadline === null || fencedFor === lease.deadline;
    if (idle && (!lease || !alive(lease.agentPid))) {
      idleSince ??= now;
      // Not while the kernel watchdog is armed: idle with it armed means a fence that failed (a
      // fenced server disarms it, so does a disarmed lease), which the host's reset must still end
      // (a kernel timeout longer than this wait would otherwise be stood down by the exit).
      if (now - idleSince > IDLE_EXIT_MS && !kernel.active) {
        log.info("no armed lease and no agent: exiting");
        return false;
      }
    } else idleSince = null;
    if (gone && !idle) say("warn", `${stateDir} is gone: the lease of term ${lease!.term} stays in force, fenced at its deadline ${lease!.deadline}; exiting once it is`);

    const spec = lease?.kernel;
    if (lease && lease.deadline !== null && !idle && spec) {
      const key = `${lease.term} ${spec.device}`;
      if (!kernel.active && key !== kernelKey) {
        kernelKey = key;
        const problem = await kernel.open(spec.device, spec.timeoutS);
        if (problem) say("warn", `kernel watchdog unusable for term ${lease.term}: ${problem}; fencing relies on the agent and this process`);
        else log.info(`kernel watchdog ${spec.device} armed for term ${lease.term}: timeout ${kernel.timeoutS} s`);
      }
      if (kernel.active && mayPet(now, lease.deadline, kernel.timeoutS, spec.fenceMs)) {
        try {
          kernel.pet();
        } catch (e) {
          // Keep fencing in user space; without keepalives the kernel resets the host, as it should.
          say("error", `kernel watchdog keepalive failed: ${(e as Error).message}`);
        }
      }
    } else if (!lease || lease.deadline === null || !spec) {
      kernelKey = ""; // the next lease tries again
      if (kernel.active) {
        kernel.disarm();
        log.info("kernel watchdog disarmed: no lease to guard");
      }
    }

    // After the kernel block: a kernel watchdog still armed here guards a fence that failed, and
    // must be left to reset the host, not disarmed by an exit.
    if (gone && idle && !kernel.active) {
      log.info(`${stateDir} is gone: exiting`);
      return false;
    }
    const armed = lease !== null && lease.deadline !== null && fencedFor !== lease.deadline;
    // [vip]: the virtual IP leaves this host at the same deadline (vip-release.ts, loaded only where the agent recorded one).
    const releaseVip = (l: Lease) => existsSync(join(stateDir, "vip"))
      ? import("./vip-release.ts").then((m) => m.releaseVip(stateDir, l, log)).catch((e: Error) => (log.error(`virtual IP release failed: ${e.message}`), "failed" as const))
      : Promise.resolve("none" as const);
    if (armed && now > lease.deadline!) {
      const fenced = fence(lease, now, log).then((gone) => {
        // Only a server known to be down lets the kernel watchdog stand down (else it resets the
        // host); at once, not after the address: a slow `ip` must not let the device fire.
        if (gone && kernel.active) {
          kernel.disarm();
          kernelKey = ""; // a later deadline of the same term arms it again (review)
          log.info("kernel watchdog disarmed: PostgreSQL is fenced");
        }
      });
      const [, vip] = await Promise.all([fenced, releaseVip(lease)]);
      fencedFor = lease.deadline;
      vipLeft = vip === "failed" ? lease : null;
      vipTried = now;
    } else if (vipLeft !== null && !vipBusy && lease !== null && fencedFor === lease.deadline && now - vipTried >= IDLE_WAKE_MS) {
      // A removal that failed is tried again (once a second) while the fenced lease is the last one:
      // the new leader adds the address, which must not stay here as well. Not awaited (an `ip`
      // may take its 3 s): the rounds go on reading the lease; the same failure is logged once.
      vipTried = now;
      vipBusy = true;
      const again = vipLeft;
      void import("./vip-release.ts").then((m) => m.releaseVip(stateDir, again, { info: log.info, warn: (m) => say("warn", m), error: (m) => say("error", m) }))
        .then((r) => { if (r !== "failed") vipLeft = null; }, () => {})
        .finally(() => { vipBusy = false; });
    }
    // /proc/uptime has a 10 ms resolution: wake 1 ms past the deadline, and again if it read early.
    let next = armed && now <= lease.deadline! ? Math.max(1, lease.deadline! - now + 1) : IDLE_WAKE_MS;
    // The kernel device needs a keepalive well within its timeout (at least 1 s).
    if (kernel.active) next = Math.min(next, kernel.timeoutS * 250, 250);
    return Math.min(next, watcher.ok && !torn ? IDLE_WAKE_MS : POLL_MS);
  };

  for (;;) {
    let sleepMs = POLL_MS;
    wake.clear(); // a change from here on wakes the next sleep at once
    try {
      const r = await round();
      if (r === false) {
        watcher.close();
        return;
      }
      sleepMs = r;
    } catch (e) {
      // Never die on a surprise: dying would end the fencing (and, with the device open, reset the host).
      say("error", `watchdog round failed: ${(e as Error).message}`);
    }
    await wake.sleep(sleepMs);
  }
}

/** A sleep that a notify() ends early; a notify() while awake makes the next sleep return at once. */
class Wake {
  private pending = false;
  private fire: (() => void) | null = null;
  clear(): void {
    this.pending = false;
  }
  notify(): void {
    this.pending = true;
    this.fire?.();
  }
  sleep(ms: number): Promise<void> {
    if (this.pending) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.fire = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.fire = done;
    });
  }
}

/**
 * Wakes on every change of the lease file (the agent replaces it by rename: watch the directory).
 * ok turns false when the watch cannot be set up or fails: the loop then polls every POLL_MS.
 */
function watchLease(stateDir: string, wake: Wake, log: WatchdogLog): { ok: boolean; close(): void } {
  const state = { ok: false, close: () => {} };
  try {
    const w: FSWatcher = watch(stateDir, { persistent: true }, (_event, name) => {
      if (name === null || name === LEASE_FILE) wake.notify();
    });
    w.on("error", (e) => {
      if (state.ok) log.warn(`watching ${stateDir} failed (${(e as Error).message}): polling the lease file every ${POLL_MS} ms`);
      state.ok = false;
      wake.notify();
    });
    state.ok = true;
    state.close = () => w.close();
  } catch (e) {
    log.warn(`cannot watch ${stateDir} (${(e as Error).message}): polling the lease file every ${POLL_MS} ms`);
  }
  return state;
}

/**
 * Whose processes a fence may signal: the lease's OS user. A lease an older agent wrote names
 * none; its watchdog took the data directory's owner, and so does this one (null: unreadable).
 */
function leaseOsUid(lease: Lease): number | null {
  if (lease.osUid !== undefined) return lease.osUid;
  try {
    return statSync(realpathSync(lease.dataDir)).uid;
  } catch {
    return null;
  }
}

/** Immediate shutdown of the postmaster; true when no postmaster runs afterwards. */
async function fence(lease: Lease, now: number, log: WatchdogLog): Promise<boolean> {
  const pid = readPidFile(join(lease.dataDir, "postmaster.pid"));
  if (pid === null || !alive(pid)) return true;
  // The OS user can write any pid into postmaster.pid: signal only that data directory's server.
  const osUid = leaseOsUid(lease);
  if (osUid === null) {
    log.error(`lease of term ${lease.term} expired, but the owner of ${lease.dataDir} cannot be read (an older agent's lease names no OS user): pid ${pid} not signalled, not fenced`);
    return false;
  }
  if (!isServerOf(pid, lease.dataDir, osUid)) {
    // A process of the OS user whose links it may not read (root without CAP_SYS_PTRACE, a
    // security module), or no way to see leftovers either: nothing is known, so the lease is not
    // counted as fenced (a kernel watchdog stays armed).
    const unreadable = procLinksUnreadable(pid, osUid) ?? (rootWithoutPtrace() ? "root without CAP_SYS_PTRACE" : null);
    if (unreadable) {
      log.error(`lease of term ${lease.term} expired, but pid ${pid} (from ${join(lease.dataDir, "postmaster.pid")}) cannot be checked (${unreadable}): not signalled, not fenced`);
      return false;
    }
    const left = leftoverProcesses(lease.dataDir, osUid);
    log.error(`lease of term ${lease.term} expired, but ${join(lease.dataDir, "postmaster.pid")} names pid ${pid}, which is not a PostgreSQL server of that data directory: not signalled${left.length ? ` (PostgreSQL processes ${left.join(", ")} still run there: not fenced)` : ""}`);
    return left.length === 0;
  }
  log.warn(`lease of term ${lease.term} expired ${now - lease.deadline!} ms ago: fencing PostgreSQL (postmaster ${pid}): SIGQUIT`);
  const t0 = performance.now();
  signal(pid, "SIGQUIT"); // it may be gone already: the agent fences at the same moment
  // Immediate shutdown ends the backends at once; if the postmaster lingers, kill it and its children.
  let gone = await waitGone(pid, HARD_KILL_AFTER_MS);
  if (!gone) {
    for (const child of childrenOf(pid)) signal(child, "SIGKILL");
    signal(pid, "SIGKILL");
    gone = await waitGone(pid, 5000);
  }
  log.warn(`PostgreSQL fenced: postmaster ${pid} ${gone ? "gone" : "still exiting"} after ${Math.round(performance.now() - t0)} ms`);
  return gone;
}

/**
 * `read`, and again every 1 ms while `fences` says its result is a torn read that would fence: the
 * first result that would not, or a torn one from a read begun TORN_RETRY_MS or more after the
 * first. Counted from when a read began, not from when it was judged: however long this process is
 * paused anywhere in the loop, one more read follows the pause before a torn read fences.
 */
export async function rereadTorn<R>(read: () => R, fences: (r: R) => boolean, clock = { now: () => performance.now(), sleep: (ms: number) => Bun.sleep(ms) }): Promise<R> {
  let began = clock.now();
  const end = began + TORN_RETRY_MS;
  let r = read();
  while (fences(r) && began < end) {
    await clock.sleep(1);
    began = clock.now();
    r = read();
  }
  return r;
}

const TORN_READS_SAID = "on every read in a row";
let unreadable = "";
/** The lease, null when there is none, "torn" when its check failed on every read; a file that exists but does not parse is said once. */
/**
 * The lease file now: its lease, "torn", or "unreadable" (removed, a read error, no lease in it):
 * that says nothing of the lease, so the last verified one stays in force (fail safe).
 */
function readLease(stateDir: string, log: WatchdogLog, at: { ino: number }, kept: Lease | null): Lease | null | "torn" | "unreadable" {
  const file = join(stateDir, LEASE_FILE);
  try {
    const lease = readCheckedLease(file, at);
    if (lease === null && kept === null) return null; // none yet (a watchdog started by hand before any agent)
    if (lease === null) throw new Error("no such file");
    if (lease !== "torn") unreadable = "";
    return lease;
  } catch (e) {
    const why = `${file} is unreadable (${(e as Error).message.split("\n")[0]}): keeping the last verified lease${kept ? ` (term ${kept.term}, deadline ${kept.deadline ?? "none"})` : " (none)"} and reading it again every ${POLL_MS} ms`;
    if (why !== unreadable) log.error(why);
    unreadable = why;
    return "unreadable";
  }
}

/** Alive and not a zombie (a dead postmaster waits for init to reap it; it serves nothing). */
function alive(pid: number): boolean {
  return !deadOrZombie(pid);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (!alive(pid)) return true;
    await Bun.sleep(5);
  }
  return false;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
