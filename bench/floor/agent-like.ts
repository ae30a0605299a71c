// Skeleton of an idle agent's unavoidable runtime work, at the real cluster's idle rates, with no
// pgherd logic: a TCP mesh (node:net) to two peers carrying length-prefixed JSON frames sealed with
// AES-256-GCM (node:crypto, one key and sequence per direction); the leader sends a ~300-byte
// heartbeat to each follower every 150 ms (heartbeatMs) and each follower answers; every node sends a ~1.5 kB
// state frame to each peer every 500 ms; an HMAC-signed UDP beacon to 127.255.255.255 every 1 s;
// an HTTP server listening (Bun.serve, as src/api/server.ts); a `postgres` client running two
// trivial queries every 500 ms over the server's unix socket. The leader also writes its lease
// file (tmp + rename, as src/fence/lease-file.ts) after each acknowledged heartbeat round: the
// fencing watchdog of its host must learn each extension. Prints "ready" once every peer link is
// up and a query round succeeded, and its counters as JSON on SIGTERM.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import postgres from "postgres";

export type AgentLikeConfig = {
  id: string;
  /** Mesh port this node listens on (127.0.0.1); it dials the peers with a greater id. */
  port: number;
  peers: { id: string; port: number }[];
  leader: boolean;
  /** The leader's heartbeat interval ([election] heartbeat_ms, default 150). */
  heartbeatMs: number;
  beaconPort: number;
  /** Cluster secret (hex): frame keys and beacon HMACs. */
  secret: string;
  /** The leader writes its lease file here (the directory its host's watchdog-like watches). */
  leaseDir: string | null;
  pg: { socketDir: string; port: number; user: string };
};

const STATE_MS = 500;
const BEACON_MS = 1000;
const SQL_MS = 500;

const count = { framesOut: 0, framesIn: 0, heartbeatsIn: 0, answersIn: 0, statesIn: 0, beaconsIn: 0, queryRounds: 0, leaseWrites: 0 };

/** One direction-keyed, sequence-numbered AES-256-GCM link to a peer over a TCP socket. */
class Link {
  private seqOut = 0;
  private seqIn = 0;
  /** Received bytes not yet a whole frame (takeFrames consumes them). */
  pending: Buffer = Buffer.alloc(0);
  private readonly keyOut: Buffer;
  private readonly keyIn: Buffer;
  constructor(private readonly sock: Socket, secret: string, self: string, peer: string, private readonly onMessage: (m: Record<string, unknown>) => void) {
    const key = (info: string) => Buffer.from(hkdfSync("sha256", Buffer.from(secret, "hex"), "floor", info, 32));
    this.keyOut = key(`${self}>${peer}`);
    this.keyIn = key(`${peer}>${self}`);
  }

  send(m: unknown): void {
    const iv = Buffer.alloc(12);
    iv.writeBigUInt64BE(BigInt(++this.seqOut), 4);
    const c = createCipheriv("aes-256-gcm", this.keyOut, iv);
    const sealed = Buffer.concat([c.update(JSON.stringify(m), "utf8"), c.final(), c.getAuthTag()]);
    writeFrame(this.sock, { s: this.seqOut, d: sealed.toString("base64") });
    count.framesOut++;
  }

  /** Feeds received bytes; opens and delivers every whole frame. */
  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (const body of takeFrames(this)) {
      const env = JSON.parse(body) as { s: number; d: string };
      if (env.s !== ++this.seqIn) throw new Error(`sequence ${env.s}, expected ${this.seqIn}`);
      const raw = Buffer.from(env.d, "base64");
      const iv = Buffer.alloc(12);
      iv.writeBigUInt64BE(BigInt(env.s), 4);
      const d = createDecipheriv("aes-256-gcm", this.keyIn, iv);
      d.setAuthTag(raw.subarray(raw.length - 16));
      const plain = Buffer.concat([d.update(raw.subarray(0, raw.length - 16)), d.final()]);
      count.framesIn++;
      this.onMessage(JSON.parse(plain.toString("utf8")) as Record<string, unknown>);
    }
  }
}

/** 4-byte big-endian length, then that many bytes of JSON. */
function writeFrame(sock: Socket, v: unknown): void {
  const json = Buffer.from(JSON.stringify(v), "utf8");
  const head = Buffer.alloc(4);
  head.writeUInt32BE(json.length, 0);
  sock.write(Buffer.concat([head, json]));
}

function* takeFrames(src: { pending: Buffer }): Generator<string> {
  while (src.pending.length >= 4) {
    const n = src.pending.readUInt32BE(0);
    if (src.pending.length < 4 + n) return;
    const body = src.pending.subarray(4, 4 + n).toString("utf8");
    src.pending = src.pending.subarray(4 + n);
    yield body;
  }
}

/** A state report of about 1.5 kB of JSON: the shape (nested objects, numbers, strings) of a real one. */
function stateReport(id: string, n: number): unknown {
  const members = ["n1", "n2", "n3"].map((m, i) => ({ id: m, name: `node${i + 1}`, addr: `127.0.0.1:${26000 + i}`, role: i ? "standby" : "primary", state: "streaming", lsn: `0/${(0x4000000 + n * 64).toString(16)}`, lagBytes: 0, lagSeconds: 0.1, timeline: 1 }));
  return { t: "state", from: id, n, at: Date.now(), term: 1, pg: { running: true, inRecovery: id !== "n1", timeline: 1, lsn: `0/${(0x4000000 + n * 64).toString(16)}`, receiveLsn: null, replayLsn: null, pendingRestart: false, settingsVersion: 7 }, members, tags: { nofailover: false, noloadbalance: false, clonefrom: true }, configVersion: 12 };
}

