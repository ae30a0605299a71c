// Run PostgreSQL tools as child processes: as os_user (switched to when we are root, else we must
// already be that user: a non-root agent cannot run a tool as someone else), in their own process
// group (so a timeout kills helpers too), with a minimal, explicit environment (no inherited
// PG* variables; LC_ALL=C so messages we parse are English), and one log line per run with
// exit code, duration and stderr tail. Secrets (args, env, stdin) are masked in every log line.
// Never with the agent's ambient capabilities (caps.ts): pg_ctl starts PostgreSQL from here.
import { spawn } from "node:child_process";
import { withoutAmbientCaps } from "../caps.ts";
import type { Logger } from "../log.ts";
import { isRoot, lookupOsUser } from "./users.ts";

/** A value that must never appear in logs. */
export interface Secret { readonly secret: string }
export const secret = (value: string): Secret => ({ secret: value });
const isSecret = (v: unknown): v is Secret => typeof v === "object" && v !== null && "secret" in v;
const plain = (v: string | Secret): string => (isSecret(v) ? v.secret : v);

export interface ToolSpec {
  bin: string;
  args: ReadonlyArray<string | Secret>;
  /** OS user to run as: switched to when we are root; otherwise we must already be that user (else ToolError "spawn"). */
  user?: string;
  env?: Readonly<Record<string, string | Secret>>;
  timeoutMs: number;
  log: Logger;
  input?: string | Secret;
  cwd?: string;
  /** Called for every stderr line as it arrives (progress parsing). */
  onStderrLine?: (line: string) => void;
  /** Log success at debug instead of info (for frequent, harmless commands). */
  quiet?: boolean;
  /** Exit codes besides 0 that are a normal outcome (pg_waldump exits 1 at the end of the WAL): logged as a success. */
  normalExit?: ReadonlyArray<number>;
  /** Aborted: the tool's process group is stopped as at the timeout (SIGTERM, SIGKILL after a grace). */
  signal?: AbortSignal;
}

export interface ToolResult {
  /** Exit code; null when killed by a signal (including our timeout). */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The tail of what it printed: at most MAX_STDOUT characters. */
  stdout: string;
  /** It printed more than MAX_STDOUT characters: `stdout` holds the tail only (not a whole document). */
  stdoutCut?: true;
  stderr: string;
  ms: number;
}

export type ToolFailure = "spawn" | "exit" | "timeout";

export class ToolError extends Error {
  override readonly name = "ToolError";
  constructor(
    readonly tool: string,
    readonly failure: ToolFailure,
    readonly code: number | null,
    readonly stderr: string,
    readonly ms: number,
    message: string,
  ) {
    super(message);
  }
}

export const MAX_STDOUT = 4 << 20;
const MAX_STDERR = 256 << 10;
const KILL_GRACE_MS = 2000;

const toolName = (bin: string) => bin.slice(bin.lastIndexOf("/") + 1);
/** "pg_ctl start" rather than "pg_ctl" in result lines: the verb says which run this was. */
const label = (spec: ToolSpec) => {
  const first = spec.args[0];
  return typeof first === "string" && /^[a-z][a-z_-]*$/.test(first) ? `${toolName(spec.bin)} ${first}` : toolName(spec.bin);
};

