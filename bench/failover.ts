// Failover outage benchmark (a script, not a test): three namespace hosts with real PostgreSQL and
// default timers, a writer inserting every 50 ms on every node, and K rounds of each fault —
// host crash (every process of the primary's namespace SIGKILLed, its agent restarted to rejoin),
// postmaster crash (SIGKILL), planned switchover — printing median/min/max write outage per fault.
// Outage = the longest gap between two acknowledged writes around the fault.
//   bun bench/failover.ts [--rounds K] [--backend builtin|etcd]   (root, PostgreSQL installed; about 40 s per round)
import { parseArgs } from "node:util";
import { ensureBuilt } from "../scripts/build.ts";
import { clusterSkipReason, lineTime, type ClusterNode, type PgCluster } from "../test/helpers/cluster.ts";
import { backendLabel, backendSkipReason, useBackend } from "../test/helpers/backend.ts";
import { faultRound, pgherd, startFailoverCluster, type RoundOptions } from "../test/helpers/writer.ts";

type Fault = { name: string; round: (c: PgCluster) => RoundOptions };

const FAULTS: Fault[] = [
  {
    name: "host crash",
    round: () => ({ label: "host crash", expect: "other", inject: (p) => p.host.killAll("SIGKILL"), restore: (old) => old.start() }),
  },
  {
    name: "postgres crash",
    round: () => ({
      label: "postgres crash", expect: "any",
      inject: async (p) => {
        const pid = p.postmasterPid();
        if (pid === null) throw new Error(`${p.name}: no postmaster`);
        process.kill(pid, "SIGKILL");
      },
    }),
  },
  {
    name: "switchover",
    round: (c) => ({
      label: "switchover", expect: "other", waitMs: 30_000,
      inject: async (p) => {
        const to = c.nodes.find((n) => n !== p) as ClusterNode;
        const r = await pgherd(p, ["switchover", "--to", to.name]);
        if (r.code !== 0) throw new Error(`pgherd switchover --to ${to.name}: exit ${r.code}: ${r.text.slice(0, 300)}`);
      },
    }),
  },
];

function parseRounds(): number {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { rounds: { type: "string", default: "5" }, backend: { type: "string", default: "builtin" } }, strict: true });
  if (values.backend !== "builtin" && values.backend !== "etcd") throw new Error(`--backend must be builtin or etcd, got ${JSON.stringify(values.backend)}`);
  useBackend(values.backend); // test/helpers/backend.ts: etcd adds three etcd member hosts to the lab
  const k = Number(values.rounds);
  if (!Number.isInteger(k) || k < 1 || k > 100) throw new Error(`--rounds must be an integer 1..100, got ${JSON.stringify(values.rounds)}`);
  return k;
}

function stats(xs: number[]): string {
  if (xs.length === 0) return "no successful round";
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  const f = (ms: number) => (ms / 1000).toFixed(2);
  return `median ${f(mid)} s, min ${f(s[0]!)} s, max ${f(s[s.length - 1]!)} s (n=${s.length})`;
}

/** ms from the new leader's "leading term N with a valid lease" to its "decision: promote" (same run of its log). */
function promotionDelay(n: ClusterNode, since: ReturnType<ClusterNode["mark"]>): number | null {
  const lease = n.lines(/leading term \d+ with a valid lease/, since)[0];
  if (!lease) return null;
  const promote = n.lines(/decision: promote/, since).find((l) => lineTime(l) >= lineTime(lease));
  return promote ? lineTime(promote).getTime() - lineTime(lease).getTime() : null;
}

function msStats(xs: number[]): string {
  if (xs.length === 0) return "no promotion seen";
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `median ${mid} ms, min ${s[0]} ms, max ${s[s.length - 1]} ms (n=${s.length})`;
}

async function main(): Promise<number> {
  let rounds: number;
  try {
    rounds = parseRounds();
  } catch (e) {
    console.error(`usage: bun bench/failover.ts [--rounds K] [--backend builtin|etcd]: ${(e as Error).message}`);
    return 2;
  }
  const skip = clusterSkipReason() ?? backendSkipReason();
  if (skip) {
    console.error(`cannot run: ${skip}`);
    return 2;
  }
  ensureBuilt();
  const { c, bounds, cfg } = await startFailoverCluster("bench-failover", "bench");
  const outages = new Map<string, number[]>(FAULTS.map((f) => [f.name, []]));
  const leaseToPromote: number[] = [];
  const failures: string[] = [];
  let lostTotal = 0;
  try {
    for (let i = 1; i <= rounds; i++) {
      for (const f of FAULTS) {
        try {
          const marks = new Map(c.nodes.map((n) => [n.name, n.mark()] as const));
          const r = await faultRound(c, f.round(c));
          outages.get(f.name)!.push(r.analysis.outageMs);
          const promo = r.neu !== r.old ? promotionDelay(r.neu, marks.get(r.neu.name)!) : null;
          if (promo !== null) leaseToPromote.push(promo);
          lostTotal += r.lost.length;
          console.log(`round ${i} ${f.name}: ${r.old.name} -> ${r.neu.name}, outage ${(r.analysis.outageMs / 1000).toFixed(2)} s, ` +
            `${r.analysis.splitBrain.length} split-brain writes, ${r.lost.length} lost` +
            (promo !== null ? `, lease acquired → promote started ${promo} ms` : ""));
        } catch (e) {
          failures.push(`round ${i} ${f.name}: ${(e as Error).message.split("\n")[0]}`);
          console.log(`round ${i} ${f.name}: FAILED: ${(e as Error).message.split("\n")[0]}`);
          await c.waitHealthy(120_000).catch(() => {});
        }
      }
    }
  } finally {
    await c.destroy().catch((e: Error) => console.error(e.message));
  }
  console.log(`\nwrite outage over ${rounds} round(s)${backendLabel()}, default timers (failover bound ${bounds.failoverMs} ms, restart bound ${bounds.restartMs} ms, switchover bound ${bounds.switchoverMs} ms):`);
  for (const f of FAULTS) console.log(`  ${f.name.padEnd(15)} ${stats(outages.get(f.name)!)}`);
  console.log(`  ${"lease → promote".padEnd(15)} ${msStats(leaseToPromote)} (new leader: lease acquired → "decision: promote")`);
  console.log(`  acknowledged writes lost (durability ${cfg.durability}): ${lostTotal}`);
  if (failures.length) console.log(`failed rounds:\n  ${failures.join("\n  ")}`);
  console.log(`logs: ${c.artifacts}`);
  return failures.length ? 1 : 0;
}

process.exit(await main());
