// Child processes for tests: run-to-completion (`run`), long-running (`Proc`), and
// `waitFor`, the one polling helper every test uses instead of sleeping.
// node:child_process, not Bun.spawn: Bun.spawn runs `uid: NaN` as root (see stack notes).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { z } from "zod";

export interface WaitForOptions { timeoutMs: number; intervalMs?: number; what: string }

/**
 * Polls `fn` until it returns something other than undefined/null/false, and returns that.
 * Errors thrown by `fn` count as "not yet" (e.g. ECONNREFUSED while a server starts) and the
 * last one is quoted in the timeout error. A call that hangs is cut off at the deadline.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  { timeoutMs, intervalMs = 50, what }: WaitForOptions,
): Promise<T> {
  const start = performance.now();
  const deadline = start + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const left = deadline - performance.now();
    try {
      const v = await withDeadline(Promise.resolve().then(fn), Math.max(left, 1));
      if (v !== undefined && v !== null && v !== false) return v as T;
    } catch (e) {
      lastError = e;
    }
    const now = performance.now();
    if (now >= deadline) {
      const why = lastError === undefined ? "" : ` (last error: ${errorText(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${why}`);
    }
    await Bun.sleep(Math.min(intervalMs, deadline - now));
  }
}

const DEADLINE = Symbol("deadline");
async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<typeof DEADLINE>((r) => { timer = setTimeout(() => r(DEADLINE), ms); });
  try {
    const v = await Promise.race([p, t]);
    if (v === DEADLINE) throw new Error(`call still running after ${Math.round(ms)}ms`);
    return v as T;
  } finally {
    clearTimeout(timer);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---- last-resort cleanup: synchronous work to do if the test process exits or is signalled ----

const exitHooks = new Set<() => void>();
let hooksInstalled = false;

/** Registers synchronous cleanup run on process exit, SIGINT and SIGTERM. Returns an unregister fn. */
export function onExitCleanup(fn: () => void): () => void {
  exitHooks.add(fn);
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on("exit", runExitHooks);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.on(sig, () => {
        runExitHooks();
        process.exit(128 + constants.signals[sig]);
      });
    }
  }
  return () => exitHooks.delete(fn);
}

function runExitHooks(): void {
  for (const fn of [...exitHooks]) {
    exitHooks.delete(fn);
    try { fn(); } catch { /* best effort: the process is going away */ }
  }
}

// ---- run: a command to completion ----

export interface RunResult { code: number; stdout: string; stderr: string }
export interface RunOptions {
  timeoutMs?: number; env?: Record<string, string>; cwd?: string; input?: string;
  /** Run as this OS user (setpriv; we must be root). The working directory then defaults to "/". */
  user?: string;
  /** With `user`: capabilities it keeps as ambient ones (asUser), e.g. ["net_admin"]. */
  caps?: readonly string[];
}

/** Runs `cmd` to completion. `code` is 128+signal if it was killed. Throws only on timeout or spawn failure. */
export function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const as = asUser(opts.user, opts.env, opts.caps);
    const child = startChild([...as.prefix, ...cmd], as.env, opts.cwd ?? as.cwd);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.stdin?.on("error", () => { /* child may exit before reading its input */ });
    child.stdin?.end(opts.input ?? "");
    const timer = setTimeout(() => {
      killGroup(child.pid, "SIGKILL");
      reject(new Error(`timed out after ${timeoutMs}ms running: ${describe(cmd)}`));
    }, timeoutMs);
    child.on("error", (e) => { clearTimeout(timer); reject(new Error(`cannot run ${describe(cmd)}: ${e.message}`)); });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? 128 + (signal ? constants.signals[signal] : 0),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
  });
}

