// `npm run demo` / `pgherd demo`: three agents and three PostgreSQL servers on loopback under a
// scratch directory, in the foreground until SIGINT/SIGTERM. The entry points only differ in
// how they run pgherd (dist/pgherd, or the executable itself).
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { renderTable } from "../cli/cmd-cluster.ts";
import { generateSecret } from "../cli/starter.ts";
import type { Logger } from "../log.ts";
import { findBinDir, type PgBins } from "../postgres/binaries.ts";
import { isRoot, lookupOsUser } from "../postgres/users.ts";
import { AgentProc, commandFor, type RunAs } from "./agents.ts";
import { DEMO_SIZE, demoNodes, renderDemoConfig, type DemoNode, type DemoSettings } from "./config.ts";
import type { DemoOptions } from "./options.ts";
import { freeTcpPorts, freeUdpPort } from "./ports.ts";
import { printLogTails, printReady, summary } from "./print.ts";
import { fetchCluster, isReady, type ClusterAnswer } from "./readiness.ts";
import type { PgherdCommand } from "../self.ts";
import { sleepUnlessAborted } from "./signals.ts";
import { teardown } from "./teardown.ts";

export interface RunDemoInput {
  pgherd: PgherdCommand;
  options: DemoOptions;
  /** Aborted by SIGINT/SIGTERM: stop everything and return. */
  stop: AbortSignal;
  out(text: string): void;
  /** For PostgreSQL tool runs during teardown; their failures are reported through `out` too. */
  log: Logger;
  /** Benches only: keys every node's pgherd.toml sets besides the demo's (e.g. election.heartbeat_ms). */
  settings?: DemoSettings;
}

const POLL_MS = 250;
const SETTLE_MS = 2500;

/** Runs the demo to the end; returns the process exit code. */
export async function runDemo(i: RunDemoInput): Promise<number> {
  const say = (s: string) => i.out(`${s}\n`);
  let bins: PgBins;
  try {
    bins = await findBinDir(undefined, { log: i.log });
  } catch (e) {
    say(`pgherd demo needs PostgreSQL server binaries: ${(e as Error).message}`);
    return 1;
  }
  // Started as root, the agents and PostgreSQL run as "postgres", as deploy/pgherd.service runs
  // them (PostgreSQL refuses root anyway); otherwise everything runs as ourselves.
  const osUser = isRoot() ? "postgres" : userInfo().username;
  let runAs: RunAs | undefined;
  if (isRoot()) {
    const u = await lookupOsUser(osUser).catch((e: Error) => e);
    if (u instanceof Error) {
      say(`pgherd demo runs the agents and PostgreSQL as the OS user "postgres" when started as root: ${u.message}`);
      return 1;
    }
    runAs = u;
  }

  // /tmp, not $TMPDIR: the postgres user must traverse it, and socket paths must stay short.
  let scratch: string;
  try {
    scratch = mkdtempSync("/tmp/pgherd-demo-");
    chmodSync(scratch, 0o755);
  } catch (e) {
    say(`pgherd demo cannot create its directory in /tmp: ${(e as Error).message}`);
    return 1;
  }
  let nodes: DemoNode[] = [];
  const agents: AgentProc[] = [];
  let agentArgv = i.pgherd.argv;
  let code = 1;
  try {
    if (runAs) agentArgv = commandFor(runAs, i.pgherd.argv, scratch);
    const ports = await freeTcpPorts(DEMO_SIZE * 3);
    const beaconPort = await freeUdpPort();
    nodes = demoNodes(scratch, ports);
    const secret = generateSecret();
    // Actions need the API token: the agents get it in their configs, the operator in a file only
    // they may read (for $PGHERD_TOKEN or --token-file).
    const token = generateSecret();
    const tokenFile = join(scratch, "api.token");
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    for (const n of nodes) {
      mkdirSync(n.dir);
      chmodSync(n.dir, 0o755); // others may read the logs; the agent's state and data dirs are its own
      writeFileSync(n.configPath, renderDemoConfig(n, { secret, token, beaconPort, osUser, settings: i.settings }), { mode: 0o600 });
      // The agent's own: it creates its state, data and socket dirs here, and refuses a config file another user owns.
      if (runAs) for (const p of [n.configPath, n.dir]) chownSync(p, runAs.uid, runAs.gid);
    }
    say(`pgherd demo: ${DEMO_SIZE} agents and ${DEMO_SIZE} PostgreSQL ${bins.version} servers on 127.0.0.1, under ${scratch}`);
    say(`  discovery: UDP broadcast to 127.255.255.255:${beaconPort}; the agents and PostgreSQL run as OS user ${osUser}`);
    for (const n of nodes) {
      agents.push(new AgentProc(n, agentArgv, runAs));
      say(`  ${n.name}: agent pid ${agents.at(-1)!.pid}, api 127.0.0.1:${n.apiPort}, mesh :${n.meshPort}, postgres :${n.pgPort}, log ${n.logFile}`);
    }
    say(`waiting for one primary and ${DEMO_SIZE - 1} streaming standbys (up to ${i.options.timeoutSec} s)...`);
    const r = await waitReady(i, nodes, agents, say);
    if (r.kind === "ready") {
      printReady({ display: i.pgherd.display, keep: i.options.keep, tokenFile }, say, r.answer, r.seconds, bins, nodes, scratch);
      await watchUntilStopped(i.stop, agents, say);
      code = 0;
    } else if (r.kind === "aborted") {
      code = 0;
    } else {
      if (r.kind === "timeout") say(`\ntimed out after ${i.options.timeoutSec} s: ${r.why}`);
      else say(`\nthe agent of ${r.agent.node.name} ${r.agent.describeExit()} before the cluster was ready`);
      printLogTails(say, nodes);
      if (!i.options.keep) say("(rerun with --keep to keep the logs and data directories)");
      code = 1;
    }
  } catch (e) {
    say(`pgherd demo failed: ${(e as Error).message}`);
    code = 1;
  }
  say(`${i.stop.aborted ? `\n${String(i.stop.reason)}: ` : ""}stopping the agents, then PostgreSQL (pg_ctl stop -m fast)${i.options.keep ? "" : `, then removing ${scratch}`}`);
  const t0 = performance.now();
  const clean = await teardown({ scratch, nodes, agents, bins, pgherdArgv: agentArgv, osUser, keep: i.options.keep, log: i.log, say });
  const took = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  say(clean ? `stopped in ${took}` : `stopped in ${took}, with the warnings above`);
  return clean ? code : 1;
}

