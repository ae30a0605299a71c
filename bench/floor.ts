// Floor benchmark (a script, not a test): what Bun itself costs for issue 12's per-host targets
// (agent + fencing watchdog ≤ 60 MB RSS summed, ≤ 1.5 % of a core idle). It compiles skeleton
// programs (bench/floor/: no pgherd logic) with the build flags of scripts/build.ts into one binary
// and runs, as the `postgres` OS user when root, the idle skeleton (a process that only waits),
// three watchdog-like skeletons (inotify on a directory, a read per event) and three agent-like
// skeletons forming the idle cluster's mesh at its rates (bench/floor/agent-like.ts) against a
// throwaway PostgreSQL; by default the real idle 3-node cluster (`pgherd demo`'s, as
// bench:footprint) runs at the same time, and both are sampled over --seconds with the same
// readings: RSS, PSS, USS, anonymous and file-backed memory (medians) and CPU % of one core.
//   bun bench/floor.ts [--seconds N] [--heartbeat-ms N] [--bin PATH] [--no-real]   (PostgreSQL installed)
// --heartbeat-ms changes the skeleton leader's heartbeat only (the real cluster keeps its default).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBuilt, JIT_POLICY, ROOT } from "../scripts/build.ts";
import { freeTcpPorts, freeUdpPort } from "../src/demo/ports.ts";
import { createLogger } from "../src/log.ts";
import { findBinDir, pgTool } from "../src/postgres/binaries.ts";
import { start as pgStart, stop as pgStop, type PgNode } from "../src/postgres/ctl.ts";
import { runToolOk } from "../src/postgres/exec.ts";
import { isRoot, lookupOsUser, type OsUser } from "../src/postgres/users.ts";
import type { AgentLikeConfig } from "./floor/agent-like.ts";
import { idleDemo, type IdleDemo } from "./idle-demo.ts";
import { median, pgherdProcesses, sampleRun, type Sampled } from "./proc-sample.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { seconds: { type: "string", default: "60" }, "heartbeat-ms": { type: "string", default: "150" }, bin: { type: "string" }, "no-real": { type: "boolean", default: false } },
  strict: true,
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw new Error(`--seconds must be 5..3600, got ${values.seconds}`);
// The leader's heartbeat interval; 150 = [election] heartbeat_ms's default, the real cluster's.
const heartbeatMs = Number(values["heartbeat-ms"]);
if (!Number.isInteger(heartbeatMs) || heartbeatMs < 10 || heartbeatMs > 10_000) throw new Error(`--heartbeat-ms must be 10..10000, got ${values["heartbeat-ms"]}`);
const MB = 1048576;
const TARGET = { rssMb: 60, cpuPct: 1.5 };
/** The allocator option the real agent re-executes itself with (src/main.ts) and its watchdog inherits. */
const ALLOCATOR_ENV = { MIMALLOC_PURGE_HOLES_MIN_INTERVAL: "1000" };
const log = createLogger("error", "floor");

type Proc = { pid: number; what: string; host: string; lead: boolean };
type Row = Proc & Sampled;
/** A host's processes whose pages count once together (agent + watchdog, or a variant). */
type HostGroup = { label: string; host: string; lead: boolean; pids: number[] };

