// Runs the compiled agent (dist/pgherd) for end-to-end tests: in a lab host's network namespace,
// or, with host = null, in this process's own namespace (loopback tests). Logs live under
// test-artifacts/<test>/<pid>/ (git-ignored) so a failed run can be read afterwards.
//
// Agents run as the PostgreSQL OS user (PG_OS_USER), as deploy/pgherd.service runs them, from
// agentBinary(). Each agent gets a scratch dir of that user's under /tmp (the checkout may be
// where postgres cannot enter) with its config (0600), state_dir and data_dir; stopAgents() stops
// what the agent left running (PostgreSQL on purpose, the fencing watchdog), copies the server
// log and state next to the agent's log in the artifacts, and removes the scratch dir.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "smol-toml";
import { z } from "zod";
import { BINARY, ROOT } from "../../scripts/build.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import type { Host } from "./lab.ts";
import { PG_OS_USER } from "./pg.ts";
import { assertRunsAs, lookupUser, onExitCleanup, Proc, run, waitFor, type RunResult } from "./proc.ts";
import { pidAlive } from "../../src/postgres/datadir.ts";

export interface AgentSpec {
  name: string;
  secret: string;
  cluster: string;
  bootstrapExpect: number;
  /** More TOML (e.g. "[mesh]\nlisten = ..."); merged into the generated file, so it may extend [postgres]. */
  extra?: string;
  /** The test's artifacts directory, from artifactsDir(). */
  dir: string;
}

// The subset of GET /node the tests read; unknown fields are ignored so the API may grow.
const counts = z.record(z.string(), z.number().int().nonnegative());
export const nodeStatusSchema = z.object({
  cluster: z.string(),
  node: z.object({ id: z.string().min(1), name: z.string(), role: z.string() }),
  election: z.object({
    role: z.string(),
    term: z.number().int().nonnegative(),
    leader: z.string().nullable(),
    leaderName: z.string().nullable(),
    leading: z.boolean(),
    leaseRemainingMs: z.number().nonnegative(),
    voters: z.array(z.object({ id: z.string(), name: z.string() })),
    membershipVersion: z.string().nullable(),
  }),
  peers: z.array(z.object({ id: z.string(), name: z.string(), connected: z.boolean() })),
  rejects: z.object({ beacon: counts, mesh: counts }),
  postgres: z.object({ action: z.string(), streaming: z.boolean(), inRecovery: z.boolean().nullable() }).nullable().optional(),
});
export type NodeStatus = z.infer<typeof nodeStatusSchema>;

export interface RunningAgent {
  name: string;
  host: Host | null;
  proc: Proc;
  configPath: string;
  stateDir: string;
  dataDir: string;
  logFile: string;
  /** `pgherd status --json`, run where the agent runs (its API listens on that namespace's loopback). */
  status(): Promise<NodeStatus>;
  /** Log lines (stderr) matching `re`, oldest first. */
  linesMatching(re: RegExp): string[];
  /** Timestamp of the first log line matching `re`. */
  timeOf(re: RegExp): Date | undefined;
}

/** PGHERD_TEST_BINARY runs the tests against another build (e.g. a deliberately broken one). */
export const AGENT_BINARY = process.env.PGHERD_TEST_BINARY || BINARY;

/**
 * AGENT_BINARY as a path PG_OS_USER can execute: itself when that user can reach it, else a copy
 * in /tmp (the checkout may sit where postgres cannot enter, e.g. under /root). The copy is
 * refreshed when the build changes; a running agent keeps the file it started from.
 */
