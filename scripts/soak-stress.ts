// Stress soak (a script, not part of `npm test`): three namespace hosts with default timers for
// --duration seconds (default 600) while a CPU hog per core runs at normal priority, the primary
// runs an fsync-heavy pgbench (one fsync per commit, 4 clients) and a standby's namespace floods
// the discovery port with bad beacons. It reports role changes, fences, late lease renewals (the
// leader's lease sampled every second with less than half of lease_ms left, i.e. no majority
// acknowledgement for over half a lease) and each agent's event-loop lag p99 (from /metrics).
// Target: zero role changes and zero fences.
//   bun scripts/soak-stress.ts [--duration SECONDS] [--election key=ms,…]   (root, PostgreSQL with pgbench)
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { clusterSkipReason, type ClusterNode } from "../test/helpers/cluster.ts";
import { parseElection, startCluster } from "../bench/cluster.ts";
import { ensureBuilt } from "./build.ts";

const { values } = parseArgs({ args: process.argv.slice(2), options: { duration: { type: "string", default: "600" }, election: { type: "string" } }, strict: true });
const duration = Number(values.duration);
if (!Number.isInteger(duration) || duration < 10 || duration > 86_400) throw new Error(`--duration must be whole seconds 10..86400, got ${values.duration}`);
const skip = clusterSkipReason();
if (skip) throw new Error(`cannot run: ${skip}`);

ensureBuilt();
const { c, healthy, cfg } = await startCluster("soak-stress", "soak", parseElection(values.election));
const children: ChildProcess[] = [];
const stopAll: Array<() => void> = [];
type Metrics = Map<string, number>;

/** /metrics of a node through curl inside its namespace (the API listens on the host's address). */
async function metrics(n: ClusterNode): Promise<Metrics | null> {
  const line = n.lines(/ api listening on /).at(-1);
  const addr = line && / api listening on (?:https?:\/\/)?(\S+)/.exec(line)?.[1];
  if (!addr) return null;
  const r = await n.host.exec(["curl", "-sS", "--max-time", "2", `http://${addr.replace(/\/$/, "")}/metrics`], { timeoutMs: 3000 }).catch(() => null);
  if (!r || r.code !== 0) return null;
  const m: Metrics = new Map();
  for (const l of r.stdout.split("\n")) {
    const x = /^(\w+(?:\{[^}]*\})?) (\S+)$/.exec(l);
    if (x) m.set(x[1]!, Number(x[2]));
  }
  return m;
}

