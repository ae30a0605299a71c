// Footprint benchmark (a script, not a test): an idle 3-node loopback cluster (`pgherd demo`'s
// setup, dist/pgherd, default timers), then RSS and CPU of every pgherd process (agent, fencing
// watchdog) sampled over --seconds (default 60), per process and per host, beside the baseline in
// bench/baseline.json and the issue's targets.
//   bun bench/footprint.ts [--seconds N]     (PostgreSQL installed; as root it runs it as "postgres")
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBuilt } from "../scripts/build.ts";
import { idleDemo } from "./idle-demo.ts";
import { cpuSeconds, distinctResident, median, memSplit, pgherdProcesses, type MemSplit, type PgherdProc } from "./proc-sample.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { seconds: { type: "string", default: "60" }, bin: { type: "string" } },
  strict: true,
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw new Error(`--seconds must be 5..3600, got ${values.seconds}`);
const baseline = JSON.parse(readFileSync(join(import.meta.dir, "baseline.json"), "utf8")).footprint as Record<string, number>;

const bin = values.bin ?? ensureBuilt().path;
const demo = await idleDemo(bin);
const scratch = demo.scratch;
try {
  const procs = pgherdProcesses(scratch);
  if (procs.filter((p) => p.kind === "agent").length !== 3 || procs.filter((p) => p.kind === "watchdog").length !== 3) {
    throw new Error(`expected 3 agents and 3 watchdogs under ${scratch}, found ${JSON.stringify(procs)}`);
  }
  const cpu0 = new Map(procs.map((p) => [p.pid, cpuSeconds(p.pid)!]));
  const mem = new Map<number, MemSplit[]>(procs.map((p) => [p.pid, []]));
  const hostNames = [...new Set(procs.map((p) => p.node))];
  const once = new Map<string, number[]>(hostNames.map((n) => [n, []]));
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (const p of procs) {
      const m = memSplit(p.pid);
      if (m) mem.get(p.pid)!.push(m);
    }
    for (const n of hostNames) {
      const b = distinctResident(procs.filter((p) => p.node === n).map((p) => p.pid));
      if (b !== null) once.get(n)!.push(b);
    }
    await Bun.sleep(1000);
  }
  const wall = (performance.now() - t0) / 1000;
  const MB = 1048576;
  const row = (p: PgherdProc) => {
    const ms = mem.get(p.pid)!;
    const m = (k: keyof MemSplit) => median(ms.map((x) => x[k])) / MB;
    const pct = ((cpuSeconds(p.pid)! - cpu0.get(p.pid)!) / wall) * 100;
    return { ...p, rss: m("rss"), pss: m("pss"), uss: m("uss"), anon: m("anon"), file: m("file"), pct };
  };
  const rows = procs.map(row);
  console.log(`\nfootprint of an idle 3-node loopback cluster over ${wall.toFixed(0)} s (${bin}${process.env.BUN_OPTIONS ? `, BUN_OPTIONS=${process.env.BUN_OPTIONS}` : ""})`);
  console.log("median MB over the run (RSS = anonymous + file-backed); CPU % of one core");
  console.log("  node  process  pid       RSS    PSS    USS   anon   file   CPU %");
  const f1 = (x: number) => x.toFixed(1).padStart(6);
  for (const r of rows) {
    console.log(`  ${r.node} ${r.kind.padEnd(8)} ${String(r.pid).padEnd(7)} ${f1(r.rss)} ${f1(r.pss)} ${f1(r.uss)} ${f1(r.anon)} ${f1(r.file)} ${r.pct.toFixed(2).padStart(6)}`);
  }
  const per = (k: string) => rows.filter((r) => r.kind === k);
  const hosts = hostNames.map((n) => rows.filter((r) => r.node === n));
  const hostSum = (k: "rss" | "pss" | "uss" | "pct") => hosts.map((h) => h.reduce((a, r) => a + r[k], 0));
  const hostOnce = hostNames.map((n) => median(once.get(n)!) / MB);
  const fmt = (xs: number[], d: number) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
  const b = (k: string) => (baseline[k] === undefined ? "" : String(baseline[k]));
  console.log(`\n| figure | baseline | now: median (min–max) over 3 hosts | target |`);
  console.log(`|---|---|---|---|`);
  for (const k of ["agent", "watchdog"] as const) {
    console.log(`| ${k} RSS MB | ${b(`${k}RssMb`)} | ${fmt(per(k).map((r) => r.rss), 1)} | |`);
    console.log(`| ${k} PSS MB (binary shared by 6 processes here) | | ${fmt(per(k).map((r) => r.pss), 1)} | |`);
    console.log(`| ${k} USS MB | | ${fmt(per(k).map((r) => r.uss), 1)} | |`);
    console.log(`| ${k} CPU % | ${b(`${k}CpuPct`)} | ${fmt(per(k).map((r) => r.pct), 2)} | |`);
  }
  console.log(`| RSS per host MB (sum; the target's figure) | ${b("hostRssMb")} | ${fmt(hostSum("rss"), 1)} | ≤ 60 |`);
  console.log(`| resident per host MB, shared pages once (= PSS sum on a real host) | | ${fmt(hostOnce, 1)} | |`);
  console.log(`| USS per host MB (sum) | | ${fmt(hostSum("uss"), 1)} | |`);
  console.log(`| CPU per host % | ${b("hostCpuPct")} | ${fmt(hostSum("pct"), 2)} | ≤ 1.5 |`);
} finally {
  await demo.stop();
}
