import { afterEach, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import { memoryLogger } from "../../src/log.ts";
import {
  Beacon, broadcastOf, defaultBroadcastAddresses, ownNonceCapacity, REPLAY_NODES, replayCapacity, type Announcement, type BeaconOptions,
} from "../../src/net/beacon.ts";
import { decodeAnnouncement, encodeAnnouncement } from "../../src/net/beacon-codec.ts";
import { ReplayCache } from "../../src/net/replay-cache.ts";
import { nid, waitFor } from "./helpers.ts";
import { freeUdpPort } from "../../src/demo/ports.ts";

const CLUSTER = "beacon-test";
const SECRET = "beacon-secret";
const MAX_AGE = 2000;
const BCAST = "127.255.255.255";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A free UDP port, not one the suite's other worker picks (src/demo/ports.ts). */
const freePort = freeUdpPort;

interface Node {
  beacon: Beacon;
  seen: { a: Announcement; from: { address: string; port: number } }[];
  log: ReturnType<typeof memoryLogger>;
}

/** A beacon whose node id is nid(label) and whose name is name-<label>. */
async function beacon(label: string, port: number, over: Partial<BeaconOptions> = {}): Promise<Node> {
  const log = memoryLogger();
  const n = { seen: [], log } as unknown as Node;
  n.beacon = new Beacon({
    cluster: CLUSTER, secret: SECRET, nodeId: nid(label), nodeName: `name-${label}`, role: "database",
    port, broadcast: [BCAST], peers: [], meshAddr: () => "0.0.0.0:7001",
    intervalMs: 100, maxAgeMs: MAX_AGE, extra: () => ({ bootstrapped: true }), log,
    onAnnouncement: (a, from) => n.seen.push({ a, from }),
    ...over,
  });
  cleanups.push(() => n.beacon.stop());
  await n.beacon.start();
  return n;
}

/** Raw socket on the shared port: captures real datagrams and injects forged ones by broadcast. */
async function rawSocket(port: number): Promise<{ sock: dgram.Socket; captured: Buffer[]; send: (b: Buffer) => void }> {
  const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
  const captured: Buffer[] = [];
  sock.on("message", (m) => captured.push(m));
  await new Promise<void>((r) => sock.bind(port, "0.0.0.0", () => r()));
  sock.setBroadcast(true);
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, captured, send: (b) => sock.send(b, port, BCAST) };
}

