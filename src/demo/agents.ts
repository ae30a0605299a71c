// The demo's agent processes: each in its own process group (a terminal's Ctrl-C reaches only
// the demo, which then stops them in order), output appended to a log file in the scratch dir.
// Started as root, the demo runs them as the PostgreSQL OS user, as deploy/pgherd.service does.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, closeSync, constants as C, copyFileSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { DemoNode } from "./config.ts";

/** The OS user an agent runs as when the demo runs as root. */
export interface RunAs { name: string; uid: number; gid: number; home: string }

export class AgentProc {
  readonly pid: number;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  readonly exited: Promise<void>;

  constructor(readonly node: DemoNode, pgherd: readonly string[], as?: RunAs) {
    // The node's directory belongs to the agents' user: never follow a link it may have put there.
    const fd = openSync(node.logFile, C.O_WRONLY | C.O_APPEND | C.O_CREAT | C.O_NOFOLLOW, 0o644);
    try {
      const [bin, ...pre] = pgherd;
      if (!bin) throw new Error("empty pgherd command");
      const env: Record<string, string | undefined> = { ...process.env, ...(as ? { HOME: as.home, USER: as.name, LOGNAME: as.name } : {}) };
      delete env.PGHERD_CONFIG; // --config decides; never an inherited path
      const child = spawn(bin, [...pre, "agent", "--config", node.configPath], {
        cwd: node.dir, env, detached: true, stdio: ["ignore", fd, fd], ...(as ? { uid: as.uid, gid: as.gid } : {}),
      });
      this.exited = new Promise((resolve) => {
        child.once("exit", (code, signal) => { this.exitCode = code; this.exitSignal = signal; resolve(); });
        child.once("error", (e) => { this.exitSignal = `spawn error: ${e.message}`; resolve(); });
      });
      if (child.pid === undefined) throw new Error(`cannot start ${bin}`);
      this.pid = child.pid;
    } finally {
      closeSync(fd);
    }
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  describeExit(): string {
    return this.exitSignal ? `killed by ${this.exitSignal}` : `exited ${this.exitCode}`;
  }

  /** SIGTERM (the agent leaves PostgreSQL running), then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), graceMs); }),
    ]);
    clearTimeout(timer);
    if (late) {
      this.signal("SIGKILL");
      await this.exited;
    }
  }

  private signal(sig: NodeJS.Signals): void {
    try { process.kill(this.pid, sig); } catch { /* already gone */ }
  }
}

/**
 * The pgherd command `as` can run: `pgherd` itself, else (a compiled binary in a directory `as`
 * cannot enter, e.g. a checkout under /root) a copy in `dir`. Throws why not.
 */
export function commandFor(as: RunAs, pgherd: readonly string[], dir: string): string[] {
  const why = cannotRun(pgherd, as);
  if (!why) return [...pgherd];
  if (pgherd.length === 1) {
    const copy = join(dir, "pgherd");
    copyFileSync(pgherd[0]!, copy);
    chmodSync(copy, 0o755);
    if (!cannotRun([copy], as)) return [copy];
  }
  throw new Error(`the OS user ${as.name} cannot run ${pgherd.join(" ")} (${why}): put pgherd where it can read it, e.g. /usr/local/bin`);
}

/** Why `as` cannot run the pgherd command (`pgherd version`), or null when it can. */
function cannotRun(pgherd: readonly string[], as: RunAs): string | null {
  const [bin, ...pre] = pgherd;
  if (!bin) return "empty pgherd command";
  const r = spawnSync(bin, [...pre, "version"], { uid: as.uid, gid: as.gid, cwd: "/", timeout: 30_000, encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: as.home } });
  if (r.status === 0) return null;
  return (r.error?.message ?? r.stderr?.trim()) || `exit ${r.status ?? r.signal}`;
}

/** Last `n` lines of a log file ("" if unreadable). */
export function logTail(path: string, n: number): string {
  try {
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    return lines.slice(-n).join("\n");
  } catch {
    return "";
  }
}
