// A pgherd + PostgreSQL cluster for end-to-end tests: one lab host (network namespace) per node,
// each running the compiled agent with nothing but cluster, secret, bootstrap_expect, node name,
// state_dir and data_dir configured (PostgreSQL on 5432 in its own namespace, everything else at
// its default), unless a test asks for more.
//
//   scratch  /tmp/pgherd-e2e-<tag>-XXXX/<node>/{pgherd.toml,state/,pgdata/,*.log}
//   logs     test-artifacts/<test>/<pid>/<node>.log (agent, all runs), <node>-*.log (server logs, copied at destroy)
//
// Agents run as the PostgreSQL OS user (PG_OS_USER), as deploy/pgherd.service runs them: each
// node's directory, config (0600) and data dir belong to that user, never to root.
// The hosts share one filesystem, so the test process reaches every server through its unix
// socket as root (peer auth through the pg_ident map the agent writes, which always admits root).
// destroy() stops agents and servers, deletes the lab, copies the server logs and removes scratch.
import { spawn } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { stringify } from "smol-toml";
import { z } from "zod";
import { BINARY, ROOT } from "../../scripts/build.ts";
import { isServerOf } from "../../src/postgres/orphans.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { agentBinary, nodeStatusSchema, type NodeStatus } from "./agents.ts";
import { createLab, labSupported, type Host, type Lab } from "./lab.ts";
import { PG_OS_USER, pgBins, pgSkipReason } from "./pg.ts";
import { asUser, assertRunsAs, lookupUser, onExitCleanup, type Proc, type RunResult, waitFor, type WaitForOptions } from "./proc.ts";
import { replicationTlsProblem } from "./replication-tls.ts";
import { startBackend } from "./backend.ts";

const PG_PORT = 5432;
const AGENT_STARTUP_MS = 20_000;
const AGENT_STOP_MS = 10_000;
const CLI_MS = 10_000;
const QUERY_MS = 5_000;

/** Why these tests cannot run here (no namespaces, no PostgreSQL, not root), or null. */
export function clusterSkipReason(): string | null {
  const lab = labSupported();
  if (!lab.ok) return lab.why ?? "network lab not supported";
  return pgSkipReason;
}

// ---- cluster ls --json (zod: it is another process's output) ----

const memberSchema = z.object({
  id: z.string(), name: z.string(), host: z.string(), port: z.number().nullable(),
  role: z.string(), state: z.string(), leader: z.boolean(), voter: z.boolean(),
  timeline: z.number().nullable(), lsn: z.string().nullable(),
  lagBytes: z.number().nullable(), lagSeconds: z.number().nullable(),
  note: z.string(), error: z.string().nullable(),
});
export const clusterLsSchema = z.object({
  source: z.enum(["leader", "local"]),
  view: z.object({
    cluster: z.string(), leader: z.string().nullable(), leaderName: z.string().nullable(),
    term: z.number(), primary: z.string().nullable(), members: z.array(memberSchema),
  }),
});
export type ClusterLs = z.infer<typeof clusterLsSchema> & { exitCode: number };

const secretsSchema = z.object({ systemId: z.string().nullable(), replPassword: z.string().min(1), monitorPassword: z.string().min(1) });
export type ClusterSecretsFile = z.infer<typeof secretsSchema>;

// ---- node ----

export interface NodeOptions {
  /** An existing lab host (e.g. one the test prepared); default: a new one. */
  host?: Host;
  /** Default: the host's name (h1, h2, ...). */
  name?: string;
  bootstrapExpect?: number;
  cluster?: string;
  secret?: string;
  /** Extra [postgres] keys (data_dir is always set). */
  postgres?: Record<string, string | number | boolean>;
  fromExisting?: boolean;
  /** More top-level keys or sections, merged last. */
  extra?: Record<string, unknown>;
  /** Create data_dir empty (0700, owned by postgres) — the default — or leave it missing. */
  dataDir?: "empty" | "missing";
  /** The product's default socket dir, or <node>/socket (sets postgres.socket_dir). */
  socketDir?: "default" | "separate";
  /** Capabilities the agent keeps as PG_OS_USER (ambient, e.g. ["net_admin", "net_raw"] for [vip]); default none. */
  agentCaps?: readonly string[];
}

