// `pgherd watchdog`: a tiny process beside the agent that stops PostgreSQL when the leader's
// lease runs out and nobody extended it (agent frozen, killed or cut off). It polls the lease
// file every POLL_MS and, past the deadline, sends SIGQUIT to the postmaster: PostgreSQL's
// immediate shutdown, which terminates every backend at once, so no further commit is
// acknowledged. It needs nothing from the agent's event loop.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { hostMonotonicMs } from "./clock.ts";
import { deadOrZombie } from "../postgres/orphans.ts";
import { LEASE_FILE, LeaseSchema, watchdogAlive, writeWatchdogPid, type Lease } from "./lease-file.ts";

const POLL_MS = 20;
const IDLE_EXIT_MS = 10_000;
const HARD_KILL_AFTER_MS = 100;

export async function runWatchdog(stateDir: string, log: Logger): Promise<void> {
  if (watchdogAlive(stateDir)) {
    log.info("another watchdog already watches this state dir");
    return;
  }
  writeWatchdogPid(stateDir);
  log.info(`fencing watchdog watching ${join(stateDir, LEASE_FILE)} every ${POLL_MS} ms`);
  let fencedFor: number | null = null;
  let idleSince: number | null = null;
  for (;;) {
    if (!existsSync(stateDir)) return log.info(`${stateDir} is gone: exiting`);
    const lease = readLease(stateDir);
    const now = hostMonotonicMs();
    // Nothing armed (or already fenced) and the agent gone: exit; the next agent starts a new watchdog.
    const idle = !lease || lease.deadline === null || fencedFor === lease.deadline;
    if (idle && (!lease || !alive(lease.agentPid))) {
      idleSince ??= now;
      if (now - idleSince > IDLE_EXIT_MS) return log.info("no armed lease and no agent: exiting");
    } else idleSince = null;
    if (lease && lease.deadline !== null && now > lease.deadline && fencedFor !== lease.deadline) {
      const pid = postmasterPid(lease.dataDir);
      if (pid !== null && alive(pid)) {
        log.warn(`lease of term ${lease.term} expired ${now - lease.deadline} ms ago: fencing PostgreSQL (postmaster ${pid}): SIGQUIT`);
        const t0 = performance.now();
        process.kill(pid, "SIGQUIT");
        // Immediate shutdown ends the backends at once; if the postmaster lingers, kill it and its children.
        let gone = await waitGone(pid, HARD_KILL_AFTER_MS);
        if (!gone) {
          for (const child of childrenOf(pid)) signal(child, "SIGKILL");
          signal(pid, "SIGKILL");
          gone = await waitGone(pid, 5000);
        }
        log.warn(`PostgreSQL fenced: postmaster ${pid} ${gone ? "gone" : "still exiting"} after ${Math.round(performance.now() - t0)} ms`);
      }
      fencedFor = lease.deadline;
    }
    await Bun.sleep(POLL_MS);
  }
}

function readLease(stateDir: string): Lease | null {
  try {
    return LeaseSchema.parse(JSON.parse(readFileSync(join(stateDir, LEASE_FILE), "utf8")));
  } catch {
    return null;
  }
}

function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
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

/** Processes whose parent is `pid` (/proc/<n>/stat field 4). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
