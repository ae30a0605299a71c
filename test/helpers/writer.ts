// A client that writes continuously while a fault is injected, to every node at once: one lane
// (one connection) per node, each inserting a row every `intervalMs` through the node's unix
// socket as the superuser. The hosts share a filesystem, so the socket reaches a server even when
// its host is cut off from the network: that is how an isolated old primary is probed.
// Every attempt is recorded (node, id, start/ack time, acknowledged or not); analyse() turns them
// into the numbers the failover tests assert and print.
// The second half is the fault round the failover tests and bench/failover.ts share: a healthy
// cluster, the writer running, one fault, the new primary, the cluster restored, the numbers.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { BINARY } from "../../scripts/build.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { z } from "zod";
import { PgCluster, poll, type ClusterNode, type Healthy } from "./cluster.ts";
import { storedGuard } from "./durability.ts";
import { waitFor, type RunResult } from "./proc.ts";
import { backendTimes } from "./backend.ts";

export interface Attempt {
  node: string;
  id: number;
  /** performance.now() when the INSERT was sent / when its answer (or failure) arrived. */
  start: number;
  end: number;
  /** Date.now() when it was sent. */
  wall: number;
  ok: boolean;
  error: string | null;
}

export interface WriterOptions {
  /** Pause between two attempts of one lane (default 50 ms). */
  intervalMs?: number;
  /** An attempt without an answer by then counts as not acknowledged (default 1000 ms). */
  timeoutMs?: number;
  table?: string;
}

export interface Analysis {
  /** Longest gap between two consecutive acknowledged writes (any node), ending after `from`; Infinity if none resumed. */
  outageMs: number;
  /** `from` → the first acknowledged write on `newPrimary` sent at or after `from`. */
  recoveryMs: number | null;
  firstNewAck: Attempt | null;
  lastOldAck: Attempt | null;
  /** Writes the old primary acknowledged after the new primary's first acknowledgement. */
  splitBrain: Attempt[];
  /** firstNewAck.start − lastOldAck.end: > 0 means the intervals do not even overlap. */
  separationMs: number | null;
  acked: number;
  attempts: number;
}

const READ_ONLY = "25006";
// Ids unique across every writer of this process, so two writers never collide in one table.
let nextId = 1;

export class Writer {
  readonly attempts: Attempt[] = [];
  readonly marks = new Map<string, number>();
  private readonly lanes: Lane[];
  private running = false;
  private loops: Promise<void>[] = [];
  readonly table: string;

  constructor(nodes: readonly ClusterNode[], private readonly o: WriterOptions = {}) {
    this.table = o.table ?? "failover_w";
    if (!/^[a-z_][a-z0-9_]*$/.test(this.table)) throw new Error(`writer: bad table name ${JSON.stringify(this.table)}`);
    this.lanes = nodes.map((n) => new Lane(n, this.o.timeoutMs ?? 1000));
  }

  /** Creates the table on the primary (it replicates). */
  async prepare(primary: ClusterNode): Promise<void> {
    await primary.query(`create table if not exists ${this.table} (id bigint primary key, node text not null, at timestamptz not null default clock_timestamp())`);
  }