export interface LogMark { run: number; line: number }

export class ClusterNode {
  readonly dir: string;
  readonly dataDir: string;
  readonly stateDir: string;
  readonly configPath: string;
  readonly logFile: string;
  /** Where the agent tells pg_ctl to write the server log (next to the data dir). */
  readonly pgLogFile: string;
  /** postgres.socket_dir when the test set it; else the server's own (postmaster.pid) is used. */
  readonly configuredSocketDir: string | null;
  /** Every agent run, oldest first; `agent` is the current one. */
  readonly runs: Proc[] = [];
  agent: Proc | null = null;
  /** Ambient capabilities of the agent (NodeOptions.agentCaps). */
  agentCaps: readonly string[] = [];

  constructor(readonly name: string, readonly host: Host, scratch: string, artifacts: string, clusterName: string, separateSocket: boolean) {
    this.dir = join(scratch, name);
    this.dataDir = join(this.dir, "pgdata");
    this.configuredSocketDir = separateSocket ? join(this.dir, "socket") : null;
    this.stateDir = join(this.dir, "state");
    this.configPath = join(this.dir, "pgherd.toml");
    this.logFile = join(artifacts, `${name}.log`);
    this.pgLogFile = join(this.dir, `${clusterName}-${name}-postgresql.log`);
  }

  /** In a failed expect(): the node's name, not thousands of lines of its host, lab and processes. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `ClusterNode(${this.name})`;
  }

  get ip(): string {
    return this.host.ip;
  }

  /** Starts `pgherd agent` in the host's namespace and waits until its API listens. */
  async start(): Promise<void> {
    if (this.agent && !this.agent.exited) throw new Error(`agent ${this.name} is already running`);
    const as = asUser(PG_OS_USER, undefined, this.agentCaps);
    const proc = this.host.spawn([...as.prefix, agentBinary(), "agent", "--config", this.configPath], { logFile: this.logFile, env: as.env, cwd: as.cwd });
    this.agent = proc;
    this.runs.push(proc);
    try {
      await proc.waitForLine(/ api listening on /, AGENT_STARTUP_MS);
    } catch (e) {
      throw new Error(`agent ${this.name} did not start (log: ${this.logFile}): ${(e as Error).message}`);
    }
    assertRunsAs(proc.pid, PG_OS_USER, `agent ${this.name}`); // never root (issue 10)
  }

  /** SIGTERM to the agent alone (never its process group: PostgreSQL must survive), SIGKILL if it hangs. */
  async stopAgent(): Promise<void> {
    const p = this.agent;
    if (!p || p.exited) return;
    p.kill("SIGTERM");
    try {
      await p.waitExit(AGENT_STOP_MS);
    } catch {
      p.kill("SIGKILL");
      await p.waitExit(5_000);
      throw new Error(`agent ${this.name} ignored SIGTERM for ${AGENT_STOP_MS} ms (log: ${this.logFile})`);
    }
  }

  /** A position in this node's agent logs (across restarts), for "what was logged since". */
  mark(): LogMark {
    const a = this.agent;
    return a && !a.exited ? { run: this.runs.length - 1, line: a.lines.length } : { run: this.runs.length, line: 0 };
  }

  /** Log lines matching `re` of every agent run, or since a mark, or (a number) of runs from that index on. */
  lines(re: RegExp, since: LogMark | number = 0): string[] {
    if (typeof since === "number") since = { run: since, line: 0 };
    const from = since.line;
    return this.runs.slice(since.run).flatMap((p, i) => (i === 0 ? p.lines.slice(from) : p.lines)).filter((l) => {
      re.lastIndex = 0;
      return re.test(l);
    });
  }

