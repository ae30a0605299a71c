// Runs one hook executable: no shell, a clean environment (PATH, HOME, LANG and the PGHERD_*
// variables only: nothing of the agent's own environment leaks into it), its own process group,
// killed whole (SIGKILL) at the timeout. Its output is logged line by line. Never with the agent's
// ambient capabilities (caps.ts).
import { spawn } from "node:child_process";
import { withoutAmbientCaps } from "../caps.ts";
import type { Logger } from "../log.ts";
import { untrustedProgram } from "./trusted-path.ts";

export interface HookRun {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
  /** Could not be started (ENOENT, EACCES…). */
  spawnError: string | null;
}

/** Output kept per stream for the log; a hook that prints more is cut, not buffered forever. */
const MAX_OUTPUT = 16 * 1024;
const KEPT_ENV = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

export function runHook(o: { path: string; args: string[]; env: Record<string, string>; timeoutMs: number; log: Logger; name: string }): Promise<HookRun> {
  const t0 = performance.now();
  const env: Record<string, string> = { PATH: "/usr/local/bin:/usr/bin:/bin" };
  for (const k of KEPT_ENV) if (process.env[k]) env[k] = process.env[k]!;
  Object.assign(env, o.env);
  return new Promise((resolve) => {
    let done = false;
    let timedOut = false;
    const out = { stdout: "", stderr: "" };
    const finish = (r: Omit<HookRun, "ms" | "timedOut">) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const k of ["stdout", "stderr"] as const) {
        for (const line of out[k].split("\n").filter((l) => l.trim() !== "")) o.log.info(`hook ${o.name} ${k}: ${line.slice(0, 1000)}`);
      }
      resolve({ ...r, timedOut, ms: Math.round(performance.now() - t0) });
    };
    // Run as named ($0, its directory), once every directory its resolution passes through is one
    // only root or the agent's user may change (trusted-path.ts): nothing can be swapped in between.
    const untrusted = untrustedProgram(o.path);
    if (untrusted) return resolve({ code: null, signal: null, timedOut: false, ms: 0, spawnError: untrusted });
    let child: ReturnType<typeof spawn>;
    try {
      const [file, ...args] = withoutAmbientCaps([o.path, ...o.args]);
      child = spawn(file, args, { env, detached: true, stdio: ["ignore", "pipe", "pipe"], cwd: "/" });
    } catch (e) {
      return resolve({ code: null, signal: null, timedOut: false, ms: 0, spawnError: (e as Error).message });
    }
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
      // A grandchild that left the group may still hold the pipes: do not wait for them.
      setTimeout(() => finish({ code: null, signal: "SIGKILL", spawnError: null }), 1000).unref?.();
    }, o.timeoutMs);
    for (const k of ["stdout", "stderr"] as const) {
      child[k]!.setEncoding("utf8");
      child[k]!.on("data", (d: string) => {
        if (out[k].length < MAX_OUTPUT) out[k] += d.slice(0, MAX_OUTPUT - out[k].length);
      });
    }
    child.on("error", (e) => finish({ code: null, signal: null, spawnError: e.message }));
    child.on("close", (code, signal) => finish({ code, signal, spawnError: null }));
    child.on("exit", (code, signal) => {
      // Exited: the timeout no longer counts (review: one falling in the second below reported a
      // hook that exited 0 in time as timed out, a false pre_promote veto).
      clearTimeout(timer);
      // The hook is gone; children it left in its group go with it. One that left the group
      // (setsid) may hold the pipes open: the result does not wait for it.
      killGroup(child.pid);
      setTimeout(() => finish({ code, signal, spawnError: null }), 1000).unref?.();
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch { /* already gone */ }
}

/** One line for the log and the history: "exit 0 in 12 ms", "killed after the 2000 ms timeout". */
export function describeRun(r: HookRun, timeoutMs: number): string {
  if (r.spawnError) return `could not be started: ${r.spawnError}`;
  if (r.timedOut) return `killed after the ${timeoutMs} ms timeout`;
  if (r.code !== null) return `exit ${r.code} in ${r.ms} ms`;
  return `killed by ${r.signal} after ${r.ms} ms`;
}

export function succeeded(r: HookRun): boolean {
  return !r.spawnError && !r.timedOut && r.code === 0;
}
