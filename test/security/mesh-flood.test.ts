// Issue 10 finding 3: idle pre-authentication sockets must not lock peers out of the mesh.
// Real sockets on loopback: a flood of silent connections from several 127.x source addresses,
// reopened as soon as the agent closes them, while a legitimate peer restarts and redials.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { z } from "zod";
import { memoryLogger } from "../../src/log.ts";
import { Mesh } from "../../src/net/mesh.ts";
import { makeHello, proofFor, type Hello } from "../../src/net/secure.ts";
import { nid, RawPeer, waitFor } from "../net/helpers.ts";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A mesh node with id nid(label). */
function mesh(label: string): Mesh {
  const m = new Mesh({
    cluster: "flood", secret: "flood-secret", nodeId: nid(label), nodeName: label, listenHost: "127.0.0.1", listenPort: 0,
    maxFrameBytes: 1 << 20, pingMs: 200, deadMs: 2000, handshakeMs: 3000, maxBufferedBytes: 1 << 20,
    backoffMinMs: 50, backoffMaxMs: 400, messageSchema: z.unknown(), log: memoryLogger(),
    onMessage: () => {}, onPeerUp: () => {}, onPeerDown: () => {},
  });
  cleanup.push(() => m.stop());
  return m;
}

/** Keeps `perSource` silent connections open from each source address, reopening closed ones at once. */
function flood(port: number, sources: string[], perSource: number): { open: () => number; stop: () => void } {
  let stopped = false;
  const live = new Set<net.Socket>();
  const one = (localAddress: string) => {
    if (stopped) return;
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    live.add(s);
    s.on("error", () => {});
    s.on("close", () => {
      live.delete(s);
      setTimeout(() => one(localAddress), 1);
    });
  };
  for (const src of sources) for (let i = 0; i < perSource; i++) one(src);
  const stop = () => {
    stopped = true;
    for (const s of live) s.destroy();
  };
  cleanup.push(stop);
  return { open: () => live.size, stop };
}

test("100 idle pre-auth sockets from 10 sources: a restarting peer reconnects within 2 s", async () => {
  const a = mesh("a");
  await a.start();
  const b1 = mesh("b");
  await b1.start();
  b1.dial(`127.0.0.1:${a.address().port}`, nid("a"));
  await waitFor(() => a.connected().includes(nid("b")), 3000, "b up before the flood");
  await b1.stop();
  await waitFor(() => !a.connected().includes(nid("b")), 3000, "b down");

  const sources = Array.from({ length: 10 }, (_, i) => `127.0.0.${i + 2}`);
  const f = flood(a.address().port, sources, 10);
  // The flood holds the pre-authentication budget before the peer comes back.
  await waitFor(() => a.connectionCount() >= 60, 3000, "the flood to fill the handshake budget");

  const b2 = mesh("b");
  await b2.start();
  const t0 = performance.now();
  b2.dial(`127.0.0.1:${a.address().port}`, nid("a"));
  await waitFor(() => a.connected().includes(nid("b")) && b2.connected().includes(nid("a")), 2000, "b to reconnect during the flood");
  const took = performance.now() - t0;
  expect(f.open()).toBeGreaterThanOrEqual(60); // the flood was still going
  f.stop();
  expect(took).toBeLessThan(2000); // well inside handshakeMs: no luck with the flood's own timeouts
}, 15_000);

test("one source cannot hold more than a few handshakes; silent ones are cut before the handshake deadline", async () => {
  const a = mesh("a");
  await a.start();
  const f = flood(a.address().port, ["127.0.0.9"], 80);
  await waitFor(() => (a.rejects()["too-many-pending"] ?? 0) > 0, 3000, "per-source refusals");
  expect(a.connectionCount()).toBeLessThanOrEqual(8);
  // handshakeMs is 3000: a silent socket is cut after a third of it.
  const t0 = performance.now();
  await waitFor(() => (a.rejects()["handshake-timeout"] ?? 0) > 0, 3000, "silent sockets cut");
  expect(performance.now() - t0).toBeLessThan(2000);
  const b = mesh("b");
  await b.start();
  b.dial(`127.0.0.1:${a.address().port}`, nid("a"));
  await waitFor(() => a.connected().includes(nid("b")), 1000, "b connects while one source floods");
  f.stop();
}, 15_000);

test("handshakes full: a silent socket gives way before a peer whose hello passed (it was the oldest from its address)", async () => {
  const a = mesh("a");
  await a.start();
  const port = a.address().port;
  // A peer that sent a valid hello and has not answered with its proof yet (a slow real peer).
  const real = await RawPeer.connect(port);
  const mine = makeHello({ cluster: "flood", nodeId: nid("b"), name: "b", addr: "127.0.0.1:9", dialer: true });
  real.write(mine);
  await waitFor(() => real.frames.length >= 2, 2000, "the acceptor's hello and proof");
  // 64 silent sockets, one from each of 64 addresses: the 64th fills the budget, each later one evicts.
  const f = flood(port, Array.from({ length: 70 }, (_, i) => `127.0.1.${i + 1}`), 1);
  await waitFor(() => (a.rejects()["evicted"] ?? 0) >= 5, 3000, "evictions");
  // Its proof now: the handshake completes (an evicted one would have been closed).
  const theirs = real.frames[0] as Hello;
  real.write({ t: "proof", mac: proofFor("flood-secret", "dialer", mine, theirs) });
  await waitFor(() => a.connected().includes(nid("b")) || real.closed, 3000, "the slow peer's handshake to end");
  expect(a.connected()).toContain(nid("b"));
  f.stop();
  real.destroy();
}, 15_000);