type WaitResult =
  | { kind: "ready"; answer: ClusterAnswer; seconds: number }
  | { kind: "aborted" }
  | { kind: "timeout"; why: string }
  | { kind: "agent-exit"; agent: AgentProc };

async function waitReady(i: RunDemoInput, nodes: DemoNode[], agents: AgentProc[], say: (s: string) => void): Promise<WaitResult> {
  const t0 = performance.now();
  const deadline = t0 + i.options.timeoutSec * 1000;
  let last: ClusterAnswer | undefined;
  let lastError = "no answer yet";
  let shown = "";
  let at = 0;
  let readyAt: number | undefined;
  for (;;) {
    if (i.stop.aborted) return { kind: "aborted" };
    const dead = agents.find((a) => !a.running);
    if (dead) return { kind: "agent-exit", agent: dead };
    if (performance.now() > deadline) {
      const why = last ? `the cluster looked like this:\n${renderTable(last.view, last.source)}` : `no agent API answered (last error: ${lastError})`;
      return { kind: "timeout", why };
    }
    const url = `http://127.0.0.1:${nodes[at]!.apiPort}`;
    try {
      last = await fetchCluster(url);
      const line = summary(last);
      if (line !== shown) say(`  ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${(shown = line)}`);
      if (isReady(last, DEMO_SIZE)) {
        readyAt ??= performance.now();
        // Reports arrive once per loop_ms: give the standbys' lag a moment to reach 0 for the table.
        if (caughtUp(last) || performance.now() - readyAt > SETTLE_MS) return { kind: "ready", answer: last, seconds: (readyAt - t0) / 1000 };
      } else readyAt = undefined;
    } catch (e) {
      lastError = `${url}: ${(e as Error).message}`;
      at = (at + 1) % nodes.length; // that agent may be down or still starting: ask another
    }
    await sleepUnlessAborted(POLL_MS, i.stop);
  }
}

const caughtUp = (a: ClusterAnswer) => a.view.members.every((m) => m.role !== "standby" || m.lagBytes === 0);

/** Stays in the foreground; reports an agent that dies meanwhile (the demo keeps running). */
async function watchUntilStopped(stop: AbortSignal, agents: AgentProc[], say: (s: string) => void): Promise<void> {
  const reported = new Set<AgentProc>();
  while (!stop.aborted) {
    for (const a of agents) {
      if (a.running || reported.has(a)) continue;
      reported.add(a);
      say(`warning: the agent of ${a.node.name} ${a.describeExit()}; its log: ${a.node.logFile}`);
    }
    await sleepUnlessAborted(1000, stop);
  }
}