  start(): void {
    if (this.running) throw new Error("writer already running");
    this.running = true;
    this.loops = this.lanes.map((l) => this.drive(l));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.lanes.map((l) => l.close()));
  }

  /** Records "now" under a label (the fault's injection time) and returns it. */
  mark(label: string): number {
    const t = performance.now();
    this.marks.set(label, t);
    return t;
  }

  acked(node?: string): Attempt[] {
    return this.attempts.filter((a) => a.ok && (node === undefined || a.node === node)).sort((a, b) => a.end - b.end);
  }

  /** Nodes that acknowledged a write sent at or after `since`. */
  writableSince(since: number): string[] {
    return [...new Set(this.attempts.filter((a) => a.ok && a.start >= since).map((a) => a.node))].sort();
  }

  /** Waits until `node` acknowledged a write sent at or after `since` (or the deadline passes). */
  async waitAck(node: string, since: number, timeoutMs: number): Promise<Attempt> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const a = this.attempts.find((x) => x.ok && x.node === node && x.start >= since);
      if (a) return a;
      if (performance.now() > end) {
        const last = this.attempts.filter((x) => x.node === node).at(-1);
        throw new Error(`no write acknowledged by ${node} within ${timeoutMs} ms (last attempt: ${last ? (last.ok ? "ok" : last.error) : "none"})`);
      }
      await Bun.sleep(20);
    }
  }

  analyse(o: { from: number; oldPrimary: string; newPrimary: string }): Analysis {
    const acks = this.acked();
    let outage = 0;
    let resumed = false;
    for (let i = 1; i < acks.length; i++) {
      if (acks[i]!.end < o.from) continue;
      resumed = true;
      outage = Math.max(outage, acks[i]!.end - acks[i - 1]!.end);
    }
    const firstNewAck = acks.find((a) => a.node === o.newPrimary && a.start >= o.from) ?? null;
    const old = acks.filter((a) => a.node === o.oldPrimary);
    const lastOldAck = (firstNewAck ? old.filter((a) => a.end <= firstNewAck.end) : old).at(-1) ?? null;
    const splitBrain = o.oldPrimary === o.newPrimary || !firstNewAck ? [] : old.filter((a) => a.end > firstNewAck.end);
    return {
      outageMs: resumed ? outage : Infinity,
      recoveryMs: firstNewAck ? firstNewAck.end - o.from : null,
      firstNewAck, lastOldAck, splitBrain,
      separationMs: firstNewAck && lastOldAck && o.oldPrimary !== o.newPrimary ? firstNewAck.start - lastOldAck.end : null,
      acked: acks.length, attempts: this.attempts.length,
    };
  }

  /** Ids this writer saw acknowledged that are missing on `primary` (with the node that acknowledged each). */
  async lost(primary: ClusterNode): Promise<{ id: number; node: string }[]> {
    const acks = this.acked();
    if (acks.length === 0) return [];
    const min = Math.min(...acks.map((a) => a.id));
    const rows = await primary.query(`select id::int as id from ${this.table} where id >= ${min}`, 15_000);
    const have = new Set(rows.map((r) => Number(r.id)));
    return acks.filter((a) => !have.has(a.id)).map((a) => ({ id: a.id, node: a.node }));
  }

  private async drive(lane: Lane): Promise<void> {
    const interval = this.o.intervalMs ?? 50;
    while (this.running) {
      const t0 = performance.now();
      this.attempts.push(await lane.insert(this.table, nextId++));
      const left = interval - (performance.now() - t0);
      if (left > 0) await Bun.sleep(left);
    }
  }
}

/** One node's connection: reopened after any failure other than "read-only" (a standby answers that). */
class Lane {
  private sql: postgres.Sql | null = null;
  private socketDir: string | null = null;

  constructor(private readonly node: ClusterNode, private readonly timeoutMs: number) {
    // The name goes into the INSERT as a literal.
    if (!/^[a-z0-9_-]+$/i.test(node.name)) throw new Error(`writer: unusable node name ${JSON.stringify(node.name)}`);
  }

