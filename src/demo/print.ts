// What the demo prints: progress while waiting, the ready screen, log tails on failure.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { renderTable } from "../cli/cmd-cluster.ts";
import type { PgBins } from "../postgres/binaries.ts";
import { logTail } from "./agents.ts";
import { DEMO_SIZE, type DemoNode } from "./config.ts";
import type { ClusterAnswer } from "./readiness.ts";

export type Say = (line: string) => void;

const LOG_TAIL_LINES = 20;

/** One line per change while waiting, e.g. "leader node2 | node1 standby/cloning, node2 primary/running, …". */
export function summary(a: ClusterAnswer): string {
  const v = a.view;
  const members = v.members.map((m) => `${m.name} ${m.role}/${m.state}`).join(", ") || "no members yet";
  return `leader ${v.leaderName ?? "none"} | ${members}${a.source === "local" ? " (local view)" : ""}`;
}

const sh = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export function printReady(o: { display: string; keep: boolean; tokenFile: string }, say: Say, a: ClusterAnswer, seconds: number, bins: PgBins, nodes: DemoNode[], scratch: string): void {
  const psqlBin = existsSync(join(bins.dir, "psql")) ? join(bins.dir, "psql") : "psql";
  const api = `http://127.0.0.1:${nodes[0]!.apiPort}`;
  say(`\nready: 1 primary and ${DEMO_SIZE - 1} streaming standbys after ${seconds.toFixed(1)} s\n`);
  say(renderTable(a.view, a.source).trimEnd());
  say("\nConnect (over each server's unix socket; peer auth lets your OS user in as postgres):");
  const rows = [...a.view.members].sort((x, y) => Number(y.id === a.view.primary) - Number(x.id === a.view.primary));
  for (const m of rows) {
    const n = nodes.find((x) => x.name === m.name);
    if (!n) continue;
    const role = m.id === a.view.primary ? "primary" : "standby";
    say(`  ${role}  ${n.name}  ${[psqlBin, "-h", n.socketDir, "-p", String(n.pgPort), "-U", "postgres"].map(sh).join(" ")}`);
  }
  say("  (the primary takes writes; standbys are read-only hot standbys)");
  say("Watch the cluster:");
  say(`  ${o.display} cluster ls --watch --api ${api}`);
  printActions(say, o.display, a, nodes, o.tokenFile);
  say("Logs:");
  say(`  agents:     tail -f ${sh(scratch)}/node*/agent.log`);
  say(`  PostgreSQL: ${sh(scratch)}/node*/*postgresql*.log`);
  say(`Stop: press Ctrl-C (stops the agents, then the PostgreSQL servers${o.keep ? "" : `, and removes ${scratch}`})`);
}

/** How to try the actions: the token comes from $PGHERD_TOKEN or --token-file, never the command line. */
function printActions(say: Say, display: string, a: ClusterAnswer, nodes: DemoNode[], tokenFile: string): void {
  const api = (name: string | undefined) => `http://127.0.0.1:${(nodes.find((n) => n.name === name) ?? nodes[0]!).apiPort}`;
  const standbys = a.view.members.filter((m) => m.id !== a.view.primary).map((m) => m.name).sort();
  const [s1, s2] = [standbys[0] ?? "node2", standbys[1] ?? standbys[0] ?? "node3"];
  const cmd = (args: string) => say(`  ${display} ${args}`);
  say(`Actions need the API token, in ${tokenFile} (mode 0600, only you may read it):`);
  say(`  export PGHERD_TOKEN="$(cat ${sh(tokenFile)})"`);
  cmd(`switchover --api ${api(s1)} --to ${s1}          # planned handover of the primary`);
  cmd(`pause --api ${api(s1)}                     # maintenance mode: no automatic action`);
  cmd(`resume --api ${api(s1)}`);
  cmd(`config set durability=strict --api ${api(s1)}   # quorum (default), strict or async`);
  cmd(`rejoin --api ${api(s2)}                    # rebuild ${s2} as a standby (pg_rewind, else a clone)`);
  cmd(`failover --api ${api(s2)} --to ${s2} --force   # promote ${s2}; without --force only when the leader is gone`);
  say(`  (or, instead of $PGHERD_TOKEN, add --token-file ${sh(tokenFile)} to each command)`);
}

export function printLogTails(say: Say, nodes: DemoNode[]): void {
  for (const n of nodes) {
    const tail = logTail(n.logFile, LOG_TAIL_LINES);
    say(`\n--- last ${LOG_TAIL_LINES} lines of ${n.logFile}\n${tail || "(empty)"}`);
  }
}