  nodeId(): string {
    return readFileSync(join(this.stateDir, "node-id"), "utf8").trim();
  }

  /** state_dir/cluster.json (replication passwords: never print them). */
  secrets(): ClusterSecretsFile {
    return secretsSchema.parse(JSON.parse(readFileSync(join(this.stateDir, "cluster.json"), "utf8")));
  }

  /** `pgherd cluster ls --json` through this node's agent, run in its namespace. */
  async clusterLs(): Promise<ClusterLs> {
    const r = await this.host.exec([BINARY, "cluster", "ls", "--config", this.configPath, "--json"], { timeoutMs: CLI_MS });
    let raw: unknown;
    try {
      raw = JSON.parse(r.stdout);
    } catch {
      throw new Error(`cluster ls on ${this.name} exited ${r.code} without JSON: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    }
    return { ...clusterLsSchema.parse(raw), exitCode: r.code };
  }

  /** `pgherd status --json` of this node's agent, run in its namespace. */
  async status(): Promise<NodeStatus> {
    const r = await this.host.exec([BINARY, "status", "--config", this.configPath, "--json"], { timeoutMs: CLI_MS });
    if (r.code !== 0) throw new Error(`pgherd status on ${this.name} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    return nodeStatusSchema.parse(JSON.parse(r.stdout));
  }

  /** One statement through the unix socket, as the superuser, under a deadline. */
  async query(text: string, timeoutMs = QUERY_MS): Promise<Record<string, unknown>[]> {
    const sql = this.client();
    try {
      return await deadline(sql.unsafe(text).then((rows) => [...rows] as Record<string, unknown>[]), timeoutMs, `${this.name}: ${text}`);
    } finally {
      await sql.end({ timeout: 0 }).catch(() => {});
    }
  }

  /** A long-lived session (one connection) on this node's server, as a client application would hold it. */
  session(): Session {
    return new Session(this.client(), this.name);
  }

  /** A PostgreSQL program (discovered bin dir) as the postgres OS user in this host's namespace. */
  pgTool(tool: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
    if (!pgBins) throw new Error("no PostgreSQL binaries");
    return this.host.exec([join(pgBins.dir, tool), ...args], { user: PG_OS_USER, timeoutMs, env: { LC_ALL: "C" } });
  }

  async pgCtl(...args: string[]): Promise<RunResult> {
    return this.pgTool("pg_ctl", [...args, "-D", this.dataDir], 90_000);
  }

  /**
   * Where the server's unix socket is: the configured dir, else the one the running server wrote
   * into postmaster.pid (line 5), so the helper does not hard-code the product's default.
   */
  get socketDir(): string {
    if (this.configuredSocketDir) return this.configuredSocketDir;
    const dir = this.postmasterFile()?.[4]?.trim();
    if (!dir) throw new Error(`${this.name}: no running server in ${this.dataDir} (no socket directory in postmaster.pid)`);
    return dir;
  }

  /**
   * pid of a live postmaster serving the data dir, else null. Checked, not only alive: a file left
   * by a killed postmaster names a pid the kernel hands out again (pid_max 32768 here), and the
   * suite's other worker runs servers and agents as the same user meanwhile.
   */
  postmasterPid(): number | null {
    const pid = Number(this.postmasterFile()?.[0]);
    if (!Number.isInteger(pid) || pid <= 1) return null;
    return isServerOf(pid, this.dataDir, lookupUser(PG_OS_USER).uid) ? pid : null;
  }

  private postmasterFile(): string[] | null {
    try {
      return readFileSync(join(this.dataDir, "postmaster.pid"), "utf8").split("\n");
    } catch {
      return null;
    }
  }

  /** The data dir's system identifier, from pg_controldata (works with the server down). */
  async systemIdentifier(): Promise<string> {
    const r = await this.pgTool("pg_controldata", ["-D", this.dataDir], 15_000);
    const id = /Database system identifier:\s+(\d+)/.exec(r.stdout)?.[1];
    if (r.code !== 0 || !id) throw new Error(`pg_controldata ${this.dataDir} on ${this.name}: exit ${r.code}: ${r.stderr.trim()}`);
    return id;
  }

  private client(): postgres.Sql {
    // One host per client, no retries of our own: a hung client is ended by the caller's deadline.
    return postgres({
      host: this.socketDir, port: PG_PORT, user: "postgres", database: "postgres", pass: () => "",
      max: 1, connect_timeout: 3, idle_timeout: 0, max_lifetime: null, fetch_types: false, prepare: false,
      connection: { application_name: "pgherd-e2e" }, onnotice: () => {},
    });
  }
}

/** A client session that must survive things (its backend pid tells whether it is the same one). */
export class Session {
  constructor(private readonly sql: postgres.Sql, private readonly name: string) {}

  async query(text: string, timeoutMs = QUERY_MS): Promise<Record<string, unknown>[]> {
    return deadline(this.sql.unsafe(text).then((rows) => [...rows] as Record<string, unknown>[]), timeoutMs, `${this.name} session: ${text}`);
  }

  async backendPid(): Promise<number> {
    const rows = await this.query("select pg_backend_pid() as pid");
    return z.number().int().parse(rows[0]?.pid);
  }

  close(): Promise<void> {
    return this.sql.end({ timeout: 0 }).catch(() => {});
  }
}

// ---- what every server looks like right now ----

export interface PgState {
  node: ClusterNode;
  /** Why it could not be queried, or null. */
  error: string | null;
  inRecovery: boolean | null;
  systemId: string | null;
  receiver: { status: string; senderHost: string | null; slot: string | null } | null;
  replication: { applicationName: string; clientAddr: string | null; state: string }[];
  slots: { name: string; active: boolean }[];
}

const str = z.string();
const nstr = z.string().nullable();
const stateRow = z.object({ rec: z.boolean(), sysid: str });
const receiverRow = z.object({ status: str, sender_host: nstr, slot_name: nstr });
const replRow = z.object({ application_name: str, client_addr: nstr, state: nstr });
const slotRow = z.object({ slot_name: str, active: z.boolean() });

export async function pgState(node: ClusterNode): Promise<PgState> {
  const s: PgState = { node, error: null, inRecovery: null, systemId: null, receiver: null, replication: [], slots: [] };
  try {
    const rows = await node.query(`
      select pg_is_in_recovery() as rec, (select system_identifier::text from pg_control_system()) as sysid;
      select status, sender_host, slot_name from pg_stat_wal_receiver;
      select application_name, host(client_addr) as client_addr, state from pg_stat_replication;
      select slot_name, active from pg_replication_slots`);
    // Several statements: postgres.js returns one result per statement.
    const [st, rcv, rep, slots] = rows as unknown as Record<string, unknown>[][];
    const head = stateRow.parse(st?.[0]);
    s.inRecovery = head.rec;
    s.systemId = head.sysid;
    const r = rcv?.[0] ? receiverRow.parse(rcv[0]) : null;
    s.receiver = r ? { status: r.status, senderHost: r.sender_host, slot: r.slot_name } : null;
    s.replication = (rep ?? []).map((x) => replRow.parse(x)).map((x) => ({ applicationName: x.application_name, clientAddr: x.client_addr, state: x.state ?? "" }));
    s.slots = (slots ?? []).map((x) => slotRow.parse(x)).map((x) => ({ name: x.slot_name, active: x.active }));
  } catch (e) {
    s.error = (e as Error).message;
  }
  return s;
}

/**
 * The timeline a primary writes now, from its current WAL file's name. Not pg_control's
 * (pg_control_checkpoint()), which names a promoted primary's timeline only once the checkpoint
 * that the promotion starts beside the rounds has ended (src/agent/pg/timeline-checkpoint.ts).
 */
export async function primaryTimeline(node: { query(text: string): Promise<Record<string, unknown>[]> }): Promise<number> {
  const [row] = await node.query("select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as tl");
  return Number(row!.tl);
}

export interface Healthy {
  primary: ClusterNode;
  standbys: ClusterNode[];
  states: PgState[];
}

/**
 * One primary among `nodes`, every other node a standby streaming from it (wal receiver
 * "streaming" with sender_host = the primary's IP), the primary sees each standby streaming from
 * its address, and holds exactly one active slot pgherd_<node id> per standby. Throws why not.
 */
export function checkHealthy(states: PgState[]): Healthy {
  const down = states.filter((s) => s.error);
  if (down.length) throw new Error(`not answering: ${down.map((s) => `${s.node.name} (${s.error})`).join("; ")}`);
  const primaries = states.filter((s) => s.inRecovery === false);
  if (primaries.length !== 1) throw new Error(`${primaries.length} primaries: ${primaries.map((s) => s.node.name).join(", ") || "none"}`);
  const p = primaries[0]!;
  const standbys = states.filter((s) => s !== p);
  for (const s of standbys) {
    if (s.receiver?.status !== "streaming" || s.receiver.senderHost !== p.node.ip) {
      throw new Error(`${s.node.name}: wal receiver ${JSON.stringify(s.receiver)}, want streaming from ${p.node.ip}`);
    }
  }
  // Consumers outside the cluster (pg_receivewal, pg_recvlogical on permanent slots) are not standbys.
  const streaming = p.replication.filter((r) => r.state === "streaming" && r.applicationName.startsWith("pgherd_")).map((r) => r.clientAddr).sort();
  const want = standbys.map((s) => s.node.ip).sort();
  if (JSON.stringify(streaming) !== JSON.stringify(want)) {
    throw new Error(`primary ${p.node.name} streams to ${JSON.stringify(p.replication)}, want exactly ${want.join(", ")}`);
  }
  const slots = p.slots.filter((x) => x.active && x.name.startsWith("pgherd_")).map((x) => x.name).sort();
  const wantSlots = standbys.map((s) => `pgherd_${s.node.nodeId()}`).sort();
  if (JSON.stringify(slots) !== JSON.stringify(wantSlots)) {
    throw new Error(`primary ${p.node.name} active slots ${JSON.stringify(p.slots)}, want ${wantSlots.join(", ")}`);
  }
  const ids = new Set(states.map((s) => s.systemId));
  if (ids.size !== 1) throw new Error(`system identifiers differ: ${states.map((s) => `${s.node.name}=${s.systemId}`).join(", ")}`);
  return { primary: p.node, standbys: standbys.map((s) => s.node), states };
}

// ---- cluster ----

export interface ClusterOptions {
  /** test-artifacts/<test>/ */
  test: string;
  /** Nodes to create now (not started). */
  nodes?: number;
  cluster?: string;
  secret?: string;
  bootstrapExpect?: number;
  /** Lab tag (a-z0-9). */
  tag?: string;
  /** Options every addNode() starts from. */
  defaults?: NodeOptions;
}

export class PgCluster {
  readonly nodes: ClusterNode[] = [];
  private readonly unregister: () => void;
  private destroyed = false;

  private constructor(
    readonly lab: Lab,
    readonly artifacts: string,
    readonly scratch: string,
    readonly name: string,
    readonly secret: string,
    readonly bootstrapExpect: number,
    private readonly defaults: NodeOptions,
  ) {
    this.unregister = onExitCleanup(() => this.destroySync());
  }

  static async create(o: ClusterOptions): Promise<PgCluster> {
    const why = clusterSkipReason();
    if (why) throw new Error(`cannot run a PostgreSQL cluster here: ${why}`);
    const artifacts = artifactsDir(o.test);
    const tag = o.tag ?? o.test.slice(0, 12);
    // mkdtemp makes 0700: the postgres user must traverse it to reach its data dir.
    const scratch = mkdtempSync(`/tmp/pgherd-e2e-${tag}-`);
    chmodSync(scratch, 0o755);
    let lab: Lab;
    try {
      lab = await createLab({ hosts: 0, tag });
    } catch (e) {
      rmSync(scratch, { recursive: true, force: true });
      throw e;
    }
    const secret = o.secret ?? randomSecret();
    // The consensus backend under test (test/helpers/backend.ts): etcd adds its member hosts and a [consensus] block.
    const backend = await startBackend(lab, scratch, artifacts).catch(async (e: Error) => { await lab.destroy().catch(() => {}); rmSync(scratch, { recursive: true, force: true }); throw e; });
    const c = new PgCluster(lab, artifacts, scratch, o.cluster ?? "e2e", secret, o.bootstrapExpect ?? 3, { ...o.defaults, extra: { ...backend, ...o.defaults?.extra } });
    try {
      for (let i = 0; i < (o.nodes ?? 0); i++) await c.addNode();
    } catch (e) {
      await c.destroy().catch(() => {});
      throw e;
    }
    return c;
  }

  /** A host in the lab with no agent (a client, an outsider). */
  addBareHost(): Promise<Host> {
    return this.lab.addHost();
  }

  /** Creates a host (unless given), writes the node's config and data dir; does not start it. */
  async addNode(opts: NodeOptions = {}): Promise<ClusterNode> {
    const o: NodeOptions = { ...this.defaults, ...opts, postgres: { ...this.defaults.postgres, ...opts.postgres } };
    const host = o.host ?? (await this.lab.addHost());
    const name = o.name ?? host.name;
    const clusterName = o.cluster ?? this.name;
    const separate = o.socketDir === "separate";
    const node = new ClusterNode(name, host, this.scratch, this.artifacts, clusterName, separate);
    node.agentCaps = o.agentCaps ?? [];
    mkdirSync(node.dir, { recursive: true, mode: 0o755 });
    chmodSync(node.dir, 0o755);
    // The agent (as PG_OS_USER) creates its state dir, socket dir and server log in here.
    const u = await lookupOsUser(PG_OS_USER);
    chownSync(node.dir, u.uid, u.gid);
    for (const [dir, wanted] of [[node.dataDir, (o.dataDir ?? "empty") === "empty"], [node.configuredSocketDir, separate]] as const) {
      if (!wanted || !dir) continue;
      mkdirSync(dir, { mode: 0o700 });
      chownSync(dir, u.uid, u.gid);
    }
    const cfg: Record<string, unknown> = {
      cluster: clusterName,
      secret: o.secret ?? this.secret,
      bootstrap_expect: o.bootstrapExpect ?? this.bootstrapExpect,
      // The hosts share a filesystem and a host name: name and state must differ per node.
      node_name: name,
      state_dir: node.stateDir,
      postgres: { data_dir: node.dataDir, ...(node.configuredSocketDir ? { socket_dir: node.configuredSocketDir } : {}), ...o.postgres },
      ...(o.fromExisting === undefined ? {} : { bootstrap: { from_existing: o.fromExisting } }),
      ...o.extra,
    };
    writeFileSync(node.configPath, stringify(cfg) + "\n", { mode: 0o600 });
    chownSync(node.configPath, u.uid, u.gid);
    this.nodes.push(node);
    return node;
  }

  node(name: string): ClusterNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} (have ${this.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  /** Starts agents one after the other, in the given order. */
  async start(nodes: ClusterNode[] = this.nodes): Promise<void> {
    for (const n of nodes) await n.start();
  }

  async stopAgents(nodes: ClusterNode[] = this.nodes): Promise<void> {
    const r = await Promise.allSettled(nodes.map((n) => n.stopAgent()));
    const bad = r.filter((x): x is PromiseRejectedResult => x.status === "rejected");
    if (bad.length) throw new Error(bad.map((b) => (b.reason as Error).message).join("; "));
  }

  states(nodes: ClusterNode[] = this.nodes): Promise<PgState[]> {
    return Promise.all(nodes.map(pgState));
  }

  /** Waits for checkHealthy over `nodes`; the last reason is in the timeout error. */
  waitHealthy(timeoutMs: number, o: { nodes?: ClusterNode[]; abortIf?: () => string | undefined } = {}): Promise<Healthy> {
    const nodes = o.nodes ?? this.nodes;
    return poll(async () => {
      const h = checkHealthy(await this.states(nodes));
      const tls = await replicationTlsProblem(h.primary, h.standbys);
      if (tls) throw new Error(tls);
      return h;
    }, {
      timeoutMs, intervalMs: 100, abortIf: o.abortIf,
      what: `1 primary + ${nodes.length - 1} streaming standbys among ${nodes.map((n) => n.name).join(", ")}`,
    });
  }

  /** Re-throws `e` with the log paths and each agent's last lines: what a reader of a failed run needs. */
  explain(e: unknown): Error {
    const tails = this.nodes.map((n) => {
      const errors = n.lines(/^\S+ (error|warn) /).slice(-3);
      const last = (n.agent?.lines ?? []).slice(-12);
      const show = (ls: string[]) => ls.map((l) => `  ${l.slice(0, 300)}`).join("\n");
      return [`--- ${n.name}: ${n.logFile}`, ...(errors.length ? [" last warnings/errors:", show(errors)] : []), " last lines:", show(last)].join("\n");
    });
    return new Error(`${(e as Error).message}\nlogs: ${this.artifacts} (server logs copied there at the end; live: ${this.scratch})\n${tails.join("\n")}`);
  }

  /** Runs `fn`; a failure comes back with log paths and log tails. */
  async diagnose<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** Agents, servers, lab, scratch. Idempotent; collects errors and throws them at the end. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const errors: string[] = [];
    // The primary's agent last: a leader told to stop while its handover target's agent is stopping
    // waits for that target's answer (1 s) before it gives up the handover; once the others are gone
    // it sees no target at once. Still every agent by SIGTERM, so one that hangs fails the file.
    const primary = await this.runningPrimary();
    await this.stopAgents(this.nodes.filter((n) => n !== primary)).catch((e: Error) => errors.push(e.message));
    if (primary) await this.stopAgents([primary]).catch((e: Error) => errors.push(e.message));
    await Promise.all(this.nodes.map(async (n) => {
      if (n.postmasterPid() === null) return;
      const r = await n.pgCtl("stop", "-m", "immediate", "-w", "-t", "30").catch((e: Error) => ({ code: -1, stderr: e.message }));
      // The fencing watchdog of a leader whose agent just stopped may stop the server meanwhile: gone is what counts.
      if (r.code !== 0 && n.postmasterPid() !== null) errors.push(`pg_ctl stop on ${n.name}: ${r.stderr.trim()}`);
    }));
    await this.lab.destroy().catch((e: Error) => errors.push(e.message));
    this.copyServerLogs();
    removeInBackground(this.scratch);
    this.unregister();
    if (errors.length) throw new Error(`cluster cleanup: ${errors.join("; ")}`);
  }

  /** The node whose server answers as a primary now (one quick look at each running agent's server), else null. */
  private async runningPrimary(): Promise<ClusterNode | null> {
    const running = this.nodes.filter((n) => n.agent && !n.agent.exited && n.postmasterPid() !== null);
    const states = await Promise.all(running.map((n) => pgState(n).catch(() => null)));
    return states.find((s) => s?.inRecovery === false)?.node ?? null;
  }

  /**
   * Every *.log beside the data dirs into the artifacts, as <node>-<file>: the server's output before
   * its log collector, and the collector's directory (<data_dir>.log/, the server logs) file by file
   * as <node>-<dir>-<file>.
   */
  private copyServerLogs(): void {
    for (const n of this.nodes) {
      try {
        for (const e of readdirSync(n.dir, { withFileTypes: true }).filter((x) => x.name.endsWith(".log"))) {
          const from = join(n.dir, e.name);
          if (e.isFile()) copyFileSync(from, join(this.artifacts, `${n.name}-${e.name}`));
          else if (e.isDirectory()) {
            for (const f of readdirSync(from, { withFileTypes: true }).filter((x) => x.isFile())) copyFileSync(join(from, f.name), join(this.artifacts, `${n.name}-${e.name}-${f.name}`));
          }
        }
      } catch { /* best effort */ }
    }
  }

  // Exit hook: the lab's reaper kills the namespaces' processes; the scratch dir is ours.
  private destroySync(): void {
    for (const n of this.nodes) {
      const pid = n.postmasterPid();
      if (pid) try { process.kill(pid, "SIGQUIT"); } catch { /* gone */ }
    }
    this.copyServerLogs();
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

// ---- small helpers ----

/**
 * `rm -rf dir` by a shell that is no child of ours (it outlives this process): the data dirs of a
 * destroyed cluster take ~0.8 s to delete, which the next file need not wait for. Nothing runs
 * there any more (agents, servers and the lab's namespaces are gone) and nothing reuses the name
 * (mkdtemp).
 */
function removeInBackground(dir: string): void {
  if (!dir.startsWith("/tmp/pgherd-e2e-")) throw new Error(`removeInBackground: not a scratch dir: ${dir}`);
  const launcher = spawn("sh", ["-c", 'rm -rf -- "$1" </dev/null >/dev/null 2>&1 &', "pgherd-scratch-rm", dir], { detached: true, stdio: "ignore" });
  launcher.on("error", () => rmSync(dir, { recursive: true, force: true }));
  launcher.unref();
}

export function randomSecret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(36))).toString("base64url");
}

/**
 * test-artifacts/<test>/<pid>/, fresh for this run (colleagues run the same tests at the same
 * time in this checkout). Directories of runs whose process is gone are removed.
 */
export function artifactsDir(test: string): string {
  if (!/^[a-z0-9-]+$/.test(test)) throw new Error(`artifactsDir: bad test name ${JSON.stringify(test)}`);
  const base = join(ROOT, "test-artifacts", test);
  mkdirSync(base, { recursive: true });
  for (const entry of readdirSync(base)) {
    if (/^\d+$/.test(entry) && Number(entry) !== process.pid && !pidAlive(Number(entry))) {
      rmSync(join(base, entry), { recursive: true, force: true });
    }
  }
  const dir = join(base, String(process.pid));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * waitFor, but the timeout error quotes the last reason `fn` gave (not the attempt cut off at the
 * deadline), and `abortIf` (checked every round) ends the wait at once with its reason.
 */
export async function poll<T>(fn: () => Promise<T | undefined | null | false>, o: WaitForOptions & { abortIf?: () => string | undefined }): Promise<T> {
  let last: string | undefined;
  let aborted: string | undefined;
  try {
    return await waitFor(async () => {
      aborted ??= o.abortIf?.();
      if (aborted !== undefined) return { aborted };
      try {
        return await fn();
      } catch (e) {
        last = (e as Error).message;
        throw e;
      }
    }, o).then((v) => {
      if (aborted !== undefined) throw new Error(`gave up waiting for ${o.what}: ${aborted}`);
      return v as T;
    });
  } catch (e) {
    if (aborted !== undefined || last === undefined) throw e;
    throw new Error(`timed out after ${o.timeoutMs}ms waiting for ${o.what}; last reason: ${last}`);
  }
}

/** `p` or an error naming `what` after `ms`; the loser is not left as an unhandled rejection. */
export async function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  p.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fisher–Yates with a printed seed, so a failing order can be replayed (E2E_SEED=<n>). */
export function shuffled<T>(xs: readonly T[], seed = Number(process.env.E2E_SEED ?? Math.floor(Math.random() * 2 ** 31))): { order: T[]; seed: number } {
  let s = seed >>> 0 || 1;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const order = [...xs];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return { order, seed };
}

/** The ISO timestamp an agent log line starts with (all namespaces share one wall clock). */
export function lineTime(line: string): Date {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /.exec(line);
  if (!m) throw new Error(`log line without an ISO timestamp: ${JSON.stringify(line.slice(0, 200))}`);
  return new Date(m[1]!);
}
