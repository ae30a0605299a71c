// Issue 10 finding 5: a flood of bad-MAC beacons (326k in 10 s) stalled the agent's event loop for
// 672 ms. A child process floods the beacon port from several 127.x addresses with datagrams that
// claim our cluster and carry a wrong MAC (the most expensive kind to refuse) while this process
// times its event loop and a legitimate sender keeps announcing. Bounded: 3 s, loopback only.
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import { memoryLogger } from "../../src/log.ts";
import { Beacon } from "../../src/net/beacon.ts";
import { nid, waitFor } from "../net/helpers.ts";
import { freeUdpPort } from "../net/helpers.ts";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A beacon with node id nid(label). */
function beacon(label: string, port: number, peers: string[], seen: string[] = []): Beacon {
  const b = new Beacon({
    cluster: "flood", secret: "flood-secret-flood-secret-flood-secret", nodeId: nid(label), nodeName: label, role: "database",
    port, bindHost: "127.0.0.1", broadcast: [], peers, meshAddr: () => "127.0.0.1:7401",
    intervalMs: 50, maxAgeMs: 5000, log: memoryLogger(), onAnnouncement: (a) => seen.push(a.nodeId),
  });
  cleanup.push(() => b.stop());
  return b;
}

// Runs in a child process: blasting datagrams from this process would stall the loop we measure.
const FLOODER = `
const dgram = require("node:dgram");
const [port, ms, max] = process.argv.slice(-3).map(Number);
const body = JSON.stringify({ v: 1, cluster: "flood", nodeId: "forger", name: "x", mesh: "127.0.0.1:1", role: "database", ts: Date.now(), nonce: "0".repeat(32), extra: { pad: "p".repeat(1500) } });
const datagram = Buffer.from(JSON.stringify({ b: body, mac: "ab".repeat(32) }));
const socks = [];
let ready = 0, sent = 0;
const end = Date.now() + ms;
for (let i = 2; i <= 5; i++) {
  const s = dgram.createSocket("udp4");
  s.on("error", () => {});
  s.bind(0, "127.0.0." + i, () => { if (++ready === 4) { process.stdout.write("go\\n"); blast(); } });
  socks.push(s);
}
function blast() {
  if (Date.now() > end || sent >= max) { process.stdout.write("sent " + sent + "\\n"); process.exit(0); }
  for (let k = 0; k < 200; k++) socks[k % 4].send(datagram, port, "127.0.0.1", () => {}), sent++;
  setImmediate(blast);
}
`;

test("a bad-MAC flood from 4 addresses: event loop lag stays under 100 ms and real beacons get through", async () => {
  const port = await freeUdpPort();
  const seen: string[] = [];
  const a = beacon("a", port, [], seen);
  await a.start();
  const b = beacon("b", await freeUdpPort(), [`127.0.0.1:${port}`]);
  await b.start();
  await waitFor(() => seen.includes(nid("b")), 2000, "b heard before the flood");

  let maxLag = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const t = performance.now();
    maxLag = Math.max(maxLag, t - last - 5);
    last = t;
  }, 5);
  cleanup.push(() => clearInterval(tick));

  const child = Bun.spawn([process.execPath, "-e", FLOODER, "--", String(port), "3000", "300000"], { stdout: "pipe", stderr: "inherit" });
  cleanup.push(() => child.kill());
  const out = new Response(child.stdout).text();
  const acceptedBefore = a.accepted();
  const t0 = performance.now();
  await waitFor(() => (a.rejects()["bad-mac"] ?? 0) > 0, 3000, "the flood to arrive");
  maxLag = 0; // measured from the first forged datagram on
  last = performance.now();
  expect(await child.exited).toBe(0);
  const sent = Number(/sent (\d+)/.exec(await out)?.[1] ?? 0);
  const seconds = (performance.now() - t0) / 1000;
  const lag = maxLag;
  const r = a.rejects();
  const refused = (r["bad-mac"] ?? 0) + (r["rate-limited"] ?? 0);
  console.log(`flood: ${sent} sent, ${refused} refused (${r["bad-mac"] ?? 0} verified, ${r["rate-limited"] ?? 0} dropped unverified), max loop lag ${lag.toFixed(1)} ms, ${a.accepted() - acceptedBefore} real beacons accepted`);
  expect(sent).toBeGreaterThan(50_000);
  expect(refused).toBeGreaterThan(20_000); // the flood did reach the agent
  expect(lag).toBeLessThan(100);
  // The work is bounded whatever the rate: each source may cost 100 verifications at once and 50/s.
  expect(r["bad-mac"] ?? 0).toBeLessThanOrEqual(4 * (100 + 50 * seconds) + 10);
  expect(a.accepted() - acceptedBefore).toBeGreaterThan(10); // b announces every 50 ms over the 3 s
}, 20_000);