describe("beacon", () => {
  test("two beacons on loopback discover each other; own broadcasts are dropped as self", async () => {
    const port = await freePort();
    const a = await beacon("node-a", port);
    const b = await beacon("node-b", port, { role: "witness", meshAddr: () => "127.0.0.9:7002" });
    await waitFor(() => a.seen.length > 0 && b.seen.length > 0, 3000, "mutual discovery");
    const fromB = a.seen[0]!.a;
    expect(fromB).toMatchObject({ cluster: CLUSTER, nodeId: nid("node-b"), name: "name-node-b", role: "witness", mesh: "127.0.0.9:7002", extra: { bootstrapped: true } });
    expect(fromB.nonce).toMatch(/^[0-9a-f]{32}$/);
    // A wildcard mesh host is passed on as signed: the receiver's transport decides what to dial
    // (test/security/beacon-replay.test.ts), the datagram's source comes beside it.
    expect(b.seen[0]!.a.mesh).toBe("0.0.0.0:7001");
    expect(b.seen[0]!.from.address).toBe("127.0.0.1");
    expect(a.seen.every((s) => s.a.nodeId === nid("node-b"))).toBe(true);
    await waitFor(() => (a.beacon.rejects()["self"] ?? 0) > 0, 2000, "own broadcast looped back");
    expect(a.log.lines.filter((l) => l.startsWith("warn"))).toEqual([]);
    // Announcements keep coming on the interval.
    const n = a.seen.length;
    await waitFor(() => a.seen.length >= n + 3, 2000, "periodic announcements");
    expect(a.beacon.accepted()).toBe(a.seen.length);
  });

  test("forged, foreign, stale, replayed, malformed and oversized datagrams are each dropped by reason", async () => {
    const port = await freePort();
    const raw = await rawSocket(port); // bound first so it sees b's very first datagram
    const a = await beacon("node-a", port);
    const b = await beacon("node-b", port);
    await waitFor(() => raw.captured.some((d) => d.includes(nid("node-b"))), 2000, "a captured datagram of b");
    const captured = raw.captured.find((d) => d.includes(nid("node-b")))!;
    await waitFor(() => a.seen.length > 0, 2000, "a hears b");

    const fields = { cluster: CLUSTER, nodeId: nid("intruder"), name: "x", mesh: "127.0.0.1:1", role: "database" as const, extra: {} };
    const goodMacOtherBody = JSON.parse(encodeAnnouncement(SECRET, { ...fields, ts: Date.now() }).toString());
    const cases: [string, () => Buffer][] = [
      ["bad-mac", () => Buffer.from(JSON.stringify({ b: JSON.parse(encodeAnnouncement("guess", { ...fields, ts: Date.now() }).toString()).b, mac: "ab".repeat(32) }))],
      ["bad-mac", () => Buffer.from(JSON.stringify({ ...goodMacOtherBody, b: goodMacOtherBody.b.replace('"x"', '"y"') }))],
      ["wrong-cluster", () => encodeAnnouncement("other-secret", { ...fields, cluster: "other", ts: Date.now() })],
      ["stale", () => encodeAnnouncement(SECRET, { ...fields, ts: Date.now() - 3 * MAX_AGE })],
      ["stale", () => encodeAnnouncement(SECRET, { ...fields, ts: Date.now() + 3 * MAX_AGE })],
      ["replay", () => captured],
      ["malformed", () => Buffer.from("{not json")],
      ["malformed", () => Buffer.from(JSON.stringify({ b: "{}", mac: "00".repeat(32) }))],
      ["oversized", () => Buffer.alloc(65_000, 0x7b)],
    ];
    for (const [reason, make] of cases) {
      const before = a.beacon.rejects()[reason] ?? 0;
      raw.send(make());
      await waitFor(() => (a.beacon.rejects()[reason] ?? 0) === before + 1, 2000, `a counts ${reason}`);
    }
    expect(a.seen.every((s) => s.a.nodeId === nid("node-b"))).toBe(true);
    for (const reason of ["bad-mac", "stale", "replay", "malformed", "oversized"]) {
      expect(a.log.lines.some((l) => l.startsWith("warn") && l.includes(reason) && l.includes("127.0.0.1"))).toBe(true);
    }
    // A neighbouring cluster is expected noise: debug, not warn.
    expect(a.log.lines.some((l) => l.startsWith("debug") && l.includes("wrong-cluster"))).toBe(true);
    // A fresh valid datagram from a node we never heard of is still accepted.
    raw.send(encodeAnnouncement(SECRET, { ...fields, ts: Date.now() }));
    await waitFor(() => a.seen.some((s) => s.a.nodeId === nid("intruder")), 2000, "valid injected announcement");
    const n = a.seen.length;
    await waitFor(() => a.seen.length > n + 1, 2000, "b still accepted");
    void b;
  });

  test("another host using our node id is reported, not mistaken for our own loopback", async () => {
    const port = await freePort();
    const raw = await rawSocket(port);
    const a = await beacon("node-a", port);
    raw.send(encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("node-a"), name: "clone", mesh: "127.0.0.1:1", role: "database", ts: Date.now(), extra: {} }));
    await waitFor(() => (a.beacon.rejects()["duplicate-id"] ?? 0) === 1, 2000, "duplicate-id");
    expect(a.log.lines.some((l) => l.startsWith("warn") && l.includes("duplicate-id"))).toBe(true);
  });

  test("a flood is counted in full (verified or rate-limited) but logged at a bounded rate", async () => {
    const port = await freePort();
    const raw = await rawSocket(port);
    const a = await beacon("node-a", port);
    // In bursts small enough for the socket buffer, so every datagram arrives and must be counted.
    for (let burst = 1; burst <= 10; burst++) {
      for (let i = 0; i < 20; i++) raw.send(Buffer.from(`junk ${burst}/${i}`));
      const counted = () => (a.beacon.rejects()["malformed"] ?? 0) + (a.beacon.rejects()["rate-limited"] ?? 0);
      await waitFor(() => counted() === burst * 20, 3000, `${burst * 20} malformed or rate-limited counted`);
    }
    // 200 bad datagrams at once from one source: its budget (burst 100) is spent, the rest dropped unparsed.
    expect(a.beacon.rejects()["rate-limited"]).toBeGreaterThan(0);
    expect(a.log.lines.filter((l) => l.includes("malformed")).length).toBeLessThanOrEqual(20);
  });

  test("our own beacon repeated after 400 more of ours (fewer than max_age / (0.9 × interval)) is still known as ours, not a duplicate id", async () => {
    const port = await freePort();
    const raw = await rawSocket(port);
    const a = await beacon("node-a", port, { intervalMs: 10, maxAgeMs: 60_000 });
    await waitFor(() => raw.captured.length > 0, 2000, "a's first beacon captured");
    const first = raw.captured[0]!;
    for (let i = 0; i < 400; i++) a.beacon.sendNow(); // well inside max_age: every nonce is still live
    const self = a.beacon.rejects()["self"] ?? 0;
    await Bun.sleep(100);
    raw.send(first);
    await waitFor(() => (a.beacon.rejects()["self"] ?? 0) > self || (a.beacon.rejects()["replay"] ?? 0) > 0 || (a.beacon.rejects()["duplicate-id"] ?? 0) > 0, 2000, "the repeat judged");
    await Bun.sleep(100);
    expect(a.beacon.rejects()["duplicate-id"]).toBeUndefined();
    // Known as ours; it already came back once from its one destination: a replay, charged to its source.
    expect(a.beacon.rejects()["replay"]).toBe(1);
  });

  test("copies of our own beacon beyond one per destination are replays, charged to their source's budget (review: verified in full, never charged)", () => {
    const me = nid("selfrep");
    const b = new Beacon({
      cluster: CLUSTER, secret: SECRET, nodeId: me, nodeName: "n1", role: "database", port: 0, broadcast: [BCAST], peers: ["127.0.0.1"],
      meshAddr: () => "10.0.0.1:7400", intervalMs: 1000, maxAgeMs: 30_000, notBefore: 0, log: memoryLogger(), onAnnouncement() {},
    });
    const ts = Date.now();
    const nonce = "a".repeat(32);
    const d = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: me, name: "n1", mesh: "10.0.0.1:7400", role: "database", ts, nonce, extra: {} });
    (b as unknown as { ownNonces: ReplayCache }).ownNonces.add(nonce, ts + 30_000); // as sendNow() records it
    const receive = (b as unknown as { receive(d: Buffer, from: { address: string; port: number }): void }).receive.bind(b);
    for (let i = 0; i < 10_000; i++) receive(d, { address: "10.9.9.9", port: 5000 });
    expect(b.rejects()["self"]).toBe(2); // two destinations: the broadcast's loop and this host named as a peer
    expect(b.rejects()["rate-limited"] ?? 0).toBeGreaterThan(9_000); // the source's budget (burst 100) spent
  });

  test("a clock stepped back after the start does not refuse fresh beacons as stamped before it (review)", () => {
    const b = new Beacon({
      cluster: CLUSTER, secret: SECRET, nodeId: nid("stepped"), nodeName: "n1", role: "database", port: 0, broadcast: [], peers: [],
      meshAddr: () => "10.0.0.1:7400", intervalMs: 1000, maxAgeMs: 30_000, log: memoryLogger(), onAnnouncement() {},
    });
    // Started while the wall clock read an hour ahead (booted so, corrected since).
    Object.assign(b, { notBefore: Date.now() + 3_600_000, startedMono: performance.now() });
    const d = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("peer"), name: "p", mesh: "10.0.0.2:7400", role: "database", ts: Date.now(), nonce: "b".repeat(32), extra: {} });
    (b as unknown as { receive(d: Buffer, from: { address: string; port: number }): void }).receive(d, { address: "10.0.0.2", port: 7400 });
    expect(b.rejects()["before-start"]).toBeUndefined();
    expect(b.accepted()).toBe(1);
    // One stamped before the start by the clock as it reads now is still refused.
    const old = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("peer"), name: "p", mesh: "10.0.0.2:7400", role: "database", ts: Date.now() - 5_000, nonce: "c".repeat(32), extra: {} });
    Object.assign(b, { startedMono: performance.now() - 1_000 }); // started a second ago
    (b as unknown as { receive(d: Buffer, from: { address: string; port: number }): void }).receive(old, { address: "10.0.0.2", port: 7400 });
    expect(b.rejects()["before-start"]).toBe(1);
  });

  test("send errors are counted, never thrown", async () => {
    const port = await freePort();
    const a = await beacon("node-a", port, { peers: ["127.0.0.1:0", "[::1]"], broadcast: [] });
    a.beacon.sendNow();
    await waitFor(() => a.beacon.sendErrors() >= 4, 3000, "send error counted");
    expect(a.log.lines.some((l) => l.startsWith("warn") && l.includes("127.0.0.1:0"))).toBe(true); // thrown synchronously
    expect(a.log.lines.some((l) => l.startsWith("warn") && l.includes("[::1]"))).toBe(true); // reported via callback
    expect(a.log.lines.filter((l) => l.startsWith("warn")).length).toBe(2); // once per destination, then debug
  });

  test("oversized own announcement is refused and counted", async () => {
    const port = await freePort();
    const a = await beacon("node-a", port, { extra: () => ({ blob: "x".repeat(5000) }) });
    expect(a.beacon.sendErrors()).toBeGreaterThanOrEqual(1);
    expect(a.log.lines.some((l) => l.startsWith("error") && l.includes("exceeds maxBytes"))).toBe(true);
  });
});