export async function agentLike(configPath: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(configPath, "utf8")) as AgentLikeConfig;
  process.on("unhandledRejection", (r) => process.stderr.write(`unhandled rejection: ${String(r)}\n`));
  const started = performance.now();
  const links = new Map<string, Link>();
  let term = 1;
  let round = 0;
  let leaseRound = -1;
  let ready = false;
  let firstQuery = false;
  const checkReady = () => {
    if (!ready && firstQuery && links.size === cfg.peers.length) {
      ready = true;
      process.stdout.write("ready\n");
    }
  };

  const onMessage = (from: string) => (m: Record<string, unknown>) => {
    if (m.t === "hb") {
      count.heartbeatsIn++;
      links.get(from)!.send({ t: "hb-resp", from: cfg.id, term: m.term, round: m.round, ok: true, lsn: "0/4000000", at: performance.now() });
    } else if (m.t === "hb-resp") {
      count.answersIn++;
      // A majority of three (self + one answer) extends the lease: its host's watchdog must see it.
      if (cfg.leaseDir && m.round === round && leaseRound !== round) {
        leaseRound = round;
        const file = join(cfg.leaseDir, "lease");
        writeFileSync(`${file}.tmp`, JSON.stringify({ deadline: Math.round(performance.now()) + 1000, term, dataDir: "/var/lib/postgresql/data", writtenAt: Math.round(performance.now()), agentPid: process.pid }), { mode: 0o600 });
        renameSync(`${file}.tmp`, file);
        count.leaseWrites++;
      }
    } else if (m.t === "state") count.statesIn++;
  };

  const attach = (sock: Socket, peer: string) => {
    const link = new Link(sock, cfg.secret, cfg.id, peer, onMessage(peer));
    links.set(peer, link);
    sock.on("data", (c: Buffer) => link.push(c));
    sock.on("close", () => process.stderr.write(`link to ${peer} closed\n`));
    checkReady();
  };

  // Mesh: accept the peers with a smaller id (their first frame names them), dial the others.
  createServer((sock) => {
    const hello: { pending: Buffer } = { pending: Buffer.alloc(0) };
    const first = (c: Buffer) => {
      hello.pending = Buffer.concat([hello.pending, c]);
      for (const body of takeFrames(hello)) {
        sock.off("data", first);
        attach(sock, (JSON.parse(body) as { id: string }).id);
        if (hello.pending.length) sock.emit("data", hello.pending);
        return;
      }
    };
    sock.on("data", first);
  }).listen(cfg.port, "127.0.0.1");
  const dial = (peer: { id: string; port: number }) => {
    const sock = connect(peer.port, "127.0.0.1", () => {
      writeFrame(sock, { id: cfg.id });
      attach(sock, peer.id);
    });
    sock.once("error", () => setTimeout(() => dial(peer), 100)); // the peer may not listen yet
  };
  for (const p of cfg.peers) if (p.id > cfg.id) dial(p);

  if (cfg.leader) {
    const pad = "h".repeat(120);
    setInterval(() => {
      round++;
      for (const l of links.values()) l.send({ t: "hb", from: cfg.id, term, round, leaseMs: 1000, commitLsn: "0/4000000", sync: ["n2", "n3"], at: performance.now(), pad });
    }, cfg.heartbeatMs);
  }
  let reports = 0;
  setInterval(() => {
    reports++;
    for (const l of links.values()) l.send(stateReport(cfg.id, reports));
  }, STATE_MS);

  // Discovery beacon: HMAC-signed, to loopback's broadcast address, own beacons dropped.
  const udp = createSocket({ type: "udp4", reuseAddr: true });
  const mac = (body: string) => createHmac("sha256", Buffer.from(cfg.secret, "hex")).update(body).digest();
  udp.on("message", (msg) => {
    const b = JSON.parse(msg.toString("utf8")) as { body: string; mac: string };
    const body = JSON.parse(b.body) as { id: string };
    if (body.id === cfg.id) return;
    const want = mac(b.body);
    const got = Buffer.from(b.mac, "hex");
    if (got.length === want.length && timingSafeEqual(got, want)) count.beaconsIn++;
  });
  udp.bind(cfg.beaconPort, "0.0.0.0", () => {
    udp.setBroadcast(true);
    setInterval(() => {
      const body = JSON.stringify({ v: 1, cluster: "floor", id: cfg.id, name: cfg.id, addr: `127.0.0.1:${cfg.port}`, at: Date.now() });
      udp.send(JSON.stringify({ body, mac: mac(body).toString("hex") }), cfg.beaconPort, "127.255.255.255");
    }, BEACON_MS);
  });

  const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok\n") });

  const sql = postgres({ host: cfg.pg.socketDir, port: cfg.pg.port, user: cfg.pg.user, database: "postgres", max: 1, idle_timeout: 0, max_lifetime: null, fetch_types: false, prepare: true, connection: { application_name: "floor" } });
  let busy = false;
  setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await sql`select pg_is_in_recovery() as r`;
      await sql`select pg_current_wal_lsn()::text as lsn`;
      count.queryRounds++;
      firstQuery = true;
      checkReady();
    } catch (e) {
      process.stderr.write(`query round failed: ${(e as Error).message}\n`);
    } finally {
      busy = false;
    }
  }, SQL_MS);

  process.once("SIGTERM", () => {
    const out = { ...count, seconds: (performance.now() - started) / 1000, http: http.port };
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  });
}
