// The demo's agent processes: each in its own process group (a terminal's Ctrl-C reaches only
// the demo, which then stops them in order), output appended to a log file in the scratch dir.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import type { DemoNode } from "./config.ts";

export class AgentProc {
  readonly pid: number;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  readonly exited: Promise<void>;

  constructor(readonly node: DemoNode, pgherd: readonly string[]) {
    const fd = openSync(node.logFile, "a", 0o644);
    try {
      const [bin, ...pre] = pgherd;
      if (!bin) throw new Error("empty pgherd command");
      const env = { ...process.env };
      delete env.PGHERD_CONFIG; // --config decides; never an inherited path
      const child = spawn(bin, [...pre, "agent", "--config", node.configPath], {
        cwd: node.dir, env, detached: true, stdio: ["ignore", fd, fd],
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

/** Last `n` lines of a log file ("" if unreadable). */
export function logTail(path: string, n: number): string {
  try {
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    return lines.slice(-n).join("\n");
  } catch {
    return "";
  }
}
