// Stopping what the demo started, in order: agents first (so none restarts or promotes a
// server meanwhile), then each PostgreSQL with pg_ctl stop -m fast as its OS user, then a sweep
// for what the agents left running on the scratch dir (a pg_ctl start or pg_basebackup in flight
// when interrupted, their fencing watchdogs), then the directory itself. The sweep only touches
// PostgreSQL server binaries of the demo's bin dir and the pgherd executable the demo runs: a
// psql or tail the user opened on the dir is theirs.
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { Logger } from "../log.ts";
import type { PgBins } from "../postgres/binaries.ts";
import { stop } from "../postgres/ctl.ts";
import type { AgentProc } from "./agents.ts";
import type { DemoNode } from "./config.ts";

export interface TeardownInput {
  scratch: string;
  nodes: readonly DemoNode[];
  agents: readonly AgentProc[];
  bins: PgBins | null;
  /** argv prefix the agents were started with (their helpers run the same executable). */
  pgherdArgv: readonly string[];
  osUser: string;
  keep: boolean;
  log: Logger;
  say(line: string): void;
}

const AGENT_GRACE_MS = 10_000;
const SWEEP_MS = 30_000;

/** Returns true when everything stopped (and the dir is gone unless `keep`). */
export async function teardown(t: TeardownInput): Promise<boolean> {
  await Promise.all(t.agents.map((a) => a.stop(AGENT_GRACE_MS)));
  if (t.bins) {
    const bins = t.bins;
    const results = await Promise.allSettled(
      t.nodes.map((n) => stop({ bins, dataDir: n.dataDir, osUser: t.osUser, log: t.log.withTag(n.name) }, "fast", 60)),
    );
    for (const [i, r] of results.entries()) {
      if (r.status === "rejected") t.say(`warning: stopping PostgreSQL of ${t.nodes[i]!.name}: ${(r.reason as Error).message}`);
    }
  }
  const binDir = t.bins?.dir;
  const left = await sweep(t.scratch, (p) => (binDir !== undefined && isServerTool(p, binDir)) || isPgherd(p, t.pgherdArgv));
  if (left.length > 0) {
    t.say(`warning: still running from ${t.scratch}, left alone with the directory:\n${left.map((p) => `  pid ${p.pid}: ${p.cmd}`).join("\n")}`);
    return false;
  }
  if (t.keep) {
    t.say(`kept ${t.scratch} (configs, agent logs, data directories)`);
    return true;
  }
  try {
    rmSync(t.scratch, { recursive: true, force: true });
  } catch (e) {
    t.say(`warning: cannot remove ${t.scratch}: ${(e as Error).message}`);
    return false;
  }
  return true;
}

export interface ProcInfo { pid: number; argv: string[]; cmd: string }

/** Processes (other than this one) with an argument inside `dir`: agents, postmasters, tools. */
export function processesUnder(dir: string): ProcInfo[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const found: ProcInfo[] = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((n) => /^\d+$/.test(n));
  } catch {
    return found; // no /proc: nothing to sweep with
  }
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").filter(Boolean);
    } catch {
      continue; // exited meanwhile
    }
    if (argv.some((a) => a === dir || a.includes(prefix))) found.push({ pid, argv, cmd: argv.join(" ").slice(0, 200) });
  }
  return found;
}

// What agents run on a data dir; psql and friends are deliberately absent (they may be the user's).
const SERVER_TOOLS = new Set(["postgres", "postmaster", "pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"]);
const isServerTool = (p: ProcInfo, binDir: string) =>
  dirname(p.argv[0] ?? "") === binDir && SERVER_TOOLS.has(basename(p.argv[0] ?? ""));
// Agents and the watchdogs they spawn; not a CLI command the user pointed at a demo config. An agent
// starts its watchdog as /proc/self/exe (src/fence/lease-file.ts), with a --state-dir in the demo's
// directory (processesUnder already requires that).
const isPgherd = (p: ProcInfo, argv: readonly string[]) =>
  (argv.length > 0 && argv.every((a, i) => p.argv[i] === a) && ["agent", "watchdog"].includes(p.argv[argv.length] ?? "")) ||
  (p.argv[0] === "/proc/self/exe" && p.argv[p.argv.length - 3] === "watchdog" && p.argv[p.argv.length - 2] === "--state-dir");
const isPostmaster = (p: ProcInfo) => ["postgres", "postmaster"].includes(basename(p.argv[0] ?? ""));

/**
 * Signals leftovers until none remain: a postmaster gets SIGINT (= fast shutdown), anything else
 * SIGTERM; past half the budget, SIGQUIT (immediate shutdown) and SIGKILL. Returns what is left.
 */
async function sweep(dir: string, ours: (p: ProcInfo) => boolean): Promise<ProcInfo[]> {
  const start = performance.now();
  const signalled = new Map<number, number>();
  for (;;) {
    const left = processesUnder(dir).filter(ours);
    const elapsed = performance.now() - start;
    if (left.length === 0 || elapsed > SWEEP_MS) return left;
    const hard = elapsed > SWEEP_MS / 2;
    for (const p of left) {
      const last = signalled.get(p.pid);
      if (last !== undefined && !hard && performance.now() - last < 5_000) continue;
      const sig: NodeJS.Signals = isPostmaster(p) ? (hard ? "SIGQUIT" : "SIGINT") : hard ? "SIGKILL" : "SIGTERM";
      try { process.kill(p.pid, sig); } catch { /* gone */ }
      signalled.set(p.pid, performance.now());
    }
    await Bun.sleep(200);
  }
}
