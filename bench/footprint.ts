// Footprint benchmark (a script, not a test): an idle 3-node loopback cluster (`pgherd demo`'s
// setup, dist/pgherd, default timers), then RSS and CPU of every pgherd process (agent, fencing
// watchdog) sampled over --seconds (default 60), per process and per host, beside the baseline in
// bench/baseline.json and the issue's targets. With --base PATH a second cluster of that binary
// runs at the same time (single runs vary by about ±10 % in CPU with the machine's load) and a
// side-by-side summary follows. Both binaries are then run from fresh copies in one directory: a
// binary's file-backed RSS depends on how its file entered the page cache (a fresh copy of the
// same binary showed 1.2–1.3 MB more per process than one long in the cache).
// --set section.key=value (repeatable) sets a key in every node's pgherd.toml of the --bin cluster
// only, so `--base dist/pgherd --set election.heartbeat_ms=300` shows what a timer costs.
//   bun bench/footprint.ts [--seconds N] [--bin PATH] [--base PATH] [--set K=V]…   (PostgreSQL installed; as root it runs it as "postgres")
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBuilt } from "../scripts/build.ts";
import { parseDemoSettings } from "../src/demo/config.ts";
import { idleDemo } from "./idle-demo.ts";
import { median, pgherdProcesses, sampleRun, type PgherdProc, type Sampled } from "./proc-sample.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { seconds: { type: "string", default: "60" }, bin: { type: "string" }, base: { type: "string" }, set: { type: "string", multiple: true, default: [] } },
  strict: true,
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw new Error(`--seconds must be 5..3600, got ${values.seconds}`);
const settings = parseDemoSettings(values.set);
const baseline = JSON.parse(readFileSync(join(import.meta.dir, "baseline.json"), "utf8")).footprint as Record<string, number>;

type Row = PgherdProc & Sampled;
type Run = { bin: string; rows: Row[]; hostOnce: Map<string, number>; wall: number; primary: string; set: string };

/** Starts the idle cluster of `bin`, samples its processes for `seconds`, stops it. */
async function measure(bin: string, set: typeof settings): Promise<Run> {
  const demo = await idleDemo(bin, set);
  try {
    const procs = pgherdProcesses(demo.scratch);
    if (procs.filter((p) => p.kind === "agent").length !== 3 || procs.filter((p) => p.kind === "watchdog").length !== 3) {
      throw new Error(`expected 3 agents and 3 watchdogs under ${demo.scratch}, found ${JSON.stringify(procs)}`);
    }
    const hostNames = [...new Set(procs.map((p) => p.node))];
    const groups = new Map(hostNames.map((n) => [n, procs.filter((p) => p.node === n).map((p) => p.pid)]));
    const r = await sampleRun(procs.map((p) => p.pid), groups, seconds, (pid) => `process ${pid} under ${demo.scratch}`);
    const rows = procs.map((p) => ({ ...p, ...r.per.get(p.pid)! }));
    const wall = r.wall;
    const primary = /cluster demo: .*primary (\w+)/.exec(demo.transcript())?.[1] ?? "";
    return { bin, rows, hostOnce: r.once, wall, primary, set: Object.keys(set).length ? values.set.join(" ") : "" };
  } finally {
    await demo.stop();
  }
}

const hosts = (r: Run) => [...r.hostOnce.keys()].map((n) => r.rows.filter((x) => x.node === n));
const hostSum = (r: Run, k: "rss" | "pss" | "uss" | "anon" | "pct") => hosts(r).map((h) => h.reduce((a, x) => a + x[k], 0));
const fmt = (xs: number[], d: number) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;

