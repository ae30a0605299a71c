// Footprint benchmark (a script, not a test): an idle 3-node loopback cluster (`pgherd demo`'s
// setup, dist/pgherd, default timers), then RSS and CPU of every pgherd process (agent, fencing
// watchdog) sampled over --seconds (default 60), per process and per host, beside the baseline in
// bench/baseline.json and the targets.
//   bun bench/footprint.ts [--seconds N]     (PostgreSQL installed; as root it runs it as "postgres")
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runDemo } from "../src/demo/run.ts";
import { createLogger } from "../src/log.ts";
import { ensureBuilt } from "../scripts/build.ts";
import { cpuSeconds, median, pgherdProcesses, rssBytes, rssSplit, type PgherdProc } from "./proc-sample.ts";

const { values } = parseArgs({ args: process.argv.slice(2), options: { seconds: { type: "string", default: "60" } }, strict: true });
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw new Error(`--seconds must be 5..3600, got ${values.seconds}`);
const baseline = JSON.parse(readFileSync(join(import.meta.dir, "baseline.json"), "utf8")).footprint as Record<string, number>;

const bin = ensureBuilt().path;
const stop = new AbortController();
let scratch = "";
let ready: () => void;
const isReady = new Promise<void>((r) => (ready = r));
let transcript = "";
const demo = runDemo({
  pgherd: { argv: [bin], display: bin },
  options: { keep: false, timeoutSec: 180 },
  stop: stop.signal,
  log: createLogger("error", "bench"),
  out: (t) => {
    transcript += t;
    scratch ||= /under (\/tmp\/pgherd-demo-\S+)/.exec(transcript)?.[1] ?? "";
    if (t.startsWith("\nready:")) ready();
  },
});
const outcome = await Promise.race([isReady.then(() => "ready"), demo.then(() => "ended")]);
if (outcome !== "ready") {
  process.stderr.write(transcript);
  throw new Error("the demo cluster did not become ready");
}
try {
  await Bun.sleep(5000); // let start-up work (clones, first rounds) settle
  const procs = pgherdProcesses(scratch);
  if (procs.filter((p) => p.kind === "agent").length !== 3 || procs.filter((p) => p.kind === "watchdog").length !== 3) {
    throw new Error(`expected 3 agents and 3 watchdogs under ${scratch}, found ${JSON.stringify(procs)}`);
  }
  const cpu0 = new Map(procs.map((p) => [p.pid, cpuSeconds(p.pid)!]));
  const rss = new Map<number, number[]>(procs.map((p) => [p.pid, []]));
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (const p of procs) {
      const r = rssBytes(p.pid);
      if (r !== null) rss.get(p.pid)!.push(r);
    }
    await Bun.sleep(1000);
  }
  const wall = (performance.now() - t0) / 1000;
  const row = (p: PgherdProc) => {
    const mb = median(rss.get(p.pid)!) / 1048576;
    const pct = ((cpuSeconds(p.pid)! - cpu0.get(p.pid)!) / wall) * 100;
    const split = rssSplit(p.pid);
    return { ...p, mb, pct, anonMb: (split?.anon ?? NaN) / 1048576, fileMb: (split?.file ?? NaN) / 1048576 };
  };
  const rows = procs.map(row);
  console.log(`\nfootprint of an idle 3-node loopback cluster over ${wall.toFixed(0)} s (median RSS, CPU % of one core)`);
  for (const r of rows) {
    console.log(`  ${r.node} ${r.kind.padEnd(8)} pid ${String(r.pid).padEnd(7)} ${r.mb.toFixed(1).padStart(6)} MB (anonymous ${r.anonMb.toFixed(1)}, file-backed ${r.fileMb.toFixed(1)})  ${r.pct.toFixed(2).padStart(5)} %`);
  }
  const per = (k: string) => rows.filter((r) => r.kind === k);
  const med = (xs: number[]) => median(xs);
  const hosts = [...new Set(rows.map((r) => r.node))].map((n) => rows.filter((r) => r.node === n));
  const hostMb = hosts.map((h) => h.reduce((a, r) => a + r.mb, 0));
  const hostPct = hosts.map((h) => h.reduce((a, r) => a + r.pct, 0));
  const fmt = (xs: number[], d: number) => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
  console.log(`\n| figure | baseline | now: median (min–max) over 3 hosts | target |`);
  console.log(`|---|---|---|---|`);
  console.log(`| agent RSS MB | ${baseline.agentRssMb} | ${fmt(per("agent").map((r) => r.mb), 1)} | |`);
  console.log(`| agent CPU % | ${baseline.agentCpuPct} | ${fmt(per("agent").map((r) => r.pct), 2)} | |`);
  console.log(`| watchdog RSS MB | ${baseline.watchdogRssMb} | ${fmt(per("watchdog").map((r) => r.mb), 1)} | |`);
  console.log(`| watchdog CPU % | ${baseline.watchdogCpuPct} | ${fmt(per("watchdog").map((r) => r.pct), 2)} | |`);
  console.log(`| RSS per host MB | ${baseline.hostRssMb} | ${fmt(hostMb, 1)} | ≤ 60 |`);
  console.log(`| CPU per host % | ${baseline.hostCpuPct} | ${fmt(hostPct, 2)} | ≤ 1.5 |`);
} finally {
  stop.abort("bench done");
  await demo;
}