export function agentBinary(): string {
  const u = lookupUser(PG_OS_USER);
  const reachable = spawnSync("setpriv", [`--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "test", "-x", AGENT_BINARY], { cwd: "/" }).status === 0;
  return reachable ? AGENT_BINARY : copyForAgents(AGENT_BINARY);
}

function copyForAgents(src: string): string {
  // One directory per source path (worktrees run their own builds), root's, not writable by others.
  const dir = `/tmp/pgherd-agent-bin-${createHash("sha256").update(src).digest("hex").slice(0, 12)}`;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const d = lstatSync(dir);
  if (!d.isDirectory() || d.uid !== process.getuid?.() || (d.mode & 0o022) !== 0) throw new Error(`${dir} is not a directory of ours that only we can write: remove it`);
  const dst = join(dir, "pgherd");
  const s = statSync(src);
  const cur = statSync(dst, { throwIfNoEntry: false });
  if (!cur || cur.size !== s.size || cur.mtimeMs !== s.mtimeMs) {
    const tmp = `${dst}.${process.pid}`;
    copyFileSync(src, tmp);
    chmodSync(tmp, 0o755);
    utimesSync(tmp, s.atime, s.mtime);
    renameSync(tmp, dst);
  }
  return dst;
}
const STARTUP_MS = 20_000;
const STATUS_MS = 5_000;
const STOP_MS = 10_000;
const KEEP_RUNS_MS = 3_600_000;

/**
 * test-artifacts/<test>/<pid>/, fresh for this run. Per process, because colleagues run the same
 * tests at the same time in this checkout: a shared directory would delete each other's state.
 * Directories of finished runs are removed after KEEP_RUNS_MS, so a failed run stays readable.
 */
export function artifactsDir(test: string): string {
  if (!/^[a-z0-9-]+$/.test(test)) throw new Error(`artifactsDir: bad test name ${JSON.stringify(test)}`);
  const base = join(ROOT, "test-artifacts", test);
  mkdirSync(base, { recursive: true });
  for (const entry of readdirSync(base)) {
    const path = join(base, entry);
    if (/^\d+$/.test(entry) && Number(entry) !== process.pid && !pidAlive(Number(entry)) && Date.now() - statSync(path).mtimeMs > KEEP_RUNS_MS) {
      rmSync(path, { recursive: true, force: true });
    }
  }
  const dir = join(base, String(process.pid));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Writes the config, starts `pgherd agent` and waits until its API listens. */
export async function startAgent(host: Host | null, spec: AgentSpec): Promise<RunningAgent> {
  if (!/^[a-z0-9-]+$/.test(spec.name)) throw new Error(`startAgent: bad agent name ${JSON.stringify(spec.name)}`);
  // Config and state in the agent's scratch dir under /tmp (postgres must reach them; the
  // checkout may be where it cannot), its log in the artifacts.
  const dataDir = await makeDataDir(spec.name);
  const scratch = join(dataDir, "..");
  const configPath = join(scratch, "pgherd.toml");
  const stateDir = join(scratch, "state");
  const logFile = join(spec.dir, `${spec.name}.log`);
  rmSync(logFile, { force: true });

  // node_name, state_dir and postgres.data_dir are set only because the lab's "hosts" share one
  // filesystem and one host name: with the defaults every agent would have the same name, state
  // and data directory. Everything else stays at its default unless `extra` says otherwise.
  let extra: Record<string, unknown>;
  try {
    extra = parse(spec.extra ?? "");
  } catch (e) {
    throw new Error(`startAgent ${spec.name}: extra is not valid TOML: ${(e as Error).message}`);
  }
  const cfg = merge({
    cluster: spec.cluster, secret: spec.secret, bootstrap_expect: spec.bootstrapExpect,
    node_name: spec.name, state_dir: stateDir, postgres: { data_dir: dataDir },
  }, extra);
  writeFileSync(configPath, `${stringify(cfg)}\n`, { mode: 0o600 });
  const u = await lookupOsUser(PG_OS_USER);
  chownSync(configPath, u.uid, u.gid);

  return launch({ name: spec.name, host, configPath, stateDir, dataDir, logFile });
}

type AgentFiles = Pick<RunningAgent, "name" | "host" | "configPath" | "stateDir" | "dataDir" | "logFile">;

async function launch(f: AgentFiles): Promise<RunningAgent> {
  const cmd = [agentBinary(), "agent", "--config", f.configPath];
  const proc = f.host ? f.host.spawn(cmd, { logFile: f.logFile, user: PG_OS_USER }) : new Proc(cmd, { logFile: f.logFile, user: PG_OS_USER });
  const agent: RunningAgent = {
    ...f, proc,
    status: async () => {
      // Say so when the agent is gone (crash, or someone killed it by name): not "connection refused".
      if (proc.exited) throw new Error(`agent ${f.name} has exited (${proc.signal ?? `code ${proc.exitCode}`}); log: ${f.logFile}\n  ${proc.lines.slice(-5).join("\n  ")}`);
      return fetchStatus(f.host, f.configPath);
    },
    linesMatching: (re) => proc.lines.filter((l) => matches(re, l)),
    timeOf: (re) => {
      const line = proc.lines.find((l) => matches(re, l));
      return line === undefined ? undefined : lineTime(line);
    },
  };
  started.add(agent);
  try {
    await proc.waitForLine(/ api listening on /, STARTUP_MS);
    assertRunsAs(proc.pid, PG_OS_USER, `agent ${f.name}`); // never root (issue 10)
  } catch (e) {
    await stopAgents([agent]);
    throw new Error(`agent ${f.name} did not start (log: ${f.logFile}): ${(e as Error).message}`);
  }
  return agent;
}

/**
 * Restarts an agent's process on its own configuration and state (SIGTERM, then a new process:
 * PostgreSQL keeps running, as with the unit's KillMode=process). The new run logs to
 * `<name>-<n>.log` beside the first. The returned agent replaces `a` (stopAgents on it cleans up).
 */
export async function restartAgent(a: RunningAgent, n = 2): Promise<RunningAgent> {
  await a.proc.stop(STOP_MS);
  started.delete(a);
  return launch({ name: a.name, host: a.host, configPath: a.configPath, stateDir: a.stateDir, dataDir: a.dataDir, logFile: a.logFile.replace(/\.log$/, `-${n}.log`) });
}

/**
 * Stops agents (SIGTERM, SIGKILL after a grace period), then what they leave behind: their
 * PostgreSQL (immediate shutdown) and fencing watchdog. Copies the server log next to the agent
 * log and removes the data dir. Never throws: it runs in afterAll, also after a failure.
 */
export async function stopAgents(agents: Iterable<RunningAgent | undefined>): Promise<void> {
  await Promise.allSettled([...agents].map(async (a) => {
    if (!a) return;
    await a.proc.stop(STOP_MS).catch(() => {});
    await killLeftovers(a);
    const scratch = join(a.dataDir, "..");
    // The agent writes the server log beside the data dir: keep it with the agent's log, and its state.
    for (const f of existsSync(scratch) ? readdirSync(scratch) : []) {
      if (!f.endsWith("-postgresql.log")) continue;
      try { copyFileSync(join(scratch, f), a.logFile.replace(/\.log$/, "-postgresql.log")); } catch { /* best effort */ }
    }
    try { cpSync(a.stateDir, a.logFile.replace(/\.log$/, "-state"), { recursive: true }); } catch { /* best effort */ }
    rmSync(scratch, { recursive: true, force: true });
    started.delete(a);
  }));
}

/** The ISO timestamp every agent log line starts with. */
export function lineTime(line: string): Date {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /.exec(line);
  if (!m) throw new Error(`log line without an ISO timestamp: ${JSON.stringify(line.slice(0, 200))}`);
  return new Date(m[1]!);
}

// ---- internals ----

const started = new Set<RunningAgent>();
// Last resort if the test process is interrupted: SIGKILL the agent (proc.ts does), SIGQUIT the server.
onExitCleanup(() => {
  for (const a of started) {
    for (const pid of [pidFrom(join(a.dataDir, "postmaster.pid"), a.dataDir), pidFrom(join(a.stateDir, "watchdog.pid"), a.stateDir)]) {
      if (pid !== null) try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
    }
    rmSync(join(a.dataDir, ".."), { recursive: true, force: true });
  }
});

/** An empty data dir the postgres user owns, in a scratch dir of its own (also the postgres user's) under /tmp. */
async function makeDataDir(name: string): Promise<string> {
  const u = await lookupOsUser(PG_OS_USER);
  const scratch = mkdtempSync(`/tmp/pgherd-e2e-${name}-`);
  chmodSync(scratch, 0o755); // mkdtemp makes 0700; postgres must traverse it
  chownSync(scratch, u.uid, u.gid); // the agent puts the socket dir, passfile and server log beside the data dir
  const dataDir = join(scratch, "pgdata");
  mkdirSync(dataDir, { mode: 0o700 });
  chownSync(dataDir, u.uid, u.gid);
  return dataDir;
}

/** The postmaster and the watchdog, found by their pid files and only if the pid still runs that. */
async function killLeftovers(a: RunningAgent): Promise<void> {
  const pids = [
    { pid: pidFrom(join(a.dataDir, "postmaster.pid"), a.dataDir), signal: "SIGQUIT" as const }, // immediate shutdown
    { pid: pidFrom(join(a.stateDir, "watchdog.pid"), a.stateDir), signal: "SIGTERM" as const },
  ].filter((p): p is { pid: number; signal: "SIGQUIT" | "SIGTERM" } => p.pid !== null);
  for (const p of pids) try { process.kill(p.pid, p.signal); } catch { /* gone */ }
  await waitFor(() => pids.every((p) => !pidAlive(p.pid)), { timeoutMs: STOP_MS, intervalMs: 20, what: `${a.name}'s PostgreSQL and watchdog to exit` })
    .catch(() => { for (const p of pids) try { process.kill(p.pid, "SIGKILL"); } catch { /* gone */ } });
}

/** pid from the first line of `file`, if that process's command line mentions `mustMention`. */
function pidFrom(file: string, mustMention: string): number | null {
  try {
    const pid = Number(readFileSync(file, "utf8").split("\n")[0]!.trim());
    if (!Number.isInteger(pid) || pid <= 1) return null;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
    return cmdline.includes(mustMention) ? pid : null;
  } catch {
    return null;
  }
}


/** Deep merge of TOML tables: `over` wins, tables are merged key by key. */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    const isTable = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x) && !(x instanceof Date);
    out[k] = isTable(b) && isTable(v) ? merge(b, v) : v;
  }
  return out;
}

function matches(re: RegExp, line: string): boolean {
  re.lastIndex = 0; // a /g regex would otherwise remember the previous line
  return re.test(line);
}

// Through the CLI (not fetch): it is the path an operator uses, and it works inside a namespace.
// --config makes the CLI read api.listen from the agent's own file.
async function fetchStatus(host: Host | null, configPath: string): Promise<NodeStatus> {
  const cmd = [AGENT_BINARY, "status", "--config", configPath, "--json"];
  const r: RunResult = host ? await host.exec(cmd, { timeoutMs: STATUS_MS }) : await run(cmd, { timeoutMs: STATUS_MS });
  if (r.code !== 0) throw new Error(`pgherd status exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  let raw: unknown;
  try {
    raw = JSON.parse(r.stdout);
  } catch {
    throw new Error(`pgherd status printed invalid JSON: ${r.stdout.slice(0, 200)}`);
  }
  const parsed = nodeStatusSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(`pgherd status JSON does not match the expected shape: ${parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  return parsed.data;
}
