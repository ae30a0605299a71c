// Duplicate connections between two peers dialled by the same node: both ends must keep the same one
// (the dialer chooses), and a restarted dialer's new connection must win over its dead leftover.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { z } from "zod";
import { memoryLogger } from "../../src/log.ts";
import { keepOnDuplicate } from "../../src/net/duplicates.ts";
import { Mesh } from "../../src/net/mesh.ts";
import { nid, RawPeer, waitFor } from "./helpers.ts";

const SECRET = "dup-secret";
const CLUSTER = "dup";
const HANDSHAKE = 1000;

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

interface Node { mesh: Mesh; got: { from: string; msg: unknown }[]; ups: string[]; downs: string[] }

async function node(label: string): Promise<Node> {
  const n = { got: [], ups: [], downs: [] } as unknown as Node;
  n.mesh = new Mesh({
    cluster: CLUSTER, secret: SECRET, nodeId: nid(label), nodeName: label, listenHost: "127.0.0.1", listenPort: 0,
    maxFrameBytes: 1 << 20, pingMs: 100, deadMs: 5000, handshakeMs: HANDSHAKE, maxBufferedBytes: 1 << 20,
    backoffMinMs: 50, backoffMaxMs: 400, messageSchema: z.any(), log: memoryLogger(),
    onMessage: (from, msg) => n.got.push({ from, msg }),
    onPeerUp: (p) => n.ups.push(p.id),
    onPeerDown: (id, why) => n.downs.push(`${id}: ${why}`),
  });
  await n.mesh.start();
  cleanup.push(() => n.mesh.stop());
  return n;
}

/**
 * A TCP relay to 127.0.0.1:target. Chunks towards the target after the first (the dialer's hello)
 * wait `upMs`; chunks back wait `downMs`. Order is kept in each direction.
 */
async function relay(target: number, upMs: number, downMs: number): Promise<number> {
  const delayed = (ms: number) => {
    let last = 0; // keeps order: each chunk leaves no earlier than the previous one
    return (write: () => void) => {
      if (ms === 0) return write();
      last = Math.max(performance.now() + ms, last);
      setTimeout(write, last - performance.now());
    };
  };
  const sockets: net.Socket[] = [];
  const srv = net.createServer((c) => {
    const u = net.connect({ host: "127.0.0.1", port: target });
    sockets.push(c, u);
    const up = delayed(upMs), down = delayed(downMs);
    let first = true;
    c.on("data", (d) => {
      if (first) { first = false; u.write(d); } else up(() => u.write(d));
    });
    u.on("data", (d) => down(() => c.write(d)));
    c.on("error", () => {});
    u.on("error", () => {});
    c.on("close", () => u.destroy());
    u.on("close", () => c.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return (srv.address() as net.AddressInfo).port;
}

test("keepOnDuplicate: lower dialer id at both ends; same dialer: the dialer keeps the newer, the acceptor waits for its choice", () => {
  const [a, b] = [nid("a"), nid("b")];
  expect(keepOnDuplicate({ ownId: a, newDialer: a, currentDialer: b })).toBe("new");
  expect(keepOnDuplicate({ ownId: b, newDialer: a, currentDialer: b })).toBe("new");
  expect(keepOnDuplicate({ ownId: a, newDialer: b, currentDialer: a })).toBe("current");
  expect(keepOnDuplicate({ ownId: a, newDialer: a, currentDialer: a })).toBe("new");
  expect(keepOnDuplicate({ ownId: a, newDialer: b, currentDialer: b })).toBe("new-current-spare");
});

test("same-dialer duplicates authenticated in opposite orders at the two ends: both keep the same one, no peer events", async () => {
  const r = await node("r"), p = await node("p");
  // Via slow: r authenticates at once (p's proof comes straight back), p 300 ms later (r's proof is held).
  // Via fast: both ends authenticate after 50 ms. So r sees slow then fast, p sees fast then slow.
  const slow = await relay(p.mesh.address().port, 300, 0);
  const fast = await relay(p.mesh.address().port, 0, 50);
  r.mesh.dial(`127.0.0.1:${slow}`, nid("p"));
  r.mesh.dial(`127.0.0.1:${fast}`, nid("p"));
  await waitFor(() => r.mesh.connectionCount() === 1 && p.mesh.connectionCount() === 1, 4 * HANDSHAKE, "one connection left at each end");
  await Bun.sleep(500);
  expect([r.ups, p.ups]).toEqual([[nid("p")], [nid("r")]]);
  expect([r.downs, p.downs]).toEqual([[], []]);
  expect(r.mesh.connected()).toEqual([nid("p")]);
  expect(p.mesh.connected()).toEqual([nid("r")]);
  expect(r.mesh.send(nid("p"), { n: 1 })).toBe(true);
  expect(p.mesh.send(nid("r"), { n: 2 })).toBe(true);
  await waitFor(() => p.got.length === 1 && r.got.length === 1, 2000, "a message each way on the kept connection");
}, 15_000);

test("a restarted dialer's new connection wins over its silent leftover at once, and the leftover is closed long before keepalive expiry", async () => {
  const r = await node("r");
  const old = await RawPeer.connect(r.mesh.address().port);
  cleanup.push(() => old.destroy());
  await old.handshake({ secret: SECRET, cluster: CLUSTER, nodeId: nid("p") });
  await waitFor(() => r.mesh.connected().includes(nid("p")), 2000, "the first run's connection up");
  // p's agent "restarts": the old connection goes silent (a crashed host never closes it), a new one comes.
  const fresh = await RawPeer.connect(r.mesh.address().port);
  cleanup.push(() => fresh.destroy());
  await fresh.handshake({ secret: SECRET, cluster: CLUSTER, nodeId: nid("p") });
  await waitFor(() => r.mesh.connectionCount() === 2, 2000, "the new connection authenticated");
  await Bun.sleep(50);
  expect(r.mesh.send(nid("p"), { n: 7 })).toBe(true);
  await waitFor(() => fresh.frames.some((f) => (f as { t?: string; m?: unknown }).t === "app"), 2000, "the message on the new connection");
  expect(old.frames.some((f) => (f as { t?: string }).t === "app")).toBe(false);
  const t0 = performance.now();
  await old.waitClosed(4 * HANDSHAKE);
  expect(performance.now() - t0).toBeLessThan(3 * HANDSHAKE); // deadMs is 5000
  expect(r.mesh.connected()).toEqual([nid("p")]);
  expect(r.downs).toEqual([]);
}, 15_000);