/** Runs the tool. Resolves for every run that started (check `code`); rejects with ToolError only if it could not start. */
export async function runTool(spec: ToolSpec): Promise<ToolResult> {
  const name = toolName(spec.bin);
  const secrets = collectSecrets(spec);
  const redact = (s: string) => secrets.reduce((acc, v) => acc.split(v).join("***"), s);
  const asUser = spec.user !== undefined && isRoot() ? await lookupOsUser(spec.user) : undefined;
  // A name that resolves to uid 0 (an alias of root): never run a tool as root on a configured user's behalf.
  if (asUser?.uid === 0) throw new ToolError(name, "spawn", null, "", 0, `${name} not started: postgres.os_user "${spec.user}" is uid 0 (root); it must be the PostgreSQL server's own user`);
  if (spec.user !== undefined && !isRoot()) await mustAlreadyBe(spec.user, name);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    LC_ALL: "C",
    LANG: "C",
    HOME: asUser?.home ?? process.env.HOME ?? "/",
    ...(asUser ? { USER: asUser.name, LOGNAME: asUser.name } : {}),
    ...(process.env.TZ ? { TZ: process.env.TZ } : {}),
  };
  for (const [k, v] of Object.entries(spec.env ?? {})) env[k] = plain(v);

  const shown = [name, ...spec.args.map((a) => (isSecret(a) ? "***" : shellQuote(a)))].join(" ");
  const envShown = Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${isSecret(v) ? "***" : v}`).join(" ");
  spec.log.debug(`run: ${envShown ? envShown + " " : ""}${shown}${asUser ? ` (as ${asUser.name})` : ""}`);

  let argv: [string, ...string[]];
  try {
    argv = withoutAmbientCaps([spec.bin, ...spec.args.map(plain)]);
  } catch (e) {
    spec.log.error(`${name}: ${(e as Error).message}`);
    throw new ToolError(name, "spawn", null, "", 0, `${name}: ${(e as Error).message}`);
  }
  const started = performance.now();
  const child = spawn(argv[0], argv.slice(1), {
    cwd: spec.cwd ?? "/",
    env,
    detached: true, // own process group: the timeout can kill the whole tree
    stdio: [spec.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    ...(asUser ? { uid: asUser.uid, gid: asUser.gid } : {}),
  });

  const out = capped(MAX_STDOUT);
  const err = capped(MAX_STDERR);
  let partial = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => out.push(d));
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err.push(d);
    if (!spec.onStderrLine) return;
    const lines = (partial + d).split(/\r\n|\r|\n/);
    partial = lines.pop() ?? "";
    for (const l of lines) if (l) safeCall(spec.onStderrLine, l);
  });
  if (spec.input !== undefined && child.stdin) {
    child.stdin.on("error", () => {}); // EPIPE when the tool exits without reading: its exit code tells the story
    child.stdin.end(plain(spec.input));
  }

  let timedOut = false;
  let stopped = false;
  const killGroup = (sig: NodeJS.Signals) => {
    try { if (child.pid) process.kill(-child.pid, sig); } catch { /* already gone */ }
  };
  let hardKill: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    killGroup("SIGTERM");
    hardKill = setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, spec.timeoutMs);
  spec.signal?.addEventListener("abort", stop, { once: true });
  if (spec.signal?.aborted) stop();

  const closed = new Promise((r) => child.once("close", r));
  const exit = await new Promise<{ code: number | null; signal: string | null } | Error>((resolve) => {
    child.once("error", (e) => resolve(e));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  spec.signal?.removeEventListener("abort", stop);
  // A grandchild (e.g. a daemon) may keep our pipes open: give the streams a moment, then stop reading.
  let grace: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([closed, new Promise((r) => { grace = setTimeout(r, 200); })]);
  clearTimeout(grace);
  if (hardKill) clearTimeout(hardKill);
  if (stopped) killGroup("SIGKILL"); // helpers that outlived the leader (e.g. pg_basebackup's WAL streamer)
  child.stdout?.destroy();
  child.stderr?.destroy();
  if (partial && spec.onStderrLine) safeCall(spec.onStderrLine, partial);
  const ms = Math.round(performance.now() - started);

  if (exit instanceof Error) {
    spec.log.warn(`${name}: could not start after ${ms} ms: ${exit.message}`);
    throw new ToolError(name, "spawn", null, "", ms, `${name}: could not start ${spec.bin}: ${exit.message}`);
  }
  const res: ToolResult = { ...exit, timedOut, stdout: redact(out.text()), ...(out.cut() ? { stdoutCut: true as const } : {}), stderr: redact(err.text()), ms };
  const tail = stderrTail(res.stderr);
  const how = timedOut ? `timed out after ${spec.timeoutMs} ms (killed)` : exit.code !== null ? `exited ${exit.code}` : `killed by ${exit.signal}`;
  const msg = `${label(spec)} ${how} in ${ms} ms${tail ? `; stderr: ${tail}` : ""}`;
  if ((exit.code !== 0 && !(exit.code !== null && spec.normalExit?.includes(exit.code))) || timedOut) spec.log.warn(msg);
  else if (spec.quiet) spec.log.debug(msg);
  else spec.log.info(msg);
  return res;
}

/** Not root: the tool runs as ourselves, so we must be `user`, or it would run as the wrong account. */
async function mustAlreadyBe(user: string, tool: string): Promise<void> {
  const u = await lookupOsUser(user);
  const me = process.getuid?.();
  if (me === undefined || me === u.uid) return;
  throw new ToolError(tool, "spawn", null, "", 0,
    `${tool}: must run as the OS user "${user}" (uid ${u.uid}), but this process runs as uid ${me}, which is neither that user nor root: run the agent as "${user}" or set postgres.os_user to its user`);
}

/** Like runTool but throws a ToolError unless the tool exited 0 within its deadline. */
export async function runToolOk(spec: ToolSpec): Promise<ToolResult> {
  const res = await runTool(spec);
  if (res.code === 0 && !res.timedOut) return res;
  const name = toolName(spec.bin);
  const failure: ToolFailure = res.timedOut ? "timeout" : "exit";
  const why = res.timedOut ? `timed out after ${spec.timeoutMs} ms` : res.code !== null ? `exited ${res.code}` : `killed by ${res.signal}`;
  const tail = stderrTail(res.stderr);
  throw new ToolError(name, failure, res.code, res.stderr, res.ms, `${name} ${why}${tail ? `: ${tail}` : ""}`);
}

/** Last few stderr lines, on one line, for log messages and errors. */
export function stderrTail(stderr: string, lines = 6, maxChars = 1200): string {
  const t = stderr.trim().split(/\r?\n/).filter(Boolean).slice(-lines).join(" | ");
  return t.length > maxChars ? "…" + t.slice(-maxChars) : t;
}

function collectSecrets(spec: ToolSpec): string[] {
  const all = [...spec.args, ...Object.values(spec.env ?? {}), ...(spec.input === undefined ? [] : [spec.input])];
  return all.filter(isSecret).map((s) => s.secret).filter((s) => s.length > 0);
}

function capped(max: number) {
  let buf = "";
  let dropped = false;
  return {
    push(d: string) { buf += d; if (buf.length > 2 * max) { buf = buf.slice(-max); dropped = true; } },
    text: () => (buf.length > max ? buf.slice(-max) : buf),
    cut: () => dropped || buf.length > max,
  };
}

function safeCall(fn: (l: string) => void, line: string) {
  try { fn(line); } catch { /* a buggy callback must not break the run */ }
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