const primary = healthy.primary;
const term0 = c.nodes.map((n) => n.mark());
const leaseMs = cfg.election.lease_ms;
let late = 0;
let minLeft = Infinity;
let samples = 0;
const lagP99 = new Map<string, number[]>(c.nodes.map((n) => [n.name, []]));
const first = new Map<string, Metrics>();
let last = new Map<string, Metrics>();
let benchLines: string[] = [];
try {
  // 1. CPU hogs at normal priority, one per core.
  for (let i = 0; i < availableParallelism(); i++) children.push(spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }));
  // 2. fsync-heavy pgbench on the primary (synchronous_commit on: one WAL flush per commit).
  const pg = ["-h", primary.socketDir, "-p", "5432", "-U", "postgres", "postgres"];
  const init = await primary.host.exec(["pgbench", "-i", "-q", "-s", "5", ...pg], { user: "postgres", timeoutMs: 300_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr.slice(0, 300)}`);
  const bench = primary.host.spawn(["pgbench", "-N", "-c", "4", "-j", "2", "-T", String(duration), "-P", "60", ...pg], { user: "postgres" });
  stopAll.push(() => bench.kill("SIGINT"));
  benchLines = bench.lines;
  // 3. A flood of bad beacons from a standby's namespace: random bytes and near-miss frames.
  const flooder = c.nodes.find((n) => n !== primary)!;
  const targets = [...cfg.discovery.broadcast, ...c.nodes.map((n) => n.ip)];
  const flood = `const d=require("node:dgram").createSocket("udp4");d.bind(()=>{d.setBroadcast(true);let i=0;setInterval(()=>{for(let k=0;k<25;k++){const t=${JSON.stringify(targets)}[i++%${targets.length}];const b=k%2?require("node:crypto").randomBytes(64+k*8):Buffer.from(JSON.stringify({v:1,cluster:"x",node:"0000000000000000",mac:"00".repeat(32),n:i}));d.send(b,${cfg.discovery.port},t)}},10)})`;
  const flooding = flooder.host.spawn([process.execPath, "-e", flood]);
  stopAll.push(() => flooding.kill("SIGKILL"));
  console.log(`soak-stress: ${duration} s, ${availableParallelism()} CPU hogs, pgbench -N -c 4 on ${primary.name}, ~2500 bad beacons/s from ${flooder.name}`);

  const t0 = performance.now();
  let nextReport = 60_000;
  while (performance.now() - t0 < duration * 1000) {
    await Bun.sleep(1000);
    const ms = await Promise.all(c.nodes.map((n) => metrics(n)));
    c.nodes.forEach((n, i) => {
      const m = ms[i];
      if (!m) return;
      if (!first.has(n.name)) first.set(n.name, m);
      last.set(n.name, m);
      const p99 = m.get('pgherd_event_loop_lag_seconds{quantile="0.99"}');
      if (p99 !== undefined) lagP99.get(n.name)!.push(p99 * 1000);
      if (m.get("pgherd_leading") === 1) {
        const left = (m.get("pgherd_lease_remaining_seconds") ?? 0) * 1000;
        samples++;
        minLeft = Math.min(minLeft, left);
        if (left < leaseMs / 2) late++;
      }
    });
    if (performance.now() - t0 > nextReport) {
      nextReport += 60_000;
      console.log(`  ${Math.round((performance.now() - t0) / 1000)} s: role changes ${roleChanges()}, fences ${fences()}, late lease samples ${late}/${samples}`);
    }
  }
  last = new Map(last);
} finally {
  for (const s of stopAll) s();
  for (const ch of children) ch.kill("SIGKILL");
}

function roleChanges(): number {
  return c.nodes.reduce((a, n, i) => a + n.lines(/became-leader: |stepped-down: /, term0[i]!).length, 0);
}
function fences(): number {
  return c.nodes.reduce((a, n, i) => a + n.lines(/fencing PostgreSQL: /, term0[i]!).length, 0);
}

/** Growth of every series whose name starts with `prefix` (labels included), over all nodes. */
const delta = (prefix: string) => c.nodes.reduce((a, n) => {
  const sum = (m: Metrics | undefined) => [...(m ?? new Map<string, number>())].filter(([k]) => k === prefix || k.startsWith(`${prefix}{`)).reduce((x, [, v]) => x + v, 0);
  return a + sum(last.get(n.name)) - sum(first.get(n.name));
}, 0);
console.log(`\nsoak-stress over ${duration} s (timers ${cfg.election.heartbeat_ms}/${cfg.election.lease_ms}/${cfg.election.timeout_ms} ms):`);
console.log(`  role changes (became-leader/stepped-down lines): ${roleChanges()} (target 0); leader changes seen in /metrics: ${delta("pgherd_leader_changes_total")}`);
console.log(`  fences: ${fences()} (target 0); /metrics fencing events: ${delta("pgherd_fencing_events_total")}`);
console.log(`  bad beacons rejected (all nodes): ${delta("pgherd_beacon_rejects_total")}; pgbench: ${benchLines.filter((l) => /tps|progress/.test(l)).at(-1) ?? "no output"}`);
console.log(`  late lease renewals (leader sampled with < ${leaseMs / 2} ms of lease left): ${late} of ${samples} samples; least lease left ${Number.isFinite(minLeft) ? Math.round(minLeft) : "n/a"} ms`);
for (const n of c.nodes) {
  const xs = [...lagP99.get(n.name)!].sort((a, b) => a - b);
  const top = xs.length ? xs[xs.length - 1]! : NaN;
  console.log(`  ${n.name} event-loop lag p99 (60 s windows): worst ${top.toFixed(1)} ms, median ${xs.length ? xs[Math.floor(xs.length / 2)]!.toFixed(1) : "n/a"} ms; RSS ${((last.get(n.name)?.get("pgherd_process_resident_memory_bytes") ?? 0) / 1048576).toFixed(1)} MB`);
}
console.log(`logs: ${c.artifacts}`);
// The verdict before the teardown: stopping the agents hands leadership over (role-change lines).
const passed = roleChanges() === 0 && fences() === 0;
await c.destroy().catch((e: Error) => console.error(e.message));
process.exit(passed ? 0 : 1);