/** The skeleton binary, compiled as scripts/build.ts compiles pgherd. */
function compileSkeletons(dir: string): string {
  const out = join(dir, "floor");
  const args = [
    "build", "--compile",
    // As scripts/build.ts (which lists these inline; only JIT_POLICY is exported).
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--splitting",
    `--compile-jit-policy=${JIT_POLICY}`,
    join(import.meta.dir, "floor", "main.ts"), "--outfile", out,
  ];
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bun build of the skeletons failed:\n${r.stdout}${r.stderr}`);
  chmodSync(out, 0o755);
  return out;
}

/** A directory the OS user owns (the skeletons and PostgreSQL write there). */
function ownedDir(path: string, as: OsUser | null, mode = 0o700): string {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
  if (as) chownSync(path, as.uid, as.gid);
  return path;
}

/** A throwaway PostgreSQL server listening only on a unix socket in `dir`, local trust auth. */
async function startPostgres(dir: string, as: OsUser | null): Promise<{ node: PgNode; socketDir: string; port: number }> {
  const bins = await findBinDir(undefined, { log });
  const osUser = as?.name ?? userInfo().username;
  const dataDir = join(ownedDir(join(dir, "pg"), as), "data");
  const socketDir = ownedDir(join(dir, "pg", "socket"), as, 0o755);
  await runToolOk({
    bin: pgTool(bins, "initdb"), user: osUser, timeoutMs: 180_000, log,
    args: ["-D", dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=reject", "--no-sync", "--no-locale", ...(bins.version >= 14 ? ["--no-instructions"] : [])],
  });
  const [port] = await freeTcpPorts(1);
  appendFileSync(join(dataDir, "postgresql.conf"), `\nport = ${port}\nlisten_addresses = ''\nunix_socket_directories = '${socketDir}'\n`);
  const node: PgNode = { bins, dataDir, osUser, log };
  await pgStart(node, { logFile: join(dir, "pg", "server.log") });
  return { node, socketDir, port: port! };
}

type Skeleton = { proc: Proc; child: ChildProcess; stdout: () => string; stderr: () => string };

function spawnSkeleton(bin: string, args: string[], as: OsUser | null, proc: Omit<Proc, "pid">): Skeleton {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: as?.home ?? process.env.HOME ?? "/", ...ALLOCATOR_ENV };
  const child = spawn(bin, args, { env, cwd: "/", stdio: ["ignore", "pipe", "pipe"], ...(as ? { uid: as.uid, gid: as.gid } : {}) });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  if (!child.pid) throw new Error(`cannot start ${bin} ${args.join(" ")}`);
  return { proc: { ...proc, pid: child.pid }, child, stdout: () => out, stderr: () => err };
}

/** Waits (with a deadline) until every agent-like skeleton printed "ready". */
async function untilReady(agents: Skeleton[], ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!agents.every((a) => a.stdout().includes("ready\n"))) {
    const dead = agents.find((a) => a.child.exitCode !== null);
    if (dead || performance.now() > end) {
      throw new Error(`agent-like skeletons not ready after ${ms} ms:\n${agents.map((a) => `${a.proc.host}: ${a.stdout()}${a.stderr()}`).join("\n")}`);
    }
    await Bun.sleep(100);
  }
}

/** SIGTERM, then the counters the skeleton printed (JSON), or null. */
async function stopSkeleton(s: Skeleton): Promise<Record<string, number> | null> {
  const exited = new Promise((r) => s.child.once("exit", r));
  s.child.kill("SIGTERM");
  await Promise.race([exited, Bun.sleep(5000)]);
  if (s.child.exitCode === null) s.child.kill("SIGKILL");
  const last = s.stdout().trim().split("\n").pop() ?? "";
  return last.startsWith("{") ? (JSON.parse(last) as Record<string, number>) : null;
}

/** Every process and host group sampled once a second for `seconds`: medians of memory, CPU % over the run. */
async function sample(procs: Proc[], groups: HostGroup[]): Promise<{ rows: Row[]; once: Map<HostGroup, number>; wall: number }> {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const r = await sampleRun(procs.map((p) => p.pid), new Map(groups.map((g) => [g, g.pids])), seconds, (pid) => `${byPid.get(pid)!.what} of ${byPid.get(pid)!.host}`);
  return { rows: procs.map((p) => ({ ...p, ...r.per.get(p.pid)! })), once: r.once, wall: r.wall };
}

function realProcs(demo: IdleDemo): Proc[] {
  const primary = /cluster demo: .*primary (\w+)/.exec(demo.transcript())?.[1] ?? "";
  const procs = pgherdProcesses(demo.scratch).map((p) => ({ pid: p.pid, what: p.kind, host: p.node, lead: p.node === primary }));
  if (procs.length !== 6) throw new Error(`expected 3 agents and 3 watchdogs under ${demo.scratch}, found ${JSON.stringify(procs)}`);
  return procs;
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const spread = (xs: number[], f: (x: number) => string) => (xs.length === 1 ? f(xs[0]!) : `${f(median(xs))} (${xs.map(f).join(" / ")})`);

function report(r: Awaited<ReturnType<typeof sample>>, groups: HostGroup[], stats: Map<number, Record<string, number> | null>): void {
  console.log(`\nfloor of the runtime over ${r.wall.toFixed(0)} s (Bun ${Bun.version}, --compile-jit-policy=${JIT_POLICY}, MIMALLOC_PURGE_HOLES_MIN_INTERVAL=1000, skeleton heartbeat ${heartbeatMs} ms)`);
  console.log("median MB over the run (RSS = anonymous + file-backed); CPU % of one core; * = the leader's (primary's) host");
  console.log("  process         host    pid       RSS    PSS    USS   anon   file   CPU %");
  for (const x of r.rows) {
    const c = (v: number) => v.toFixed(1).padStart(6);
    console.log(`  ${x.what.padEnd(15)} ${(x.host + (x.lead ? " *" : "")).padEnd(7)} ${String(x.pid).padEnd(7)} ${c(x.rss)} ${c(x.pss)} ${c(x.uss)} ${c(x.anon)} ${c(x.file)} ${x.pct.toFixed(2).padStart(6)}`);
  }
  console.log("\nwhat the skeletons did, per second of their life (start-up included)");
  for (const x of r.rows) {
    const s = stats.get(x.pid);
    if (!s) continue;
    const per = Object.entries(s).filter(([k]) => k !== "seconds" && k !== "http" && k !== "bytes").map(([k, v]) => `${k} ${(v / s.seconds!).toFixed(1)}`);
    console.log(`  ${x.what} ${x.host}: ${per.join(", ")}`);
  }
  const labels = [...new Set(groups.map((g) => g.label))];
  const row = (g: HostGroup) => r.rows.filter((x) => g.pids.includes(x.pid));
  const sum = (g: HostGroup, k: "rss" | "uss" | "anon" | "pct") => row(g).reduce((a, x) => a + x[k], 0);
  const cell = (label: string, lead: boolean, f: (g: HostGroup) => number, fmt: (x: number) => string) =>
    spread(groups.filter((g) => g.label === label && g.lead === lead).map(f), fmt);
  console.log("\nper host (leader's host, and the two other hosts: median (each))");
  console.log(`| figure | ${labels.flatMap((l) => [`${l}: leader's host`, `${l}: other hosts`]).join(" | ")} | target |`);
  console.log(`|---|${labels.map(() => "---|---|").join("")}---|`);
  const line = (name: string, f: (g: HostGroup) => number, fmt: (x: number) => string, target: string) =>
    console.log(`| ${name} | ${labels.flatMap((l) => [cell(l, true, f, fmt), cell(l, false, f, fmt)]).join(" | ")} | ${target} |`);
  line("RSS sum MB (the target's figure)", (g) => sum(g, "rss"), f1, `≤ ${TARGET.rssMb}`);
  line("resident MB, shared pages once", (g) => r.once.get(g)!, f1, "");
  line("USS sum MB", (g) => sum(g, "uss"), f1, "");
  line("anonymous sum MB", (g) => sum(g, "anon"), f1, "");
  line("CPU % of a core", (g) => sum(g, "pct"), f2, `≤ ${TARGET.cpuPct}`);
}

const as = isRoot() ? await lookupOsUser("postgres") : null;
const dir = mkdtempSync("/tmp/pgherd-floor-");
chmodSync(dir, 0o755); // the skeletons run as "postgres" when started as root
const skeletons: Skeleton[] = [];
let pg: Awaited<ReturnType<typeof startPostgres>> | null = null;
let demo: IdleDemo | null = null;
try {
  const bin = compileSkeletons(dir);
  // The real cluster from a fresh copy too: file-backed RSS depends on how a binary entered the page cache (bench/footprint.ts).
  const real = values["no-real"] ? null : join(dir, "pgherd");
  if (real) {
    copyFileSync(values.bin ?? ensureBuilt().path, real);
    chmodSync(real, 0o755);
  }
  const realDemo = real ? idleDemo(real) : null;
  realDemo?.catch(() => {}); // awaited below
  pg = await startPostgres(dir, as);
  const hosts = ["n1", "n2", "n3"];
  const ports = await freeTcpPorts(3);
  const beaconPort = await freeUdpPort();
  const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
  const peers = hosts.map((id, i) => ({ id, port: ports[i]! }));
  skeletons.push(spawnSkeleton(bin, ["idle"], as, { what: "idle", host: "-", lead: false }));
  const watchdogs = hosts.map((h, i) => spawnSkeleton(bin, ["watchdog-like", ownedDir(join(ownedDir(join(dir, h), as, 0o755), "state"), as)], as, { what: "watchdog-like", host: h, lead: i === 0 }));
  const agents = hosts.map((h, i) => {
    const cfg: AgentLikeConfig = {
      id: h, port: ports[i]!, peers: peers.filter((p) => p.id !== h), leader: i === 0, heartbeatMs, beaconPort, secret,
      leaseDir: i === 0 ? join(dir, h, "state") : null, pg: { socketDir: pg!.socketDir, port: pg!.port, user: "postgres" },
    };
    const file = join(dir, h, "agent.json");
    writeFileSync(file, JSON.stringify(cfg), { mode: 0o600 });
    if (as) chownSync(file, as.uid, as.gid);
    return spawnSkeleton(bin, ["agent-like", file], as, { what: "agent-like", host: h, lead: i === 0 });
  });
  skeletons.push(...watchdogs, ...agents);
  await untilReady(agents, 30_000);
  await Bun.sleep(5000); // as idle-demo.ts: let start-up work settle
  demo = realDemo ? await realDemo : null;
  const procs = [...skeletons.map((s) => s.proc), ...(demo ? realProcs(demo) : [])];
  const idlePid = skeletons[0]!.proc.pid;
  const groups: HostGroup[] = hosts.flatMap((h, i) => [
    { label: "floor: agent-like + watchdog-like", host: h, lead: i === 0, pids: [agents[i]!.proc.pid, watchdogs[i]!.proc.pid] },
    { label: "floor: agent-like + idle", host: h, lead: i === 0, pids: [agents[i]!.proc.pid, idlePid] },
  ]);
  if (demo) {
    const rp = procs.filter((p) => p.what === "agent" || p.what === "watchdog");
    for (const h of [...new Set(rp.map((p) => p.host))]) {
      groups.push({ label: "real: agent + watchdog", host: h, lead: rp.some((p) => p.host === h && p.lead), pids: rp.filter((p) => p.host === h).map((p) => p.pid) });
    }
  }
  const result = await sample(procs, groups);
  const stats = new Map<number, Record<string, number> | null>();
  for (const s of skeletons) stats.set(s.proc.pid, await stopSkeleton(s));
  report(result, groups, stats);
} finally {
  await Promise.all(skeletons.map((s) => (s.child.exitCode === null && s.child.signalCode === null ? stopSkeleton(s) : null)));
  await demo?.stop();
  if (pg) await pgStop(pg.node, "fast", 60).catch((e: Error) => console.error(`stopping the throwaway PostgreSQL: ${e.message}`));
  rmSync(dir, { recursive: true, force: true });
}
