// Failover outage benchmark (a script, not a test): three namespace hosts with real PostgreSQL and
// default timers, a writer inserting every 50 ms on every node, and K rounds of each fault — host
// crash (every process of the primary's namespace SIGKILLed, its agent restarted to rejoin),
// primary partitioned (its link cut, then healed), host power-off (link cut and every process
// killed at once), postmaster crash (SIGKILL), planned switchover — printing median/min/max write
// outage per fault, each round's path step by step (a failover's promotion, a postmaster kill's
// restart in place, a switchover's handover), a flapping leader link and a standby's reconnect
// after a heal, beside the baseline in bench/baseline.json (issue 12's figures).
// Outage = the longest gap between two acknowledged writes around the fault.
//   bun bench/failover.ts [--rounds K] [--only fault,fault] [--election key=ms,key=ms] [--backend builtin|etcd]
//   (root, PostgreSQL; ~40 s per fault round; --election overrides [election] timers, e.g. a profile)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBuilt } from "../scripts/build.ts";
import { clusterSkipReason, lineTime, type ClusterNode, type LogMark, type PgCluster } from "../test/helpers/cluster.ts";
import { faultRound, pgherd, type RoundOptions, type RoundResult } from "../test/helpers/writer.ts";
import { parseElection, startCluster } from "./cluster.ts";
import { backendLabel, backendSkipReason, useBackend } from "../test/helpers/backend.ts";
import { flappingLeader, standbyHeal } from "./failover-probes.ts";

type Fault = { name: string; round: (c: PgCluster) => RoundOptions };
let faultWall = 0; // Date.now() at the last injection, for the paths' steps
let faultDirtyMb = 0; // the host's dirty + writeback page cache at the last injection

