// Hostile and broken network input against one compiled agent on loopback (S8 in docs/design.md):
// raw TCP frames at the mesh, raw datagrams at the beacon, a connection flood. For each input the
// agent must count the rejection under its reason (status), log it, and keep leading.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { ensureBuilt } from "../../scripts/build.ts";
import { encodeAnnouncement, type Announcement } from "../../src/net/beacon-codec.ts";
import { FrameDecoder, encodeFrame } from "../../src/net/framing.ts";
import { makeHello, proofFor, type Hello } from "../../src/net/secure.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { artifactsDir, nodeStatusSchema, startAgent, stopAgents, type NodeStatus, type RunningAgent } from "../helpers/agents.ts";
import { freeUdpPort } from "../../src/demo/ports.ts";
import { freePort as freeTcpPort, pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";
import { waitFor } from "../helpers/proc.ts";

const CLUSTER = "badinput";
const SECRET = randomBytes(36).toString("base64url");
const WRONG_SECRET = randomBytes(36).toString("base64url");
const HOST = "127.0.0.1";
// Node ids as store/node-id.ts makes them (16 lowercase hex): anything else is refused at the edge.
const RAW_ID = "00000000000000aa";
const FAKE_ID = "00000000000000fa";
const INVITED_ID = "00000000000000e1";
const HANDSHAKE_MS = 3000; // mesh.handshake_ms default
const MAX_UDP_PAYLOAD = 65507; // largest IPv4 datagram payload: "64 KiB" as far as UDP allows

type Kind = "beacon" | "mesh";
// Counted without a log line while the test runs: the agent's own broadcasts loop back.
const BACKGROUND: Record<Kind, string[]> = { beacon: ["self"], mesh: [] };

let agent: RunningAgent;
let ports: { udp: number; mesh: number; api: number; pg: number };

/** Counter changes between two snapshots, background reasons left out. */
function increments(kind: Kind, before: NodeStatus, after: NodeStatus): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [reason, n] of Object.entries(after.rejects[kind])) {
    const d = n - (before.rejects[kind][reason] ?? 0);
    if (d !== 0 && !BACKGROUND[kind].includes(reason)) out[reason] = d;
  }
  return out;
}

/** Process alive, status answers, still the leader with a live lease. */
async function expectHealthy(): Promise<NodeStatus> {
  expect(agent.proc.exited).toBe(false);
  const s = await agent.status();
  expect(s.election.leading).toBe(true);
  expect(s.election.leaseRemainingMs).toBeGreaterThan(0);
  return s;
}

/**
 * Runs `send` (which returns the "ip:port" the agent sees the input come from) and waits until
 * exactly `expected` was counted; the agent's log must name that source and the reason.
 */
async function expectRejected(kind: Kind, expected: Record<string, number>, send: () => Promise<string>): Promise<void> {
  const before = await agent.status();
  const from = await send();
  const after = await waitFor(async () => {
    const s = await agent.status();
    const inc = increments(kind, before, s);
    return Object.entries(expected).every(([r, n]) => (inc[r] ?? 0) >= n) ? s : undefined;
  }, { timeoutMs: 10_000, intervalMs: 100, what: `${kind} rejects ${JSON.stringify(expected)}` });
  expect(increments(kind, before, after)).toEqual(expected);
  for (const reason of Object.keys(expected)) {
    await agent.proc.waitForLine(new RegExp(`\\[solo:${kind}\\] rejected ${from.replaceAll(".", "\\.")}: ${reason}\\b`), 5_000);
  }
  await expectHealthy();
}

// ---- raw TCP ----

class RawConn {
  readonly frames: unknown[] = [];
  closed = false;
  /** "ip:port" of our end, as the agent logs it (read at connect: Bun forgets it after close). */
  readonly from: string;
  private readonly decoder = new FrameDecoder(1 << 20);
  private constructor(readonly socket: net.Socket) {
    this.from = `${HOST}:${socket.localPort}`;
    socket.on("data", (c: Buffer) => this.frames.push(...this.decoder.push(c)));
    socket.on("error", () => {});
    socket.on("close", () => { this.closed = true; });
  }
  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: HOST, port });
      s.once("connect", () => resolve(new RawConn(s)));
      s.once("error", reject);
    });
  }
  async closedByAgent(timeoutMs = 5_000): Promise<void> {
    await waitFor(() => this.closed, { timeoutMs, intervalMs: 10, what: `the agent to close connection ${this.from}` });
  }
}

