// "This address is ourselves" must come from the proofs, never from a plaintext hello, and must not
// stop the mesh dialling an address for good: someone who saw our dial's hello (or relays our own
// bytes back to us) could otherwise keep us away from a real peer until restart.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { z } from "zod";
import { memoryLogger } from "../../src/log.ts";
import { Mesh, type MeshOptions } from "../../src/net/mesh.ts";
import { FrameDecoder, encodeFrame } from "../../src/net/framing.ts";
import { nid, waitFor } from "./helpers.ts";

const live: { stop(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const x of live.splice(0).reverse()) await x.stop();
});

async function node(label: string, port = 0, over: Partial<MeshOptions> = {}) {
  const log = memoryLogger();
  const mesh = new Mesh({
    cluster: "c", secret: "s".repeat(40), nodeId: nid(label), nodeName: label, listenHost: "127.0.0.1", listenPort: port,
    maxFrameBytes: 1 << 20, pingMs: 100, deadMs: 600, handshakeMs: 1000, maxBufferedBytes: 1 << 20, backoffMinMs: 50, backoffMaxMs: 400,
    messageSchema: z.unknown(), log, onMessage() {}, onPeerUp() {}, onPeerDown() {}, ...over,
  });
  live.push(mesh);
  await mesh.start();
  return { mesh, log, port: mesh.address().port };
}

/**
 * Sits at an address our node dials and answers each dial by connecting to `backPort` (our own
 * listener). "forge": knows no secret, sends a dialer hello copied from ours (our id, our nonce).
 * "relay": forwards bytes both ways, so our node talks to itself through it. `used` counts dials.
 */
async function middle(mode: "forge" | "relay", backPort: number) {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => { sockets.add(s); s.on("error", () => {}); s.on("close", () => sockets.delete(s)); return s; };
  let used = 0;
  const server = net.createServer((s) => {
    track(s);
    used++;
    const back = track(net.connect({ host: "127.0.0.1", port: backPort }));
    if (mode === "relay") {
      s.pipe(back);
      back.pipe(s);
      return;
    }
    const dec = new FrameDecoder(4096);
    s.on("data", (c: Buffer) => {
      for (const f of dec.push(c)) back.write(encodeFrame({ ...(f as object), name: "x", addr: "127.0.0.1:1", dialer: true }, 4096));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const m = {
    port, addr: `127.0.0.1:${port}`, used: () => used,
    /** Leaves the address to whoever listens next. */
    stop: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
  live.push(m);
  return m;
}

const connectsAfterTakeover = async (a: Awaited<ReturnType<typeof node>>, m: Awaited<ReturnType<typeof middle>>, ms: number) => {
  await m.stop();
  const b = await node("b", m.port); // the real peer now listens where the middle sat
  await waitFor(() => a.mesh.connected().includes(nid("b")) && b.mesh.connected().includes(nid("a")), ms, "a connected to b");
};

for (const expected of [nid("b"), undefined]) {
  test(`a copied hello (no secret) is not taken for ourselves: the address is dialled on (expecting ${expected ? "b" : "no id"})`, async () => {
    const a = await node("a");
    const m = await middle("forge", a.port);
    a.mesh.dial(m.addr, expected);
    await waitFor(() => m.used() >= 1, 2000, "a dialled the middle");
    await Bun.sleep(200); // the forged hello reached a's listener (the old code gave the address up here)
    await connectsAfterTakeover(a, m, 4000);
    expect(a.log.lines.some((l) => l.includes("is this node itself"))).toBe(false);
  }, 15_000);
}

test("a target expecting another node is never taken for ourselves, even when the proofs are ours (relayed)", async () => {
  const a = await node("a");
  const m = await middle("relay", a.port);
  a.mesh.dial(m.addr, nid("b"));
  await waitFor(() => (a.mesh.rejects()["wrong-peer"] ?? 0) >= 2, 3000, "wrong-peer, redialled with back-off");
  expect(a.mesh.rejects().self).toBeUndefined();
  await connectsAfterTakeover(a, m, 3000);
});

test("an address proved to be ourselves is dialled again after selfRecheckMs, not given up for good", async () => {
  const a = await node("a", 0, { selfRecheckMs: 1500 });
  const m = await middle("relay", a.port);
  a.mesh.dial(m.addr);
  await waitFor(() => a.log.lines.some((l) => l.includes("is this node itself")), 3000, "self detected through the relay");
  // Past the back-off's 400 ms cap, well short of the 1.5 s pause.
  await Bun.sleep(600);
  expect(m.used()).toBe(1); // no redial within the back-off's cap: the self pause holds
  await waitFor(() => m.used() >= 2, 4000, "the address asked again");
  await waitFor(() => a.log.lines.filter((l) => l.includes("is this node itself")).length >= 2, 2000, "self found again");
  expect(a.log.lines.filter((l) => l.includes("is this node itself")).map((l) => l.split(" ")[0])).toEqual(["info", "debug"]);
  await connectsAfterTakeover(a, m, 4000);
}, 15_000);

test("a target first expected to be ourselves is dialled once another node's id is expected there", async () => {
  const a = await node("a");
  const b = await node("b");
  const addr = `127.0.0.1:${b.port}`;
  a.mesh.dial(addr, nid("a"));
  await Bun.sleep(200);
  expect(a.mesh.connected()).toEqual([]);
  a.mesh.dial(addr, nid("b"));
  await waitFor(() => a.mesh.connected().includes(nid("b")), 3000, "a connected to b");
});
