// A pgherd cluster on loopback for the API tests: compiled agents in this network namespace, each
// with its own mesh/API/PostgreSQL port, so the test process, HAProxy and Chromium reach every API
// directly. Servers are reached through their unix socket (<data_dir>.sock) as root.
import { randomBytes } from "node:crypto";
import { freeUdpPort } from "../../src/demo/ports.ts";
import postgres from "postgres";
import { ensureBuilt } from "../../scripts/build.ts";
import { artifactsDir, startAgent, stopAgents, type RunningAgent } from "../helpers/agents.ts";
import { freePort } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { replicationTlsProblem } from "../helpers/replication-tls.ts";

export const HOST = "127.0.0.1";

export interface LoopNode {
  name: string;
  agent: RunningAgent;
  api: string;
  pgPort: number;
  apiPort: number;
  /** Sends one statement (or several) through the unix socket, under a deadline. */
  query(text: string, timeoutMs?: number): Promise<Record<string, unknown>[]>;
}

export interface LoopCluster {
  nodes: LoopNode[];
  token: string;
  dir: string;
  node(name: string): LoopNode;
  destroy(): Promise<void>;
}

/** extra: TOML for every node; nodeExtra: TOML for one node (e.g. its [tags]), appended after extra. */
export async function startLoopCluster(o: { test: string; size: number; token?: string; extra?: string; nodeExtra?: (name: string) => string }): Promise<LoopCluster> {
  ensureBuilt();
  const dir = artifactsDir(o.test);
  const secret = randomBytes(36).toString("base64url");
  const token = o.token ?? randomBytes(24).toString("base64url");
  const udp = await freeUdpPort();
  const used: number[] = [];
  const port = async () => {
    const p = await freePort(used);
    used.push(p);
    return p;
  };
  const nodes: LoopNode[] = [];
  const cluster: LoopCluster = {
    nodes, token, dir,
    node: (name) => {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      return n;
    },
    destroy: () => stopAgents(nodes.map((n) => n.agent)),
  };
  try {
    const starts: Promise<void>[] = [];
    for (let i = 1; i <= o.size; i++) {
      const name = `n${i}`;
      const mesh = await port();
      const apiPort = await port();
      const pgPort = await port();
      const extra = [
        `[discovery]`, `port = ${udp}`, `broadcast = ["127.255.255.255"]`, `interval_ms = 300`,
        `[mesh]`, `listen = "${HOST}:${mesh}"`,
        `[api]`, `listen = "${HOST}:${apiPort}"`, `token = "${token}"`,
        `[postgres]`, `port = ${pgPort}`, `listen_addresses = "${HOST}"`,
        o.extra ?? "",
        o.nodeExtra?.(name) ?? "",
      ].join("\n");
      starts.push(startAgent(null, { name, secret, cluster: o.test, bootstrapExpect: o.size, dir, extra }).then((agent) => {
        nodes.push({ name, agent, api: `http://${HOST}:${apiPort}`, pgPort, apiPort, query: (t, ms) => query(agent.dataDir, pgPort, t, ms) });
      }));
    }
    await Promise.all(starts);
    nodes.sort((a, b) => a.name.localeCompare(b.name));
    // Token checks need the agent's config in the API: say so plainly when the wiring is missing.
    const cfg = await http(`${nodes[0]!.api}/config`);
    if (cfg.status !== 200) throw new Error(`GET /config answered ${cfg.status} (${cfg.body.replace(/\s+/g, " ").trim().slice(0, 200)}): src/agent/run.ts must pass \`config: cfg\` to startApi`);
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
  return cluster;
}

async function query(dataDir: string, port: number, text: string, timeoutMs = 5000): Promise<Record<string, unknown>[]> {
  const sql = postgres({
    host: `${dataDir}.sock`, port, user: "postgres", database: "postgres", pass: () => "", max: 1, connect_timeout: 3,
    idle_timeout: 0, max_lifetime: null, fetch_types: false, prepare: false, onnotice: () => {},
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const q = sql.unsafe(text).then((rows) => [...rows] as Record<string, unknown>[]);
    q.catch(() => {});
    return await Promise.race([q, new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`query on :${port} timed out after ${timeoutMs} ms: ${text}`)), timeoutMs); })]);
  } finally {
    clearTimeout(timer);
    await sql.end({ timeout: 0 }).catch(() => {});
  }
}

export interface Fetched {
  status: number;
  body: string;
  headers: Headers;
  json(): unknown;
}

/** fetch under a deadline, body read. */
export async function http(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Fetched> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(init.timeoutMs ?? 10_000) });
  const body = await res.text();
  return { status: res.status, body, headers: res.headers, json: () => JSON.parse(body) };
}

/** Waits until `fn` returns a value (not undefined/null/false). */
export function until<T>(fn: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 30_000): Promise<T> {
  return waitFor(async () => {
    try {
      return await fn();
    } catch {
      return undefined;
    }
  }, { timeoutMs, intervalMs: 200, what });
}

const status = async (n: LoopNode, path: string) => (await http(`${n.api}${path}`)).status;

/** Waits for one leading primary and every other node streaming (as the health checks say). */
export async function settled(c: LoopCluster): Promise<{ primary: LoopNode; standbys: LoopNode[] }> {
  return until(async () => {
    const codesP = await Promise.all(c.nodes.map((n) => status(n, "/primary")));
    const r = await Promise.all(c.nodes.map((n) => status(n, "/replica?replication_state=streaming&lag=1MB")));
    const pi = codesP.flatMap((x, i) => (x === 200 ? [i] : []));
    if (pi.length !== 1 || r.filter((x) => x === 200).length !== c.nodes.length - 1 || r[pi[0]!] === 200) return undefined;
    const p = c.nodes[pi[0]!]!;
    // ... and the primary's own report lists every standby's replication (lag in seconds).
    const view = ((await http(`${p.api}/cluster`)).json() as { view: { members: { role: string; state: string; lagSeconds: number | null }[] } }).view;
    const sb = view.members.filter((m) => m.role === "standby");
    if (sb.length !== c.nodes.length - 1 || sb.some((m) => m.state !== "streaming" || m.lagSeconds === null)) return undefined;
    const standbys = c.nodes.filter((_, i) => i !== pi[0]);
    return (await replicationTlsProblem(p, standbys)) ? undefined : { primary: p, standbys };
  }, "one leading primary and streaming standbys within 1MB, all in the primary's replication report, replication TLS-verified", 90_000);
}

