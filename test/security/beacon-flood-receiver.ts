// The receiving side of test/security/beacon-flood.test.ts, in a process of its own as an agent's
// beacon is: a timer in the test runner measures everything earlier tests left in its loop and
// heap, not only the beacon (test/security/beacon-flood.test.ts says what was seen). Starts the
// receiver and a legitimate sender, times this process's event loop, runs the flooder (a process
// of its own: blasting from here would stall the loop it measures) and prints one JSON line.
//   bun test/security/beacon-flood-receiver.ts   (loopback only; ~3 s)
import { memoryLogger } from "../../src/log.ts";
import { Beacon } from "../../src/net/beacon.ts";
import { freeUdpPort, nid, waitFor } from "../net/helpers.ts";

function beacon(label: string, port: number, peers: string[], seen: string[] = []): Beacon {
  return new Beacon({
    cluster: "flood", secret: "flood-secret-flood-secret-flood-secret", nodeId: nid(label), nodeName: label, role: "database",
    port, bindHost: "127.0.0.1", broadcast: [], peers, meshAddr: () => "127.0.0.1:7401",
    intervalMs: 50, maxAgeMs: 5000, log: memoryLogger(), onAnnouncement: (a) => seen.push(a.nodeId),
  });
}

// Datagrams that claim our cluster and carry a wrong MAC (the most expensive kind to refuse), from 4 addresses.
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

const child = Bun.spawn([process.execPath, "-e", FLOODER, "--", String(port), "3000", "300000"], { stdout: "pipe", stderr: "inherit" });
const out = new Response(child.stdout).text();
const acceptedBefore = a.accepted();
const t0 = performance.now();
try {
  await waitFor(() => (a.rejects()["bad-mac"] ?? 0) > 0, 3000, "the flood to arrive");
} finally {
  maxLag = 0; // measured from the first forged datagram on
  last = performance.now();
}
const code = await child.exited;
clearInterval(tick);
const r = a.rejects();
console.log(JSON.stringify({
  flooderExit: code, sent: Number(/sent (\d+)/.exec(await out)?.[1] ?? 0), seconds: (performance.now() - t0) / 1000,
  lagMs: maxLag, badMac: r["bad-mac"] ?? 0, rateLimited: r["rate-limited"] ?? 0, accepted: a.accepted() - acceptedBefore,
}));
a.stop();
b.stop();
process.exit(0);