/** Dirty + Writeback of /proc/meminfo, MB: data the kernel still has to write, which a fault's fsyncs wait behind. */
function dirtyMb(): number {
  const m = readFileSync("/proc/meminfo", "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(m)?.[1] ?? 0);
  return (kb("Dirty") + kb("Writeback")) / 1024;
}

const FAULTS: Fault[] = [
  {
    name: "host crash",
    round: () => ({ label: "host crash", expect: "other", inject: (p) => p.host.killAll("SIGKILL"), restore: (old) => old.start() }),
  },
  {
    name: "primary partitioned",
    round: () => ({ label: "primary partitioned", expect: "other", inject: (p) => p.host.cut(), restore: (old) => old.host.heal() }),
  },
  {
    name: "host power-off",
    round: () => ({
      label: "host power-off", expect: "other",
      inject: async (p) => {
        await p.host.cut();
        await p.host.killAll("SIGKILL");
      },
      restore: async (old) => {
        await old.host.heal();
        await old.start();
      },
    }),
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
const PROBES = ["leader link flapping", "standby streaming after heal"];

type Options = { rounds: number; only: Set<string>; election: Record<string, number> };

function parseOptions(): Options {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { rounds: { type: "string", default: "5" }, only: { type: "string" }, election: { type: "string" }, backend: { type: "string", default: "builtin" } }, strict: true });
  if (values.backend !== "builtin" && values.backend !== "etcd") throw new Error(`--backend must be builtin or etcd, got ${JSON.stringify(values.backend)}`);
  useBackend(values.backend); // test/helpers/backend.ts: etcd adds three etcd member hosts to the lab
  const election = parseElection(values.election);
  const k = Number(values.rounds);
  if (!Number.isInteger(k) || k < 1 || k > 100) throw new Error(`--rounds must be an integer 1..100, got ${JSON.stringify(values.rounds)}`);
  const all = [...FAULTS.map((f) => f.name), ...PROBES];
  const only = new Set(values.only ? values.only.split(",").map((s) => s.trim()) : all);
  for (const o of only) if (!all.includes(o)) throw new Error(`--only: unknown ${JSON.stringify(o)} (known: ${all.join(", ")})`);
  return { rounds: k, only, election };
}

const median = (s: number[]) => (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
function summary(xs: number[], unit = "s", digits = 2): string {
  if (xs.length === 0) return "no successful round";
  const s = [...xs].sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(digits);
  return `${f(median(s))} ${unit} (${f(s[0]!)}–${f(s[s.length - 1]!)}, n=${s.length})`;
}

/** A round's path, step by step: its steps' names and how each is read from the logs. */
type Path = { title: string; steps: readonly string[]; note?: string; read: (r: RoundResult, marks: Map<string, LogMark>) => number[] | null };

/** The wall-clock time of the first line of `n`'s log matching `re` since `since`, or null. */
function firstAt(n: ClusterNode, re: RegExp, since: LogMark): number | null {
  const l = n.lines(re, since)[0];
  return l ? lineTime(l).getTime() : null;
}

/**
 * When the writer's first write acknowledged by `n` ended (wall clock), among those sent at or after
 * the injection and ended at or after `notBefore` (a restart's server may still acknowledge for a
 * moment after its postmaster's kill), or null.
 */
function firstWrite(r: RoundResult, n: ClusterNode, notBefore = 0): number | null {
  const ack = r.writer.acked(n.name).map((a) => ({ a, ended: a.wall + (a.end - a.start) })).find(({ a, ended }) => a.start >= r.at && ended >= notBefore);
  return ack ? ack.ended : null;
}

/** Differences between consecutive times, the first from the fault; null when any is missing. */
function gaps(times: Array<number | null>): number[] | null {
  if (times.some((t) => t === null)) return null;
  const t = [faultWall, ...(times as number[])];
  return t.slice(1).map((x, i) => Math.round(x - t[i]!));
}

/** The election's win, under either consensus backend (the built-in one, or etcd's leader key). */
const WON = /became-leader: won term|took the leader key \(term/;
/** The promotion carried out: pg_promote (with its time) or the pg_ctl promote fallback. */
const PROMOTED = /promoted \S+ \((pg_promote, out of recovery|pg_ctl promote)/;

/** A failover: the new primary's path from its log (wall-clock lines) and the writer. */
const PROMOTION: Path = {
  title: "promotion path of the failovers",
  steps: ["fault → leader", "leader → lease", "lease → promote", "promote → first write", "(promote → promotion logged)"],
  read: (r, marks) => {
    const n = r.neu;
    const since = marks.get(n.name)!;
    const at = (re: RegExp) => firstAt(n, re, since);
    const promote = at(/decision: promote/);
    const logged = at(/\] promotion: (promoted|not-in-recovery)\b/);
    const steps = gaps([at(WON), at(/leading term \d+ with a valid lease/), promote, firstWrite(r, n)]);
    // The promotion's log line comes after its reload, usually after the first write: measured apart.
    return steps && promote !== null && logged !== null ? [...steps, logged - promote] : null;
  },
};

/** A postmaster SIGKILL: the same node notices, restarts its server in place, and writes again. */
const RESTART: Path = {
  title: "restart path of the postmaster kills",
  steps: ["kill → noticed", "noticed → restart begun", "restart begun → restart done (agent)", "restart done → first write"],
  read: (r, marks) => {
    const n = r.neu;
    const since = marks.get(n.name)!;
    const noticed = [/postmaster \d+ exited: monitoring round now/, /decision: start as primary/].map((re) => firstAt(n, re, since)).filter((t) => t !== null) as number[];
    const begun = firstAt(n, /restarting it in place/, since);
    // PostgreSQL accepts writes a moment before the agent records the restart: the step may be ≤ 0.
    return gaps([noticed.length ? Math.min(...noticed) : null, begun, firstAt(n, /history: restart: /, since), begun === null ? null : firstWrite(r, n, begun)]);
  },
};

/** A switchover: the old primary stops, the target wins the election, promotes, and writes. */
const SWITCHOVER: Path = {
  title: "switchover path",
  steps: ["request → old stopped", "old stopped → target leads", "target leads → promote", "promote → out of recovery", "out of recovery → first write"],
  note: "request → old stopped: the CLI, the checks and a checkpoint with writes still served come before the fast shutdown, where the outage begins; target leads → promote: its lease and a round",
  read: (r, marks) => {
    const [o, n] = [r.old, r.neu];
    const at = (x: ClusterNode, re: RegExp) => firstAt(x, re, marks.get(x.name)!);
    return gaps([at(o, /switchover: checkpoint \d+ ms/), at(n, WON), at(n, /decision: promote/), at(n, PROMOTED), firstWrite(r, n)]);
  },
};

/**
 * Which path a fault's round is read for, or null: a postmaster kill whose node did not stay the
 * primary (its restart in place failed and another node took over) fits neither.
 */
function pathOf(fault: string, r: RoundResult): Path | null {
  if (fault === "switchover") return SWITCHOVER;
  if (fault === "postgres crash") return r.neu === r.old ? RESTART : null;
  return r.neu !== r.old ? PROMOTION : null;
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseOptions();
  } catch (e) {
    console.error(`usage: bun bench/failover.ts [--rounds K] [--only fault,fault] [--election k=ms,…] [--backend builtin|etcd]: ${(e as Error).message}`);
    return 2;
  }
  const skip = clusterSkipReason() ?? backendSkipReason();
  if (skip) {
    console.error(`cannot run: ${skip}`);
    return 2;
  }
  const baseline = JSON.parse(readFileSync(join(import.meta.dir, "baseline.json"), "utf8")) as {
    failover: Record<string, { median?: number; min: number; max: number }>; targets: Record<string, number>;
  };
  ensureBuilt();
  const { c, bounds, cfg } = await startCluster("bench-failover", "bench", o.election);
  const faults = FAULTS.filter((f) => o.only.has(f.name));
  const results = new Map<string, number[]>([...faults.map((f) => f.name), ...PROBES.filter((p) => o.only.has(p))].map((n) => [n, []]));
  const paths = new Map<Path, number[][]>([PROMOTION, RESTART, SWITCHOVER].map((p) => [p, p.steps.map(() => [])]));
  const ran = new Map<Path, number>();
  const failures: string[] = [];
  let lostTotal = 0;
  const attempt = async (label: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      failures.push(`${label}: ${(e as Error).message.split("\n")[0]}`);
      console.log(`${label}: FAILED: ${(e as Error).message.split("\n")[0]}`);
      await c.waitHealthy(120_000).catch(() => {});
    }
  };
  try {
    for (let i = 1; i <= o.rounds; i++) {
      for (const f of faults) {
        await attempt(`round ${i} ${f.name}`, async () => {
          // Marked at the injection: lines of the round's warm-up (a leadership change, a decision) come before.
          let marks = new Map<string, LogMark>();
          const opts = f.round(c);
          const r = await faultRound(c, { ...opts, inject: (p) => ((marks = new Map(c.nodes.map((n) => [n.name, n.mark()] as const))), (faultDirtyMb = dirtyMb()), (faultWall = Date.now()), opts.inject(p)) });
          results.get(f.name)!.push(r.analysis.outageMs / 1000);
          const kind = pathOf(f.name, r);
          const path = kind?.read(r, marks) ?? null;
          if (kind) ran.set(kind, (ran.get(kind) ?? 0) + 1);
          if (kind) path?.forEach((ms, k) => paths.get(kind)![k]!.push(ms));
          lostTotal += r.lost.length;
          console.log(`round ${i} ${f.name}: ${r.old.name} -> ${r.neu.name}, outage ${(r.analysis.outageMs / 1000).toFixed(2)} s, ` +
            `${r.analysis.splitBrain.length} split-brain writes, ${r.lost.length} lost, ${faultDirtyMb.toFixed(0)} MB dirty at the fault` + (path ? `; ${kind!.title}: ${path.map((ms) => `${ms}`).join(" / ")} ms` : kind ? `; ${kind.title}: not read (a step's log line missing)` : ""));
        });
      }
      if (o.only.has(PROBES[0]!)) {
        await attempt(`round ${i} ${PROBES[0]}`, async () => {
          const s = await flappingLeader(c);
          results.get(PROBES[0]!)!.push(s);
          console.log(`round ${i} ${PROBES[0]}: new leader with a lease ${s.toFixed(2)} s after the first cut`);
        });
      }
      if (o.only.has(PROBES[1]!)) {
        await attempt(`round ${i} ${PROBES[1]}`, async () => {
          const s = await standbyHeal(c);
          results.get(PROBES[1]!)!.push(s);
          console.log(`round ${i} ${PROBES[1]}: a row written after the heal replayed ${s.toFixed(2)} s later`);
        });
      }
    }
  } finally {
    await c.destroy().catch((e: Error) => console.error(e.message));
  }
  const e = cfg.election;
  console.log(`\n${o.rounds} round(s)${backendLabel()}; timers heartbeat ${e.heartbeat_ms} / lease ${e.lease_ms} / timeout ${e.timeout_ms} / jitter ${e.jitter_ms} / fence ${e.fence_ms} ms ` +
    `(failover bound ${bounds.failoverMs} ms, restart bound ${bounds.restartMs} ms, switchover bound ${bounds.switchoverMs} ms)`);
  console.log(`\n| figure | baseline (issue 12) | now: median (min–max) | target |\n|---|---|---|---|`);
  for (const [name, xs] of results) {
    const b = baseline.failover[name];
    const base = b ? (b.median !== undefined ? `${b.median.toFixed(2)} s (${b.min.toFixed(2)}–${b.max.toFixed(2)})` : `${b.min.toFixed(1)}–${b.max.toFixed(1)} s`) : "";
    const t = baseline.targets[name];
    console.log(`| ${name} | ${base} | ${summary(xs)} | ${t !== undefined ? `≤ ${t} s` : ""} |`);
  }
  for (const [p, xs] of paths) {
    const n = ran.get(p) ?? 0;
    if (n === 0) continue;
    console.log(`\n${p.title} (ms, median (min–max); ${xs[0]!.length} of ${n} round(s) read):`);
    p.steps.forEach((name, k) => console.log(`  ${name.padEnd(36)} ${summary(xs[k]!, "ms", 0)}`));
    if (p.note) console.log(`  (${p.note})`);
  }
  console.log(`acknowledged writes lost (durability ${cfg.durability}): ${lostTotal}`);
  if (failures.length) console.log(`failed rounds:\n  ${failures.join("\n  ")}`);
  console.log(`logs: ${c.artifacts}`);
  return failures.length ? 1 : 0;
}

process.exit(await main());