/** Opens a connection, writes `bytes`, and expects the agent to hang up. */
async function sendTcp(bytes: Buffer): Promise<string> {
  const c = await RawConn.open(ports.mesh);
  c.socket.write(bytes);
  await c.closedByAgent();
  return c.from;
}

function rawFrame(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const hello = (over: Partial<Hello> = {}): Hello => ({
  ...makeHello({ cluster: CLUSTER, nodeId: RAW_ID, name: "raw", addr: `${HOST}:9`, dialer: true }),
  ...over,
});

// ---- raw UDP ----

/** Sends each datagram from one fresh socket (its port identifies it in the agent's log). */
async function sendUdp(...datagrams: Buffer[]): Promise<string> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, HOST, () => r()));
  const from = `${HOST}:${s.address().port}`;
  try {
    for (const d of datagrams) {
      await new Promise<void>((resolve, reject) => s.send(d, ports.udp, HOST, (e) => (e ? reject(e) : resolve())));
    }
  } finally {
    s.close();
  }
  return from;
}

const announcement = (over: Partial<Announcement> = {}): Omit<Announcement, "nonce"> => ({
  cluster: CLUSTER, nodeId: FAKE_ID, name: "fake", mesh: `${HOST}:${trap.port}`, role: "database",
  ts: Date.now(), extra: {}, ...over,
});

/** A TCP listener that counts the connections it gets: rejected beacons must never be dialled. */
const trap = { port: 0, connections: 0, server: undefined as net.Server | undefined };

async function listenOnce(onConn: (s: net.Socket, server: net.Server) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => onConn(s, server));
  await new Promise<void>((r) => server.listen(0, HOST, () => r()));
  return { server, port: (server.address() as net.AddressInfo).port };
}

const STEP_MS = 20_000;