/** Like `run`, but a non-zero exit is an error quoting stderr. */
export async function mustRun(cmd: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new Error(`${describe(cmd)} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

// detached = own process group, so a timeout or stop() can take the whole tree down.
function startChild(cmd: string[], env?: Record<string, string>, cwd?: string): ChildProcess {
  const [file, ...args] = cmd;
  if (!file) throw new Error("empty command");
  return spawn(file, args, {
    env: env ? { ...process.env, ...env } : process.env,
    cwd,
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  for (const target of [-pid, pid]) {
    try { process.kill(target, signal); } catch { /* already gone */ }
  }
}

function describe(cmd: string[]): string {
  const s = cmd.join(" ");
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

// ---- running as another user ----

const Passwd = z.object({
  uid: z.string().regex(/^\d+$/, "uid is not a number").transform(Number),
  gid: z.string().regex(/^\d+$/, "gid is not a number").transform(Number),
  home: z.string().min(1),
});
export type PasswdEntry = z.infer<typeof Passwd>;
const users = new Map<string, PasswdEntry>();

/** uid, gid and home of `user` (getent), cached. */
export function lookupUser(user: string): PasswdEntry {
  const cached = users.get(user);
  if (cached) return cached;
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) throw new Error(`invalid user name ${JSON.stringify(user)}`);
  let line: string;
  try {
    line = execFileSync("getent", ["passwd", user], { stdio: "pipe" }).toString().trim();
  } catch {
    throw new Error(`unknown user ${JSON.stringify(user)}`);
  }
  const f = line.split(":");
  const parsed = Passwd.safeParse({ uid: f[2], gid: f[3], home: f[5] });
  if (!parsed.success) throw new Error(`bad passwd entry for ${user}: ${parsed.error.issues.map((i) => i.message).join(", ")}`);
  users.set(user, parsed.data);
  return parsed.data;
}

/**
 * The command prefix, environment and working directory that run a command as `user`: setpriv,
 * so it also works inside `ip netns exec` (which needs root). The working directory is "/", as
 * in the product's runTool: the checkout may sit in a directory `user` cannot enter (anything
 * under /root is 0700), and PostgreSQL's tools refuse to start there. `caps` (e.g. "net_admin")
 * stay with it as ambient capabilities, kept across its execs; it has no others.
 */
export function asUser(user: string | undefined, env?: Record<string, string>, caps: readonly string[] = []): { prefix: string[]; env?: Record<string, string>; cwd?: string } {
  if (user === undefined) return { prefix: [], env };
  const u = lookupUser(user);
  for (const c of caps) if (!/^[a-z_]+$/.test(c)) throw new Error(`invalid capability name ${JSON.stringify(c)}`);
  const add = caps.map((c) => `+${c}`).join(",");
  return {
    prefix: ["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", ...(caps.length ? ["--inh-caps", add, "--ambient-caps", add] : []), "--"],
    env: { HOME: u.home, USER: user, LOGNAME: user, ...env },
    cwd: "/",
  };
}

/**
 * Throws unless every uid of process `pid` (real, effective, saved, filesystem) is `user`'s:
 * the e2e harness checks each agent it starts with this, so no e2e test runs an agent as root.
 */
export function assertRunsAs(pid: number, user: string, what: string): void {
  const want = lookupUser(user).uid;
  let uids: number[];
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("Uid:")) ?? "";
    uids = line.split(/\s+/).slice(1).filter(Boolean).map(Number);
  } catch (e) {
    throw new Error(`${what} (pid ${pid}): cannot read its uids: ${(e as Error).message}`);
  }
  if (uids.length !== 4 || uids.some((u) => u !== want)) {
    throw new Error(`${what} (pid ${pid}) runs with uids ${uids.join("/")} (real/effective/saved/fs), not as ${user} (uid ${want})`);
  }
}

// ---- Proc: a long-running child whose output tests wait on ----

export interface ProcOptions {
  env?: Record<string, string>; logFile?: string; cwd?: string;
  /** Run as this OS user (setpriv; we must be root). The working directory then defaults to "/". */
  user?: string;
}

const liveProcs = new Set<Proc>();
// How long after 'exit' we still wait for buffered output: a grandchild holding the pipe
// would otherwise keep 'close' from ever firing.
const OUTPUT_GRACE_MS = 500;

export class Proc {
  readonly pid: number;
  /** stdout and stderr lines, in arrival order. */
  readonly lines: string[] = [];
  exited = false;
  exitCode: number | null = null;
  signal: NodeJS.Signals | null = null;
  private outputDone = false;
  private readonly wakeups = new Set<() => void>();
  private readonly child: ChildProcess;
  private readonly label: string;

  constructor(readonly cmd: string[], private readonly opts: ProcOptions = {}) {
    this.label = describe(cmd);
    const as = asUser(opts.user, opts.env);
    this.child = startChild([...as.prefix, ...cmd], as.env, opts.cwd ?? as.cwd);
    let spawnError: Error | undefined;
    this.child.on("error", (e) => { spawnError = e; this.onExit(null, null); this.finishOutput(); });
    if (this.child.pid === undefined) throw new Error(`cannot start ${this.label}${spawnError ? `: ${spawnError.message}` : ""}`);
    this.pid = this.child.pid;
    this.child.stdin?.end();
    this.collect(this.child.stdout);
    this.collect(this.child.stderr);
    this.child.on("exit", (code, signal) => {
      this.onExit(code, signal);
      setTimeout(() => this.finishOutput(), OUTPUT_GRACE_MS).unref();
    });
    this.child.on("close", () => this.finishOutput());
    liveProcs.add(this);
    onExitCleanup(killLiveProcs);
  }

  /** Resolves with the first line (already collected or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string> {
    let seen = 0;
    return this.waitUntil(timeoutMs, `a line matching ${re}`, () => {
      for (; seen < this.lines.length; seen++) {
        const line = this.lines[seen]!;
        re.lastIndex = 0;
        if (re.test(line)) return line;
      }
      if (this.outputDone) throw new Error(`${this.label} ${this.status()} before printing a line matching ${re}${this.tail()}`);
      return undefined;
    });
  }

  /** Resolves with the exit code (null if killed by a signal; see `signal`). */
  waitExit(timeoutMs: number): Promise<number | null> {
    return this.waitUntil(timeoutMs, "exit", () => (this.exited ? { code: this.exitCode } : undefined)).then((r) => r.code);
  }

  /** Signals the process itself (not its children). */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.exited) return;
    try { process.kill(this.pid, signal); } catch { /* raced with exit */ }
  }

  /** SIGTERM, then SIGKILL to the whole process group if it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (!this.exited) {
      this.kill("SIGTERM");
      try {
        await this.waitExit(timeoutMs);
      } catch {
        killGroup(this.pid, "SIGKILL");
        await this.waitExit(5_000);
      }
    }
    killGroup(this.pid, "SIGKILL"); // leftover children in its group
  }

  private waitUntil<T>(timeoutMs: number, what: string, check: () => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const finish = (fn: () => void) => { clearTimeout(timer); this.wakeups.delete(poll); fn(); };
      const poll = () => {
        try {
          const v = check();
          if (v !== undefined) finish(() => resolve(v));
        } catch (e) {
          finish(() => reject(e));
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what} from ${this.label}${this.tail()}`))),
        timeoutMs,
      );
      this.wakeups.add(poll);
      poll();
    });
  }

  private collect(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      this.addLines(parts);
    });
    stream.on("end", () => { if (partial) this.addLines([partial]); partial = ""; });
  }

  private addLines(lines: string[]): void {
    if (lines.length === 0) return;
    this.lines.push(...lines);
    if (this.opts.logFile) {
      try { appendFileSync(this.opts.logFile, lines.join("\n") + "\n"); } catch { /* logging must not break the test */ }
    }
    this.wake();
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    this.exitCode = code;
    this.signal = signal;
    this.wake();
  }

  private finishOutput(): void {
    if (this.outputDone) return;
    this.outputDone = true;
    liveProcs.delete(this);
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.wakeups]) w();
  }

  private status(): string {
    return this.signal ? `was killed by ${this.signal}` : `exited with code ${this.exitCode}`;
  }

  private tail(): string {
    const t = this.lines.slice(-10);
    return t.length ? `; last lines:\n  ${t.join("\n  ")}` : "";
  }
}

function killLiveProcs(): void {
  for (const p of liveProcs) killGroup(p.pid, "SIGKILL");
}