  async insert(table: string, id: number): Promise<Attempt> {
    const start = performance.now();
    const wall = Date.now();
    const done = (ok: boolean, error: string | null): Attempt => ({ node: this.node.name, id, start, end: performance.now(), wall, ok, error });
    let sql: postgres.Sql;
    try {
      sql = this.client();
    } catch (e) {
      return done(false, (e as Error).message);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const q = sql.unsafe(`insert into ${table} (id, node) values (${id}, '${this.node.name}')`);
    const timeout = new Promise<"timeout">((r) => { timer = setTimeout(() => r("timeout"), this.timeoutMs); });
    try {
      const r = await Promise.race([q.then(() => "ok" as const), timeout]);
      if (r === "ok") return done(true, null);
      q.catch(() => {});
      await this.close();
      return done(false, `no answer within ${this.timeoutMs} ms (outcome unknown)`);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (err.code !== READ_ONLY) await this.close();
      return done(false, `${err.code ? `${err.code} ` : ""}${err.message ?? String(e)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    const s = this.sql;
    this.sql = null;
    await s?.end({ timeout: 0 }).catch(() => {});
  }

  private client(): postgres.Sql {
    if (this.sql) return this.sql;
    // The socket dir comes from the running server's postmaster.pid; a stopped server has none,
    // so keep the last one seen (the connection then fails, as it should).
    try {
      this.socketDir = this.node.socketDir;
    } catch (e) {
      if (!this.socketDir) throw e;
    }
    this.sql = postgres({
      host: this.socketDir, port: 5432, user: "postgres", database: "postgres", pass: () => "",
      max: 1, connect_timeout: 2, idle_timeout: 0, max_lifetime: null, fetch_types: false, prepare: false,
      connection: { application_name: "pgherd-e2e-writer" }, onnotice: () => {},
    });
    return this.sql;
  }
}

/** One line per analysis for the test output (and the issue's closing note). */
export function describeAnalysis(label: string, a: Analysis, lost: { id: number; node: string }[]): string {
  const s = (ms: number | null) => (ms === null ? "n/a" : Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");
  const lostText = lost.length === 0 ? "0 lost" : `${lost.length} lost (ids ${lost.slice(0, 20).map((l) => `${l.id}@${l.node}`).join(", ")}${lost.length > 20 ? ", ..." : ""})`;
  return `${label}: outage ${s(a.outageMs)}, first write on the new primary ${s(a.recoveryMs)} after the fault, ` +
    `old/new separation ${a.separationMs === null ? "n/a" : `${Math.round(a.separationMs)} ms`}, ` +
    `${a.splitBrain.length} acknowledged by the old primary after the new one's first, ${a.acked}/${a.attempts} writes acknowledged, ${lostText}`;
}

// ---------------------------------------------------------------------------------------------
// Fault rounds on a PgCluster, shared by test/e2e/failover-*.e2e.test.ts and bench/failover.ts:
// a healthy cluster, the writer running, one fault, the new primary, the cluster restored.
// ---------------------------------------------------------------------------------------------

/** Time bounds derived from a node's configuration (the tests assert them, the bench prints them). */
export interface Bounds {
  /** A dead or isolated leader → the new primary acknowledges a write. */
  failoverMs: number;
  /** Lease end (+ the fencing budget) → the old primary stops acknowledging. */
  fenceMs: number;
  /** A crashed postmaster → restarted in place and acknowledging. */
  restartMs: number;
  /** Planned switchover: write outage. */
  switchoverMs: number;
}

/** Vote round trip + the new leader's first lease round + one monitoring round + pg_promote, on a loaded 2-core box. */
export const PROMOTION_ALLOWANCE_MS = 2000;
/** pg_ctl start of a crashed primary (crash recovery of little WAL) on a loaded 2-core box. */
export const RESTART_ALLOWANCE_MS = 1500;
/** The writer notices within an interval, an attempt may wait out its timeout. */
export const OBSERVE_SLACK_MS = 300;

export function boundsOf(cfg: Config): Bounds {
  const t = backendTimes(cfg); // builtin: timeout + jitter, lease + fence, one heartbeat; etcd: from its TTL and poll (backend.ts)
  return {
    // Followers stand for election timeout + jitter after the last heartbeat they received.
    failoverMs: t.leaderGoneMs + PROMOTION_ALLOWANCE_MS,
    // The lease runs lease_ms past the newest acknowledged heartbeat (sent before the fault); the watchdog polls every 20 ms.
    fenceMs: t.leaseMs + OBSERVE_SLACK_MS,
    // The loop notices within loop_ms, then restarts the server.
    restartMs: cfg.postgres.loop_ms + RESTART_ALLOWANCE_MS,
    // Clean stop + leadership transfer (immediate campaign: two round trips, one heartbeat round) + promote.
    switchoverMs: cfg.postgres.loop_ms + t.handoverMs + PROMOTION_ALLOWANCE_MS,
  };
}

export const API_TOKEN = `e2e-${randomBytes(24).toString("base64url")}`;

/** Three nodes with default timers and an API token, started, healthy, with the writer's table. */
export async function startFailoverCluster(test: string, tag: string, election: Record<string, number> = {}): Promise<{ c: PgCluster; healthy: Healthy; cfg: Config; bounds: Bounds }> {
  const extra = { api: { token: API_TOKEN }, ...(Object.keys(election).length ? { election } : {}) };
  return readyCluster(test, await PgCluster.create({ test, tag, nodes: 3, defaults: { extra } }));
}

/** Starts every node of `c`, waits until healthy and prepares the writer's table; destroys `c` on failure. */
export async function readyCluster(test: string, c: PgCluster): Promise<{ c: PgCluster; healthy: Healthy; cfg: Config; bounds: Bounds }> {
  try {
    const t0 = performance.now();
    await Promise.all(c.nodes.map((n) => n.start()));
    const healthy = await c.diagnose(() => c.waitHealthy(90_000));
    console.log(`${test}: cluster ready in ${((performance.now() - t0) / 1000).toFixed(1)} s, primary ${healthy.primary.name}`);
    await new Writer([]).prepare(healthy.primary);
    const cfg = loadConfig(c.nodes[0]!.configPath);
    return { c, healthy, cfg, bounds: boundsOf(cfg) };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

/** `pgherd <args>` on a node's host, through its agent's API (config gives api.listen and the token). */
export async function pgherd(node: ClusterNode, args: string[], timeoutMs = 100_000): Promise<RunResult & { text: string }> {
  const r = await node.host.exec([BINARY, ...args, "--config", node.configPath], { timeoutMs });
  return { ...r, text: `${r.stdout}${r.stderr}`.trim() };
}

export type Expect = "other" | "same" | "any";

export interface RoundOptions {
  label: string;
  /** Injects the fault into the primary's host. */
  inject(primary: ClusterNode): Promise<void>;
  /** Who must acknowledge writes afterwards: another node (failover), the same (restart in place), or either. */
  expect: Expect;
  /** Undo the fault (restart an agent, heal, SIGCONT); the round then waits for the cluster to be healthy. */
  restore?(old: ClusterNode, neu: ClusterNode): Promise<void>;
  /** How long to wait for the first write on the new primary before giving up (default 60 s). */
  waitMs?: number;
  /** Deadline for the cluster to be healthy again after restore (default 120 s). */
  healMs?: number;
  /** The round's writer (default: WriterOptions' defaults, one attempt per lane every 50 ms). */
  writer?: WriterOptions;
}

export interface RoundResult {
  label: string;
  old: ClusterNode;
  neu: ClusterNode;
  /** Fault injection time (performance.now()). */
  at: number;
  analysis: Analysis;
  /** Nodes that acknowledged writes sent after the new primary's first acknowledgement, until the end. */
  writableAfter: string[];
  lost: { id: number; node: string }[];
  healthy: Healthy;
  writer: Writer;
  healMs: number;
}

/**
 * Names of nodes whose persisted election state holds a guard that blocks automatic failover
 * (quorum commit after the primary ran without enough synchronous standbys, e.g. right after a
 * role change). A fault injected then would not fail over by design: wait until none does.
 */
export function blockingGuards(nodes: readonly { name: string; stateDir: string }[]): string[] {
  return nodes.filter((n) => {
    try {
      return storedGuard(n)?.block === true;
    } catch {
      return false;
    }
  }).map((n) => n.name);
}

/**
 * waitHealthy, then proof by data: a row inserted on the primary now is replayed by every standby.
 * A wal receiver that fails on a forked timeline restarts every few hundred ms and shows
 * "streaming" in between, which fools a status-only check. Then no node may still store a guard
 * that blocks automatic failover: right after the standbys (re)connect, the primary's agent
 * notices its synchronous standbys again only at its next round, and a fault injected before
 * that rightly leaves the cluster without a primary (the durability guard).
 */
export async function waitReplicating(c: PgCluster, timeoutMs: number, table = "failover_w"): Promise<Healthy> {
  const end = performance.now() + timeoutMs;
  return poll(async () => {
    // At most 30 s a call: a cluster that never gets healthy is then reported with what it lacked, not as a call still running.
    const h = await c.waitHealthy(Math.min(30_000, Math.max(1_000, end - performance.now())));
    const id = nextId++;
    await h.primary.query(`insert into ${table} (id, node) values (${id}, 'marker')`);
    for (const s of h.standbys) {
      await waitFor(async () => (await s.query(`select 1 from ${table} where id = ${id}`)).length > 0,
        { timeoutMs: 5_000, intervalMs: 50, what: `${s.name} to replay a row written on ${h.primary.name}` });
    }
    const b = blockingGuards(c.nodes);
    if (b.length) throw new Error(`automatic failover still suspended by a block guard stored on ${b.join(", ")} although every standby streams`);
    return h;
  }, { timeoutMs, intervalMs: 100, what: "1 primary + streaming standbys that replay what it writes, and automatic failover armed" });
}

/** Runs one fault against the current primary with the writer on every node; see RoundOptions. */
export async function faultRound(c: PgCluster, o: RoundOptions): Promise<RoundResult> {
  const before = await waitReplicating(c, 60_000);
  const old = before.primary;
  const w = new Writer(c.nodes, o.writer);
  w.start();
  try {
    // Steady state first: the writer must have seen the old primary acknowledge.
    const warm = w.mark("warm");
    await w.waitAck(old.name, warm, 15_000);
    await waitFor(() => w.acked(old.name).filter((a) => a.start >= warm).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${old.name}` });
    const at = w.mark("fault");
    await o.inject(old);
    const first = await waitFor(() => {
      let ok = w.attempts.filter((a) => a.ok && a.start >= at && (o.expect === "any" || (o.expect === "other") === (a.node !== old.name)));
      if (o.expect !== "other") {
        // The old primary may still answer for a moment (a backend outliving its postmaster): count
        // only acknowledgements sent after the fault visibly took effect there.
        const down = w.attempts.find((a) => a.node === old.name && !a.ok && a.start >= at);
        ok = down ? ok.filter((a) => a.start >= down.end) : [];
      }
      return ok.sort((a, b) => a.end - b.end)[0];
    }, { timeoutMs: o.waitMs ?? 60_000, intervalMs: 20, what: `${o.label}: a write acknowledged by ${o.expect === "same" ? old.name : o.expect === "other" ? `a node other than ${old.name}` : "any node"} after the fault` });
    const neu = c.node(first.node);
    // Steady on the new primary before restoring anything.
    await waitFor(() => w.acked(neu.name).filter((a) => a.start >= first.end).length >= 10, { timeoutMs: 15_000, what: `10 writes on ${neu.name}` });
    const t1 = performance.now();
    await o.restore?.(old, neu);
    const healthy = await waitReplicating(c, o.healMs ?? 120_000);
    const healMs = performance.now() - t1;
    // A last stretch of writes on the healed cluster.
    const settled = w.mark("healed");
    await waitFor(() => w.acked(healthy.primary.name).filter((a) => a.start >= settled).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${healthy.primary.name} after healing` });
    await w.stop();
    const analysis = w.analyse({ from: at, oldPrimary: old.name, newPrimary: neu.name });
    const lost = await w.lost(healthy.primary);
    return { label: o.label, old, neu, at, analysis, writableAfter: w.writableSince(first.end), lost, healthy, writer: w, healMs };
  } finally {
    await w.stop();
  }
}

/** SIGSTOP/SIGCONT/SIGKILL to one pid. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  process.kill(pid, sig);
}

/** pid of the node's fencing watchdog (state_dir/watchdog.pid), or null. */
export function watchdogPid(n: ClusterNode): number | null {
  try {
    const pid = Number(readFileSync(join(n.stateDir, "watchdog.pid"), "utf8").trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** The fencing watchdog's own log (it is a separate process: its lines are not in the agent's log). */
export function watchdogLog(n: ClusterNode): string[] {
  try {
    return readFileSync(join(n.stateDir, "watchdog.log"), "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

export const secs = (ms: number | null) => (ms === null ? "n/a" : Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");

/** A position in a node's agent log (every run), for logSince. */
export function logMark(n: ClusterNode): number {
  return n.runs.reduce((s, p) => s + p.lines.length, 0);
}

/** Agent log lines (every run) after `mark` matching `re`. */
export function logSince(n: ClusterNode, mark: number, re: RegExp): string[] {
  return n.runs.flatMap((p) => p.lines).slice(mark).filter((l) => {
    re.lastIndex = 0;
    return re.test(l);
  });
}

/**
 * How a former primary rejoined after `mark`: its decisions (rewind, clone, start as a standby)
 * and the outcome of each pg_rewind ("rewound" or "no rewind needed"), for the tests to assert.
 */
export function rejoinPath(n: ClusterNode, mark: number): { decisions: string[]; rewinds: string[]; lines: string[] } {
  const lines = logSince(n, mark, /decision: (rewind|clone|start as a standby)|pg_rewind: |taking a fresh clone/);
  return {
    decisions: lines.filter((l) => /decision: /.test(l)).map((l) => l.replace(/^.*decision: /, "")),
    rewinds: lines.filter((l) => /pg_rewind: (rewound|histories agree)/.test(l)).map((l) => (/rewound/.test(l) ? "rewound" : "no rewind needed")),
    lines: lines.map((l) => l.slice(0, 220)),
  };
}