/** GET /node from the agent's HTTP API, under a deadline. */
async function apiStatus(): Promise<NodeStatus> {
  const res = await fetch(`http://${HOST}:${ports.api}/node`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET /node: HTTP ${res.status}`);
  return nodeStatusSchema.parse(await res.json());
}

// A "database" agent runs PostgreSQL (on a free loopback port here), so it needs what PostgreSQL needs.
requireReal("bad-input e2e", pgSkipReason);

describe("hostile input against a running agent", () => {
  beforeAll(async () => {
    ensureBuilt();
    const [mesh, api, pg] = [await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
    ports = { udp: await freeUdpPort(), mesh, api, pg };
    const t = await listenOnce((s) => { trap.connections++; s.destroy(); });
    trap.server = t.server;
    trap.port = t.port;
    agent = await startAgent(null, {
      name: "solo", secret: SECRET, cluster: CLUSTER, bootstrapExpect: 1, dir: artifactsDir("badinput"),
      // debug: benign rejects (a neighbouring cluster's beacons) are logged at debug level.
      extra: [
        `[discovery]`, `port = ${ports.udp}`, `broadcast = ["127.255.255.255"]`,
        `[mesh]`, `listen = "${HOST}:${ports.mesh}"`,
        `[api]`, `listen = "${HOST}:${ports.api}"`,
        `[postgres]`, `port = ${ports.pg}`, `listen_addresses = "${HOST}"`,
        `[log]`, `level = "debug"`,
      ].join("\n"),
    });
    await waitFor(async () => (await agent.status()).election.leading, { timeoutMs: 20_000, intervalMs: 200, what: "the agent to lead alone" });
  }, 180_000);

  afterAll(async () => {
    await stopAgents([agent]);
    if (agent) console.log(`agent log: ${agent.logFile}`);
    trap.server?.close();
  }, 30_000);

  describe("mesh (TCP)", () => {
    test("garbage bytes (an HTTP request: its first 4 bytes read as a huge length)", async () => {
      await expectRejected("mesh", { oversized: 1 }, () => sendTcp(Buffer.from("GET / HTTP/1.1\r\nHost: pgherd\r\n\r\n")));
    }, STEP_MS);

    test("a 0xFFFFFFFF length prefix closes the connection on the 4 bytes alone", async () => {
      await expectRejected("mesh", { oversized: 1 }, () => sendTcp(Buffer.from([0xff, 0xff, 0xff, 0xff])));
    }, STEP_MS);

    test("a zero-length frame", async () => {
      await expectRejected("mesh", { empty: 1 }, () => sendTcp(Buffer.alloc(4)));
    }, STEP_MS);

    test("a frame that is not JSON", async () => {
      await expectRejected("mesh", { "invalid-json": 1 }, () => sendTcp(rawFrame(Buffer.from('{"t":"hello", oops'))));
    }, STEP_MS);

    test("a hello that violates the schema", async () => {
      await expectRejected("mesh", { schema: 1 }, () => sendTcp(encodeFrame(hello({ nonce: "not-hex" }), 4096)));
    }, STEP_MS);

    test("a hello whose node id is not a node id (issue 10: \"evil node\" was stored as a voter)", async () => {
      await expectRejected("mesh", { schema: 1 }, () => sendTcp(encodeFrame(hello({ nodeId: "evil node" }), 4096)));
    }, STEP_MS);

    test("a frame other than hello before authentication (an injected sealed frame)", async () => {
      await expectRejected("mesh", { unauthenticated: 1 }, () => sendTcp(encodeFrame({ s: 0, d: "AAAA" }, 4096)));
    }, STEP_MS);

    test("a well-formed hello of another cluster", async () => {
      await expectRejected("mesh", { "wrong-cluster": 1 }, () => sendTcp(encodeFrame(hello({ cluster: "elsewhere" }), 4096)));
    }, STEP_MS);

    test("a handshake with the wrong secret", async () => {
      await expectRejected("mesh", { "bad-proof": 1 }, async () => {
        const c = await RawConn.open(ports.mesh);
        const mine = hello();
        c.socket.write(encodeFrame(mine, 4096));
        await waitFor(() => c.frames.length >= 2, { timeoutMs: 5_000, intervalMs: 10, what: "the agent's hello and proof" });
        const theirs = c.frames[0] as Hello;
        c.socket.write(encodeFrame({ t: "proof", mac: proofFor(WRONG_SECRET, "dialer", mine, theirs) }, 4096));
        await c.closedByAgent();
        return c.from;
      });
    }, STEP_MS);
  });

  describe("beacon (UDP)", () => {
    test("a forged beacon (MAC made with another secret)", async () => {
      await expectRejected("beacon", { "bad-mac": 1 }, () => sendUdp(encodeAnnouncement(WRONG_SECRET, announcement())));
    }, STEP_MS);

    test("a beacon of another cluster", async () => {
      await expectRejected("beacon", { "wrong-cluster": 1 }, () => sendUdp(encodeAnnouncement(SECRET, announcement({ cluster: "elsewhere" }))));
    }, STEP_MS);

    test("a stale beacon (10 minutes old, correct MAC)", async () => {
      await expectRejected("beacon", { stale: 1 }, () => sendUdp(encodeAnnouncement(SECRET, announcement({ ts: Date.now() - 600_000 }))));
    }, STEP_MS);

    test("a malformed beacon", async () => {
      await expectRejected("beacon", { malformed: 1 }, () => sendUdp(Buffer.from('{"b": 42}')));
    }, STEP_MS);

    test("a datagram of 64 KiB", async () => {
      await expectRejected("beacon", { oversized: 1 }, () => sendUdp(Buffer.alloc(MAX_UDP_PAYLOAD, "{")));
    }, STEP_MS);

    test("a beacon with the right MAC whose node id is not a node id", async () => {
      await expectRejected("beacon", { malformed: 1 }, () => sendUdp(encodeAnnouncement(SECRET, announcement({ nodeId: "evil node" }))));
    }, STEP_MS);

    test("a replayed valid beacon: the first copy is accepted and dialled, the second rejected", async () => {
      // The authentic announcement invites the agent to a listener that hangs up on the first dial
      // and then stops listening, so the agent's redials are refused quietly.
      let dialled = 0;
      const invite = await listenOnce((s, server) => { dialled++; s.destroy(); server.close(); });
      const datagram = encodeAnnouncement(SECRET, announcement({ nodeId: INVITED_ID, name: "invited", mesh: `${HOST}:${invite.port}` }));
      const meshBefore = (await agent.status()).rejects.mesh["handshake-closed"] ?? 0;
      await expectRejected("beacon", { replay: 1 }, () => sendUdp(datagram, datagram));
      expect(agent.linesMatching(new RegExp(`discovered invited \\(${INVITED_ID}, database\\)`)).length).toBe(1);
      await waitFor(() => dialled > 0, { timeoutMs: 5_000, intervalMs: 10, what: "the agent to dial the invited peer" });
      // Our hang-up is counted too; waiting for it keeps it out of the next test's counters.
      const s = await waitFor(async () => {
        const st = await agent.status();
        return (st.rejects.mesh["handshake-closed"] ?? 0) === meshBefore + 1 ? st : undefined;
      }, { timeoutMs: 5_000, intervalMs: 100, what: "the agent to count the invited peer's hang-up" });
      expect(s.peers.map((p) => p.id)).toEqual([INVITED_ID]);
      // Every rejected beacon above announced the trap; it was processed before this one.
      expect(trap.connections).toBe(0);
      expect(agent.linesMatching(/discovered fake /)).toEqual([]);
    }, STEP_MS);
  });

  test("100 silent connections time out without stopping the API or the election", async () => {
    const before = await agent.status();
    const conns = await Promise.all(Array.from({ length: 100 }, () => RawConn.open(ports.mesh).catch(() => undefined)));
    const opened = conns.filter((c) => c !== undefined);
    // Status is polled throughout: every poll must be answered and show a live lease. Problems are
    // collected, not thrown, because waitFor would treat a throw as "not yet" and hide it.
    let polls = 0;
    let duringFlood = 0; // polls answered while some of the silent connections were still held
    let slowestMs = 0;
    const problems: string[] = [];
    // Straight to the HTTP API (what must keep answering), not through `pgherd status`: starting
    // the CLI binary took up to 3.6 s on a busy machine, so one poll could span the whole flood.
    await waitFor(async () => {
      polls++;
      const t = performance.now();
      try {
        const s = await apiStatus();
        slowestMs = Math.max(slowestMs, performance.now() - t);
        if (!s.election.leading || s.election.leaseRemainingMs <= 0) problems.push(`poll ${polls}: not leading (${JSON.stringify(s.election)})`);
        if (opened.some((c) => !c.closed)) duringFlood++;
      } catch (e) {
        problems.push(`poll ${polls}: ${(e as Error).message}`);
      }
      return opened.every((c) => c.closed);
    }, { timeoutMs: HANDSHAKE_MS + 5_000, intervalMs: 200, what: "the agent to close all 100 silent connections" });
    expect(problems).toEqual([]);
    const inc = increments("mesh", before, await expectHealthy());
    console.log(`flood: ${opened.length} connections opened, ${duringFlood} API status polls answered while they were held (slowest ${Math.round(slowestMs)} ms); rejects ${JSON.stringify(inc)}`);
    expect(opened.length).toBe(100);
    expect(duringFlood).toBeGreaterThanOrEqual(2);
    expect(inc["handshake-timeout"]).toBeGreaterThan(0);
    expect((inc["handshake-timeout"] ?? 0) + (inc["too-many-pending"] ?? 0)).toBe(100);
    expect(Object.keys(inc).filter((r) => r !== "handshake-timeout" && r !== "too-many-pending")).toEqual([]);
    expect(agent.linesMatching(/\[solo:mesh\] rejected 127\.0\.0\.1:\d+: (handshake-timeout|too-many-pending)/).length).toBeGreaterThan(0);
  }, 20_000);

  test("the state stays loadable: the election state parses, every stored id is a node id", () => {
    const stored = new ElectionStore(agent.stateDir).get(); // throws on a file the next start could not read
    for (const id of [...(stored.membership?.voters ?? []), ...(stored.bootstrapVote ?? [])]) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(stored.membership?.voters.length).toBe(1);
  });

  test("nothing above reached an internal error", () => {
    expect(agent.linesMatching(/internal error|unexpected error|: internal\b|handler threw/i)).toEqual([]);
    expect(agent.proc.exited).toBe(false);
  });
});
