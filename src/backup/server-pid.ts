// The pid file of the agent's `pgbackrest server` (<data_dir>.pgbackrest/tls-server.pid): written
// when it starts, removed when it stops. An agent killed with SIGKILL leaves its server running,
// holding the port with the old certificate; the next agent stops that leftover before it starts
// its own, and only when /proc shows that pid is still a `pgbackrest server` with this node's
// config, run by the PostgreSQL OS user (a recycled pid is left alone).
import type { Logger } from "../log.ts";
import { SafeDir, type Owner } from "../postgres/fsutil.ts";
import { pidAlive } from "../postgres/datadir.ts";
import { pgbackrestArgs } from "./backup-proc.ts";

const FILE = "tls-server.pid";

export async function recordServerPid(dir: string, owner: Owner, pid: number): Promise<void> {
  const d = await SafeDir.open(dir, { osUser: owner });
  try {
    await d.writeAtomic(FILE, `${pid}\n`, { mode: 0o600, owner });
  } finally {
    await d.close();
  }
}

export async function clearServerPid(dir: string, owner: Owner): Promise<void> {
  const d = await SafeDir.open(dir, { osUser: owner });
  try {
    await d.remove(FILE);
  } finally {
    await d.close();
  }
}

/** Whether `pid` runs pgbackrest's server with config `conf` as `uid` (false when it is gone or anything else). */
export function isOurServer(pid: number, uid: number, conf: string): boolean {
  return pgbackrestArgs(pid, uid, conf, "server") !== null;
}


/** Stop the server a previous agent recorded, if it still runs (SIGTERM, SIGKILL after 5 s); true when one was stopped. */
export async function stopLeftoverServer(dir: string, owner: Owner, conf: string, log: Logger): Promise<boolean> {
  const d = await SafeDir.open(dir, { osUser: owner });
  let text: string | null;
  try {
    text = await d.readText(FILE);
  } finally {
    await d.close();
  }
  const pid = Number(text?.trim());
  if (!text) return false;
  let stopped = false;
  if (Number.isInteger(pid) && pid > 1 && isOurServer(pid, owner.uid, conf)) {
    log.warn(`pgBackRest TLS server ${pid} of an earlier agent still runs (that agent was killed): stopping it`);
    signal(pid, "SIGTERM");
    for (let i = 0; i < 50 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (pidAlive(pid) && isOurServer(pid, owner.uid, conf)) signal(pid, "SIGKILL");
    stopped = true;
  }
  await clearServerPid(dir, owner);
  return stopped;
}

/** A signal to a process that may have exited since it was checked (ESRCH: gone, nothing to do). */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
  }
}
