// A live process that reads as the fencing watchdog of a state dir (watchdog-files.ts livingWatchdog:
// the pid file's process runs `watchdog --state-dir <dir>`), so a LeaseFile starts no real one.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WATCHDOG_PID_FILE } from "../../src/fence/watchdog-files.ts";

const fakes: ChildProcess[] = [];

/** Starts the fake for `stateDir` (as `as`, else this process's user) and writes its pid file; returns its pid once its command line reads as a watchdog's. */
export function fakeWatchdog(stateDir: string, as?: { uid: number; gid: number }): number {
  // A process group of its own: killFakeWatchdogs ends bash and its sleep together.
  const p = spawn("bash", ["-c", "sleep 600; :", "watchdog", "--state-dir", stateDir], { stdio: "ignore", detached: true, cwd: "/", ...as });
  fakes.push(p);
  const pid = p.pid;
  if (pid === undefined) throw new Error("fakeWatchdog: bash did not start");
  // Until bash's exec completes, /proc/PID/cmdline is still this process's.
  const end = performance.now() + 5000;
  const ready = () => { try { return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`--state-dir\0${stateDir}`); } catch { return false; } };
  while (!ready()) {
    if (performance.now() > end) throw new Error(`fakeWatchdog: pid ${pid} never showed its command line`);
    Bun.sleepSync(1);
  }
  writeFileSync(join(stateDir, WATCHDOG_PID_FILE), `${pid}\n`);
  return pid;
}

/** Ends every fake this process started (afterAll). */
export function killFakeWatchdogs(): void {
  for (const p of fakes.splice(0)) {
    try {
      if (p.pid !== undefined) process.kill(-p.pid, "SIGKILL");
    } catch { /* gone */ }
  }
}
