// The cost of durability (a script, not a test): pgbench TPS on the primary of one three-node
// cluster (namespace hosts, real PostgreSQL) in async vs quorum mode, switched live with
// `pgherd config set durability=...`, alternating modes so drift of a noisy machine hits both.
//   npx bun bench/durability.ts [--seconds 15] [--clients 4] [--reps 2] [--scale 5]
// (root, PostgreSQL installed; pgbench from the discovered PostgreSQL bin dir)
import { parseArgs } from "node:util";
import { z } from "zod";
import { ensureBuilt } from "../scripts/build.ts";
import { clusterSkipReason, type ClusterNode, type PgCluster } from "../test/helpers/cluster.ts";
import { table, waitGuarantee } from "../test/helpers/durability.ts";
import { waitFor } from "../test/helpers/proc.ts";
import { pgherd, startFailoverCluster } from "../test/helpers/writer.ts";

type Mode = "async" | "quorum";
const GUARANTEE: Record<Mode, RegExp> = { async: /^async: /, quorum: /^quorum: zero-loss/ };

const { values } = parseArgs({ options: { seconds: { type: "string", default: "15" }, clients: { type: "string", default: "4" }, reps: { type: "string", default: "2" }, scale: { type: "string", default: "5" } } });
const parsed = z.object({
  seconds: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(1, "must be ≥ 1").max(3600),
  clients: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(1, "must be ≥ 1").max(100),
  reps: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(1, "must be ≥ 1").max(20),
  scale: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(1, "must be ≥ 1").max(1000),
}).safeParse(values);
if (!parsed.success) {
  console.error(`bench/durability: ${parsed.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("; ")}`);
  process.exit(2);
}
const o = parsed.data;
const why = clusterSkipReason();
if (why) {
  console.error(`bench/durability: cannot run here: ${why}`);
  process.exit(2);
}
process.on("unhandledRejection", (e) => console.error(`bench/durability: unhandled rejection: ${(e as Error)?.message ?? String(e)}`));

/** Switches the cluster's mode through the leader and waits until the primary runs with it. */
async function setMode(c: PgCluster, primary: ClusterNode, mode: Mode): Promise<void> {
  const r = await pgherd(primary, ["config", "set", `durability=${mode}`]);
  if (r.code !== 0) throw new Error(`pgherd config set durability=${mode}: exit ${r.code}: ${r.text.slice(0, 300)}`);
  for (const n of c.nodes) await waitGuarantee(n, GUARANTEE[mode], 30_000);
  await waitFor(async () => {
    const ssn = String((await primary.query("show synchronous_standby_names"))[0]?.synchronous_standby_names ?? "");
    return mode === "async" ? ssn === "" : ssn.startsWith("ANY ");
  }, { timeoutMs: 15_000, what: `synchronous_standby_names on ${primary.name} to match ${mode}` });
}

async function pgbench(primary: ClusterNode, args: string[], timeoutMs: number): Promise<string> {
  const r = await primary.pgTool("pgbench", ["-h", primary.socketDir, "-p", "5432", "-U", "postgres", ...args, "postgres"], timeoutMs);
  if (r.code !== 0) throw new Error(`pgbench ${args.join(" ")} on ${primary.name}: exit ${r.code}: ${r.stderr.trim().slice(-400)}`);
  return r.stdout;
}

ensureBuilt();
const { c, healthy } = await startFailoverCluster("bench-durability", "bdur");
let code = 0;
try {
  const primary = healthy.primary;
  await waitGuarantee(primary, GUARANTEE.quorum, 30_000);
  await pgbench(primary, ["-i", "-q", "-s", String(o.scale)], 300_000);
  const runs: Record<Mode, { tps: number; latMs: number }[]> = { async: [], quorum: [] };
  for (let rep = 0; rep < o.reps; rep++) {
    for (const mode of rep % 2 === 0 ? (["async", "quorum"] as const) : (["quorum", "async"] as const)) {
      await setMode(c, primary, mode);
      const out = await pgbench(primary, ["-n", "-c", String(o.clients), "-j", String(Math.min(o.clients, 2)), "-T", String(o.seconds)], (o.seconds + 120) * 1000);
      const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
      const latMs = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
      if (!Number.isFinite(tps) || !Number.isFinite(latMs)) throw new Error(`unreadable pgbench output:\n${out}`);
      runs[mode].push({ tps, latMs });
      console.log(`rep ${rep + 1} ${mode}: ${tps.toFixed(0)} tps, latency ${latMs.toFixed(2)} ms`);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const a = mean(runs.async.map((r) => r.tps));
  const q = mean(runs.quorum.map((r) => r.tps));
  console.log(`\npgbench (TPC-B-like, scale ${o.scale}, ${o.clients} clients, ${o.seconds} s × ${o.reps} per mode) on ${primary.name}, 2 standbys:`);
  console.log(table(["mode", "tps (mean)", "latency ms (mean)", "runs (tps)"], (["async", "quorum"] as const).map((m) => [
    m, mean(runs[m].map((r) => r.tps)).toFixed(0), mean(runs[m].map((r) => r.latMs)).toFixed(2), runs[m].map((r) => r.tps.toFixed(0)).join(", "),
  ])));
  console.log(`quorum commit costs ${(100 * (1 - q / a)).toFixed(1)}% of async TPS here (quorum/async = ${(q / a).toFixed(2)})`);
  await setMode(c, primary, "quorum");
} catch (e) {
  console.error(`bench/durability: ${(c.explain(e)).message}`);
  code = 1;
} finally {
  await c.destroy().catch((e: Error) => console.error(`cleanup: ${e.message}`));
  console.log(`logs: ${c.artifacts}`);
}
process.exit(code);