function report(r: Run): void {
  console.log(`\nfootprint of an idle 3-node loopback cluster over ${r.wall.toFixed(0)} s (${r.bin}${process.env.BUN_OPTIONS ? `, BUN_OPTIONS=${process.env.BUN_OPTIONS}` : ""}${r.set ? `, set ${r.set}` : ""})`);
  console.log("median MB over the run (RSS = anonymous + file-backed); CPU % of one core");
  console.log("  node  process  pid       RSS    PSS    USS   anon   file   CPU %");
  const f1 = (x: number) => x.toFixed(1).padStart(6);
  for (const x of r.rows) {
    console.log(`  ${x.node} ${x.kind.padEnd(8)} ${String(x.pid).padEnd(7)} ${f1(x.rss)} ${f1(x.pss)} ${f1(x.uss)} ${f1(x.anon)} ${f1(x.file)} ${x.pct.toFixed(2).padStart(6)}`);
  }
  const per = (k: string) => r.rows.filter((x) => x.kind === k);
  const b = (k: string) => (baseline[k] === undefined ? "" : String(baseline[k]));
  console.log(`\n| figure | baseline | now: median (min–max) over 3 hosts | target |`);
  console.log(`|---|---|---|---|`);
  for (const k of ["agent", "watchdog"] as const) {
    console.log(`| ${k} RSS MB | ${b(`${k}RssMb`)} | ${fmt(per(k).map((x) => x.rss), 1)} | |`);
    console.log(`| ${k} PSS MB (binary shared by 6 processes here) | | ${fmt(per(k).map((x) => x.pss), 1)} | |`);
    console.log(`| ${k} USS MB | | ${fmt(per(k).map((x) => x.uss), 1)} | |`);
    console.log(`| ${k} CPU % | ${b(`${k}CpuPct`)} | ${fmt(per(k).map((x) => x.pct), 2)} | |`);
  }
  console.log(`| RSS per host MB (sum; the target's figure) | ${b("hostRssMb")} | ${fmt(hostSum(r, "rss"), 1)} | ≤ 60 |`);
  console.log(`| resident per host MB, shared pages once (= PSS sum on a real host) | | ${fmt([...r.hostOnce.values()], 1)} | |`);
  console.log(`| USS per host MB (sum) | | ${fmt(hostSum(r, "uss"), 1)} | |`);
  console.log(`| CPU per host % | ${b("hostCpuPct")} | ${fmt(hostSum(r, "pct"), 2)} | ≤ 1.5 |`);
}

/** The two runs side by side: per host (median, min–max) and the agents apart by role. */
function compare(base: Run, now: Run): void {
  const agents = (r: Run, primary: boolean) => r.rows.filter((x) => x.kind === "agent" && (x.node === r.primary) === primary).map((x) => x.pct.toFixed(2)).join(" / ");
  const line = (label: string, f: (r: Run) => string) => console.log(`| ${label} | ${f(base)} | ${f(now)} |`);
  console.log(`\nside by side, both clusters at the same time\n| figure | base ${base.bin} | now ${now.bin}${now.set ? ` (${now.set})` : ""} |\n|---|---|---|`);
  line("standby agents CPU %", (r) => agents(r, false));
  line("primary's agent CPU %", (r) => `${agents(r, true)} (${r.primary})`);
  line("watchdogs CPU %", (r) => r.rows.filter((x) => x.kind === "watchdog").map((x) => x.pct.toFixed(2)).join(" / "));
  line("CPU per host %", (r) => fmt(hostSum(r, "pct"), 2));
  line("RSS per host MB", (r) => fmt(hostSum(r, "rss"), 1));
  line("resident per host MB, shared pages once", (r) => fmt([...r.hostOnce.values()], 1));
  line("anonymous per host MB", (r) => fmt(hostSum(r, "anon"), 1));
  line("USS per host MB", (r) => fmt(hostSum(r, "uss"), 1));
}

const bin = values.bin ?? ensureBuilt().path;
if (values.base === undefined) {
  report(await measure(bin, settings));
} else {
  const dir = mkdtempSync("/tmp/pgherd-footprint-");
  try {
    chmodSync(dir, 0o755); // the agents run as "postgres" when started as root
    const copy = (from: string, name: string) => {
      const to = join(dir, name);
      copyFileSync(from, to);
      chmodSync(to, 0o755);
      return to;
    };
    const [base, now] = await Promise.all([measure(copy(values.base, "pgherd-base"), {}), measure(copy(bin, "pgherd-now"), settings)]);
    report(base);
    report(now);
    compare(base, now);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
