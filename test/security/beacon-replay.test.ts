// Issue 10 finding 2 (the part in the transport): beacons recorded without the secret and sent
// again from another address after the agent restarted must not be accepted, and a peer's address
// (pg_hba, upstream) comes from its authenticated mesh connection, never from a beacon's UDP source.
// Real beacons and meshes on loopback, wired by the agent's createTransport into a real PeerTable.
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import { createTransport } from "../../src/agent/transport.ts";
import { PeerTable } from "../../src/agent/peers.ts";
import { configSchema } from "../../src/config/schema.ts";
import { memoryLogger } from "../../src/log.ts";
import { encodeAnnouncement } from "../../src/net/beacon-codec.ts";
import { nid, waitFor } from "../net/helpers.ts";
import { freeUdpPort } from "../net/helpers.ts";
import { freeTcpPorts } from "../../src/demo/ports.ts";

const SECRET = "replay-test-secret-0123456789abcdef";
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function udp(host: string, port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(port, host, () => r()));
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

/** Below the ephemeral range, never one the suite's other worker picks (src/demo/ports.ts). */
async function freeTcpPort(): Promise<number> {
  return (await freeTcpPorts(1))[0]!;
}

/** One agent's transport (node id nid(label)): beacon on `port` announcing to `peers`, mesh on a free port (loopback, or `listenHost`). */
async function agent(label: string, port: number, peers: string[], listenHost = "127.0.0.1") {
  return agentOn(label, port, peers, listenHost, await freeTcpPort());
}

/** agent() with its mesh on `meshPort`. */
async function agentOn(label: string, port: number, peers: string[], listenHost: string, meshPort: number) {
  const id = nid(label);
  const cfg = configSchema().parse({
    cluster: "replay", secret: SECRET, node_name: label, state_dir: "/nonexistent",
    discovery: { port, broadcast: [], peers, interval_ms: 100, max_age_ms: 30_000 },
    mesh: { listen: `${listenHost}:${meshPort}` },
  });
  const table = new PeerTable(30_000);
  const t = createTransport(cfg, id, table, memoryLogger(), { onMessage: () => {}, onPeerUp: () => {}, onPeerDown: () => {}, beaconExtra: () => ({}) });
  const stop = () => Promise.all([t.beacon.stop(), t.mesh.stop()]);
  cleanup.push(stop);
  await t.mesh.start();
  await t.beacon.start();
  const peer = (peerLabel: string) => table.list().find((p) => p.id === nid(peerLabel));
  return { ...t, table, peer, stop };
}

test("beacons recorded before a restart, re-sent from 127.0.0.99: refused, the peer's address stays its mesh address", async () => {
  const [ps, pr, rec] = [await freeUdpPort(), await freeUdpPort(), await udp("127.0.0.1")];
  const recorded: Buffer[] = [];
  rec.on("message", (m) => recorded.push(m));
  const s = await agent("s", ps, [`127.0.0.1:${pr}`, `127.0.0.1:${rec.address().port}`]);
  const r1 = await agent("r", pr, [`127.0.0.1:${ps}`]);
  await waitFor(() => r1.peer("s")?.connected === true && recorded.length >= 3, 3000, "r connected to s, beacons recorded");
  expect(r1.peer("s")?.address).toBe("127.0.0.1");
  await r1.stop();
  const replays = recorded.slice(); // all recorded before the restart

  const r2 = await agent("r", pr, [`127.0.0.1:${ps}`]); // the restarted agent
  await waitFor(() => r2.peer("s")?.connected === true && r2.beacon.accepted() > 0, 3000, "r reconnected to s, a fresh beacon heard");
  const beforeStart = r2.beacon.rejects()["before-start"] ?? 0; // s's datagrams in flight across the restart
  const attacker = await udp("127.0.0.99");
  for (const d of replays) attacker.send(d, pr, "127.0.0.1");
  const addresses = new Set<string>();
  await waitFor(() => {
    addresses.add(r2.peer("s")?.address ?? "?");
    return (r2.beacon.rejects()["before-start"] ?? 0) === beforeStart + replays.length;
  }, 3000, "every replayed beacon refused as before-start");
  expect([...addresses]).toEqual(["127.0.0.1"]);
  expect(r2.peer("s")?.mesh).toBe(`127.0.0.1:${s.mesh.address().port}`);
});

test("a valid beacon alone (a holder of the secret, no mesh connection) gives a peer no address", async () => {
  const pr = await freeUdpPort();
  const r = await agent("r", pr, []);
  const forger = await udp("127.0.0.77");
  const d = encodeAnnouncement(SECRET, { cluster: "replay", nodeId: nid("x"), name: "x", mesh: "127.0.0.77:1", role: "database", ts: Date.now(), extra: {} });
  forger.send(d, pr, "127.0.0.1");
  await waitFor(() => r.peer("x") !== undefined, 3000, "the announcement accepted");
  expect(r.peer("x")?.address).toBe(""); // the mesh never authenticated it: nothing for pg_hba or an upstream
});

