// A primary that is busy but healthy must never be failed over (issue 11, point 5). Three nodes in
// network namespaces (root, PostgreSQL and pgbench installed); on the primary's host, for the
// whole run: pgbench TPC-B, long transactions holding a hot row (clients queue on its lock), a
// forced CHECKPOINT every 15 s, a disk hog (1 MB writes with fsync beside the data directory) and
// one CPU-bound loop per core. Prints the liveness verdicts the leader logged and exits 1 if the
// leader resigned, the leadership moved or the primary changed.
//   flock /tmp/pgherd-heavy.lock bun scripts/soak-busy.ts [--minutes 10]
import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { clusterSkipReason, type ClusterNode } from "../test/helpers/cluster.ts";
import { pgBins, PG_OS_USER } from "../test/helpers/pg.ts";
import { startFailoverCluster } from "../test/helpers/writer.ts";
import { ensureBuilt } from "./build.ts";

const { values } = parseArgs({ options: { minutes: { type: "string", default: "10" } } });
const opts = z.object({ minutes: z.coerce.number({ error: "--minutes must be a number" }).min(0.5, "--minutes must be at least 0.5").max(600, "--minutes must be at most 600") }).safeParse(values);
if (!opts.success) {
  console.error(`soak-busy: ${opts.error.issues.map((i) => i.message).join("; ")}`);
  process.exit(2);
}
const why = clusterSkipReason() ?? (pgBins ? null : "no PostgreSQL binaries");
if (why) {
  console.error(`soak-busy: cannot run here: ${why}`);
  process.exit(2);
}
process.on("unhandledRejection", (e) => console.error(`soak-busy: unhandled rejection: ${(e as Error)?.message ?? String(e)}`));

ensureBuilt();
const seconds = Math.round(opts.data.minutes * 60);
const { c, healthy } = await startFailoverCluster("soak-busy", "soakb");
const p = healthy.primary;
const marks = new Map(c.nodes.map((n) => [n.name, n.mark()]));
const bg: Array<Promise<unknown>> = [];
let stopping = false;
try {
  const bench = (args: string[]) => pgbenchOn(p, args, seconds + 60);
  await bench(["-i", "-s", "10", "-q"]);
  const t0 = performance.now();
  console.log(`soak-busy: ${seconds} s of load on the primary ${p.name}`);
  bg.push(bench(["-c", "6", "-j", "2", "-T", String(seconds), "-P", "30"]));
  // Long transactions on one hot row: clients queue on its lock for seconds at a time.
  const hot = join(p.dir, "soak-hot-row.sql");
  writeFileSync(hot, "BEGIN;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;\nSELECT pg_sleep(3);\nCOMMIT;\n", { mode: 0o644 });
  bg.push(bench(["-c", "4", "-T", String(seconds), "-n", "-f", hot]));
  const cores = availableParallelism();
  for (let i = 0; i < cores; i++) bg.push(p.host.exec(["timeout", String(seconds), "sh", "-c", "while :; do :; done"], { timeoutMs: (seconds + 30) * 1000 }));
  const hog = join(p.dir, "soak-disk-hog");
  bg.push(p.host.exec(["timeout", String(seconds), "sh", "-c", `while :; do dd if=/dev/zero of=${hog} bs=1M count=256 conv=fsync status=none; done; rm -f ${hog}`], { timeoutMs: (seconds + 30) * 1000 }));
  const checkpoints = (async () => {
    let n = 0;
    while (!stopping && performance.now() - t0 < seconds * 1000) {
      await p.query("CHECKPOINT", 120_000).then(() => n++, (e: Error) => console.log(`CHECKPOINT: ${e.message}`));
      await Bun.sleep(15_000);
    }
    return n;
  })();
  bg.push(checkpoints);
  // What the leader's liveness check sees, measured the same way from outside: a fresh connection
  // and a heartbeat commit with synchronous_commit = local, twice a second.
  const lat: number[] = [];
  const sampler = (async () => {
    while (!stopping && performance.now() - t0 < seconds * 1000) {
      const s = performance.now();
      await p.query("BEGIN READ WRITE; SET LOCAL synchronous_commit = local; SELECT txid_current(); COMMIT;", 10_000).then(() => lat.push(performance.now() - s), () => lat.push(Infinity));
      await Bun.sleep(500);
    }
  })();
  bg.push(sampler);
  let moved = "";
  while (performance.now() - t0 < seconds * 1000) {
    await Bun.sleep(5_000);
    const bad = problems(c.nodes, marks);
    if (bad.length) {
      moved = bad.join("; ");
      break;
    }
  }
  stopping = true;
  await Promise.allSettled(bg);
  const verdicts = p.lines(/PostgreSQL is busy|PostgreSQL works again|PostgreSQL cannot do its work/, marks.get(p.name));
  console.log(`liveness verdicts logged by ${p.name}: ${verdicts.length}`);
  for (const l of verdicts.slice(0, 20)) console.log(`  ${l.slice(0, 200)}`);
  console.log(`CHECKPOINTs forced: ${await checkpoints}`);
  const sorted = [...lat].sort((a, b) => a - b);
  const q = (f: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))] ?? NaN);
  console.log(`fresh connection + heartbeat commit under load: ${lat.length} samples, median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${Math.round(sorted.at(-1) ?? NaN)} ms (busy above 1000 ms; broken needs no answer and no WAL for 3000 ms)`);
  const bad = moved || problems(c.nodes, marks).join("; ");
  if (bad) {
    console.error(`FAIL: ${bad}`);
    process.exitCode = 1;
  } else console.log(`OK: no resign, no leader change, ${p.name} primary throughout ${seconds} s of load`);
} finally {
  stopping = true;
  await c.destroy().catch((e: Error) => console.error(e.message));
  console.log(`logs: ${c.artifacts}`);
}

/** Resignations, stepping down, lost leases or leader changes since the start, on any node. */
function problems(nodes: ClusterNode[], m: Map<string, ReturnType<ClusterNode["mark"]>>): string[] {
  const out: string[] = [];
  for (const n of nodes) {
    for (const l of n.lines(/decision: resign|stepped-down|fenced: no longer leading|leader-changed/, m.get(n.name))) out.push(`${n.name}: ${l.slice(0, 200)}`);
  }
  return out;
}

async function pgbenchOn(n: ClusterNode, args: string[], timeoutS: number): Promise<void> {
  const r = await n.host.exec([join(pgBins!.dir, "pgbench"), "-h", n.socketDir, "-p", "5432", "-U", "postgres", ...args, "postgres"], { user: PG_OS_USER, timeoutMs: timeoutS * 1000 });
  if (r.code !== 0) console.log(`pgbench ${args.slice(0, 4).join(" ")}: exit ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  else if (args.includes("-T")) console.log(`pgbench ${args.slice(0, 4).join(" ")}: ${r.stdout.split("\n").filter((l) => /^tps|latency average|number of transactions actually/.test(l)).join("; ")}`);
}