describe("beacon codec and helpers", () => {
  test("decode checks cluster, then MAC", () => {
    const d = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("n"), name: "n1", mesh: "h:1", role: "database", ts: 1, extra: { k: [1] } });
    const r = decodeAnnouncement(SECRET, CLUSTER, d);
    expect(r.ok && r.a).toMatchObject({ nodeId: nid("n"), ts: 1, extra: { k: [1] } });
    expect(decodeAnnouncement("other", CLUSTER, d)).toMatchObject({ ok: false, reason: "bad-mac" });
    expect(decodeAnnouncement(SECRET, "other", d)).toMatchObject({ ok: false, reason: "wrong-cluster" });
    const long = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: "n".repeat(65), name: "n1", mesh: "h:1", role: "database", ts: 1, extra: {} });
    expect(decodeAnnouncement(SECRET, CLUSTER, long)).toMatchObject({ ok: false, reason: "malformed" });
  });

  test("a node id outside NodeIdSchema is malformed even with a valid MAC (issue 10: any string up to 64 was taken)", () => {
    for (const bad of ["evil node", "n", "node-a", "ABCDEF0123456789", "0".repeat(15), "0".repeat(17), ""]) {
      const d = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: bad, name: "n1", mesh: "h:1", role: "database", ts: 1, extra: {} });
      expect(decodeAnnouncement(SECRET, CLUSTER, d)).toMatchObject({ ok: false, reason: "malformed", detail: expect.stringContaining("nodeId") });
    }
    expect(decodeAnnouncement(SECRET, CLUSTER, encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: "0123456789abcdef", name: "n1", mesh: "h:1", role: "database", ts: 1, extra: {} })).ok).toBe(true);
  });

  test("a name that could break a log line, a hook's environment or pgpool.conf is malformed even with a valid MAC (an older version's default name with '_' passes)", () => {
    for (const bad of ["", "evil name", "n1;rm -rf /", "<b>x</b>", "a\nb", "x".repeat(65)]) {
      const d = encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("n"), name: bad, mesh: "h:1", role: "database", ts: 1, extra: {} });
      expect(decodeAnnouncement(SECRET, CLUSTER, d)).toMatchObject({ ok: false, reason: "malformed", detail: expect.stringContaining("name") });
    }
    for (const good of ["db-1", "db1.example.com", "10.0.0.1", "::1", "db_1", `${"x".repeat(31)}.${"y".repeat(32)}`]) {
      expect(decodeAnnouncement(SECRET, CLUSTER, encodeAnnouncement(SECRET, { cluster: CLUSTER, nodeId: nid("n"), name: good, mesh: "h:1", role: "database", ts: 1, extra: {} })).ok).toBe(true);
    }
  });

  test("replay cache: duplicates inside the window, expiry; when full a new key is refused, never a live one dropped", () => {
    const c = new ReplayCache(3, "refuse");
    expect(c.add("k1", 100, 0)).toBe("added");
    expect(c.add("k1", 100, 50)).toBe("seen");
    expect(c.add("k1", 200, 101)).toBe("added"); // expired entry may be reused
    expect(c.add("k2", 1000, 150)).toBe("added");
    expect(c.add("k3", 1000, 150)).toBe("added");
    expect(c.add("k4", 1000, 150)).toBe("full");
    expect(c.size()).toBe(3);
    expect(c.add("k1", 200, 160)).toBe("seen"); // still inside its window: a replay, not forgotten
    expect(c.add("k4", 1000, 201)).toBe("added"); // k1 expired: room again (found behind live k2, k3 too)
    const e = new ReplayCache(2, "evict");
    for (const k of ["a", "b", "c"]) expect(e.add(k, 1000, 0)).toBe("added");
    expect([e.has("a", 0), e.has("c", 0), e.size()]).toEqual([false, true, 2]);
  });

  test("replay cache sizes: the fastest allowed settings hold every live nonce of 16 nodes, a clock max_age ahead included", () => {
    // interval_ms = 10 and max_age_ms = 30000 are both allowed: 3,000 nonces a node per max_age.
    expect(replayCapacity(30_000, 10)).toBeGreaterThanOrEqual(REPLAY_NODES * Math.ceil((2 * 30_000) / 9));
    expect(replayCapacity(30_000, 1000)).toBe(10_000); // defaults: the floor
    expect(ownNonceCapacity(30_000, 10)).toBeGreaterThanOrEqual(30_000 / 9 + 256);
  });

  test("broadcast addresses from netmasks", () => {
    expect(broadcastOf("192.168.1.20", "255.255.255.0")).toBe("192.168.1.255");
    expect(broadcastOf("10.1.2.3", "255.0.0.0")).toBe("10.255.255.255");
    expect(broadcastOf("10.0.0.1", "255.255.255.255")).toBeUndefined();
    expect(broadcastOf("10.0.0.1", "255.255.255.254")).toBeUndefined();
    expect(broadcastOf("bad", "255.0.0.0")).toBeUndefined();
    const lo = { address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "", internal: true, cidr: null } as const;
    expect(defaultBroadcastAddresses({ lo: [lo] })).toEqual(["127.255.255.255"]);
    const eth = { ...lo, address: "172.16.5.4", netmask: "255.255.240.0", internal: false };
    expect(defaultBroadcastAddresses({ lo: [lo], eth0: [eth, eth] })).toEqual(["172.16.15.255"]);
    for (const a of defaultBroadcastAddresses()) expect(a).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  });
});