test("a peer that comes back at another mesh address is no longer dialled at the old one once connected there", async () => {
  const [ps, pr] = [await freeUdpPort(), await freeUdpPort()];
  const s1 = await agent("s", ps, [`127.0.0.1:${pr}`]);
  const r = await agent("r", pr, [`127.0.0.1:${ps}`]);
  const old = `127.0.0.1:${s1.mesh.address().port}`;
  await waitFor(() => r.peer("s")?.connected === true && r.mesh.dialling().join() === old, 3000, "r connected to s, dialling its address");
  await s1.stop();
  const s2 = await agent("s", ps, [`127.0.0.1:${pr}`]); // restarted on another port (a new address, after DHCP say)
  const now = `127.0.0.1:${s2.mesh.address().port}`;
  await waitFor(() => r.peer("s")?.mesh === now && r.peer("s")?.connected === true, 3000, "r connected to s at its new address");
  await waitFor(() => r.mesh.dialling().join() === now, 3000, `r dials ${now} only`);
});

test("a fresh beacon of a connected peer that announces a wildcard, sent from another address: the peer is still dialled where it was", async () => {
  const [ps, pr] = [await freeUdpPort(), await freeUdpPort()];
  const s = await agent("s", ps, [`127.0.0.1:${pr}`], "0.0.0.0");
  const r = await agent("r", pr, [`127.0.0.1:${ps}`]);
  const port = s.mesh.address().port;
  const real = `127.0.0.1:${port}`;
  await waitFor(() => r.peer("s")?.connected === true && r.peer("s")?.mesh === real && r.mesh.dialling().join() === real, 3000, "r connected to s, dialling it at its beacons' source");
  // What a flood of forged failures from s's address makes possible: s's genuine beacon dropped
  // unverified, its copy re-sent from the attacker's address (here: a fresh one, as r has not seen it).
  const attacker = await udp("127.0.0.99");
  const accepted = r.beacon.accepted();
  for (let i = 0; i < 3; i++) {
    attacker.send(encodeAnnouncement(SECRET, { cluster: "replay", nodeId: nid("s"), name: "s", mesh: `0.0.0.0:${port}`, role: "database", ts: Date.now(), extra: {} }), pr, "127.0.0.1");
  }
  await waitFor(() => r.beacon.accepted() >= accepted + 3, 3000, "the copies accepted");
  expect(r.peer("s")?.mesh).toBe(real);
  expect(r.mesh.dialling()).toEqual([real]);
  expect(r.peer("s")?.address).toBe("127.0.0.1");
});

test("a peer that dialled us before any beacon of it was accepted, announcing a wildcard: a copy of its beacon from another address does not set where it is dialled", async () => {
  const [ps, pr] = [await freeUdpPort(), await freeUdpPort()];
  const s = await agent("s", ps, [], "0.0.0.0"); // its beacons do not reach r; r's reach s, so s dials r
  const r = await agent("r", pr, [`127.0.0.1:${ps}`]);
  const port = s.mesh.address().port;
  await waitFor(() => r.peer("s")?.connected === true, 3000, "s dialled r");
  expect(r.peer("s")?.mesh).toBe(""); // connected, no beacon of it accepted yet
  const beacon = () => encodeAnnouncement(SECRET, { cluster: "replay", nodeId: nid("s"), name: "s", mesh: `0.0.0.0:${port}`, role: "database", ts: Date.now(), extra: {} });
  const attacker = await udp("127.0.0.99");
  attacker.send(beacon(), pr, "127.0.0.1");
  await waitFor(() => r.beacon.accepted() >= 1, 3000, "the copy accepted");
  const real = `127.0.0.1:${port}`; // the IP of s's authenticated connection
  expect(r.peer("s")?.mesh).toBe(real);
  expect(r.mesh.dialling()).toEqual([real]);
  // s restarts on the same mesh port and no longer hears r: only r's dial brings it back
  await s.stop();
  await waitFor(() => r.peer("s")?.connected === false, 3000, "s down at r");
  await agentOn("s", await freeUdpPort(), [], "0.0.0.0", port);
  await waitFor(() => r.peer("s")?.connected === true, 6000, "r dialled s again");
  expect(r.peer("s")?.address).toBe("127.0.0.1");
});

test("a peer that announces a wildcard and comes back at another IP, unable to dial: found again at its beacons' source", async () => {
  const [ps, pr] = [await freeUdpPort(), await freeUdpPort()];
  const s1 = await agent("s", ps, [`127.0.0.1:${pr}`], "0.0.0.0");
  const r = await agent("r", pr, [`127.0.0.1:${ps}`]);
  await waitFor(() => r.peer("s")?.connected === true, 3000, "r connected to s");
  await s1.stop();
  await waitFor(() => r.peer("s")?.connected === false, 3000, "s down at r");
  const s2 = await agent("s", await freeUdpPort(), [], "127.0.0.2"); // renumbered; it does not hear r, so it does not dial it
  const port = s2.mesh.address().port;
  const src = await udp("127.0.0.2");
  const timer = setInterval(() => src.send(encodeAnnouncement(SECRET, { cluster: "replay", nodeId: nid("s"), name: "s", mesh: `0.0.0.0:${port}`, role: "database", ts: Date.now(), extra: {} }), pr, "127.0.0.1"), 100);
  cleanup.push(() => clearInterval(timer));
  await waitFor(() => r.peer("s")?.connected === true, 4000, "r reconnected to s at its new IP");
  expect(r.peer("s")?.mesh).toBe(`127.0.0.2:${port}`);
  expect(r.peer("s")?.address).toBe("127.0.0.2");
});
