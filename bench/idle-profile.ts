// Where an idle cluster's pgherd CPU goes (a script for investigating, not a test): an idle 3-node
// loopback cluster as bench:footprint starts it, then for each agent and watchdog its CPU and
// wakeups per thread over --seconds (JS thread, mi-scavenger, HeapHelper, Bun's pool threads;
// user and system time apart), and with --strace the system calls of each agent over 10 s
// (strace -c -f; strace must be installed).
//   bun bench/idle-profile.ts [--seconds N] [--bin PATH] [--strace]
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ensureBuilt } from "../scripts/build.ts";
import { idleDemo } from "./idle-demo.ts";
import { pgherdProcesses } from "./proc-sample.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { seconds: { type: "string", default: "30" }, bin: { type: "string" }, strace: { type: "boolean", default: false } },
  strict: true,
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw new Error(`--seconds must be 5..3600, got ${values.seconds}`);
const bin = values.bin ?? ensureBuilt().path;

type Thread = { name: string; utime: number; stime: number; wakeups: number };

/** Per thread of `pid`: CPU ticks (user, system) and voluntary context switches (= wakeups from sleep). */
function threads(pid: number): Map<string, Thread> {
  const out = new Map<string, Thread>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      out.set(tid, { name, utime: Number(f[11]), stime: Number(f[12]), wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const demo = await idleDemo(bin);
const scratch = demo.scratch;
const transcript = demo.transcript();
try {
  console.log(/cluster demo: .*/.exec(transcript)?.[0] ?? "");
  const procs = pgherdProcesses(scratch);
  const before = procs.map((p) => threads(p.pid));
  await Bun.sleep(seconds * 1000);
  const pct = (ticks: number) => ((ticks / seconds) as number).toFixed(2).padStart(6); // 100 ticks/s: ticks per s = % of a core
  procs.forEach((p, i) => {
    console.log(`\n${p.node} ${p.kind} (pid ${p.pid})   thread           user %  sys %  wakeups/s`);
    let u = 0;
    let s = 0;
    let w = 0;
    for (const [tid, t1] of threads(p.pid)) {
      const t0 = before[i]!.get(tid) ?? { name: t1.name, utime: 0, stime: 0, wakeups: 0 };
      const d = { u: t1.utime - t0.utime, s: t1.stime - t0.stime, w: t1.wakeups - t0.wakeups };
      u += d.u;
      s += d.s;
      w += d.w;
      if (d.u + d.s > 0 || d.w > 0) console.log(`  ${tid.padEnd(30)} ${t1.name.padEnd(16)} ${pct(d.u)} ${pct(d.s)} ${(d.w / seconds).toFixed(1).padStart(9)}`);
    }
    console.log(`  ${"all threads".padEnd(47)} ${pct(u)} ${pct(s)} ${(w / seconds).toFixed(1).padStart(9)}`);
  });
  if (values.strace) {
    for (const p of procs.filter((x) => x.kind === "agent")) {
      const r = spawnSync("timeout", ["-s", "INT", "10", "strace", "-c", "-f", "-p", String(p.pid)], { encoding: "utf8" });
      console.log(`\nstrace -c -f, ${p.node} agent, 10 s\n${r.stderr.split("\n").filter((l) => !l.startsWith("strace:")).slice(0, 25).join("\n")}`);
    }
  }
} finally {
  await demo.stop();
}
