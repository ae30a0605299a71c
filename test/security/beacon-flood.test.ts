// Issue 10 finding 5: a flood of bad-MAC beacons (326k in 10 s) stalled the agent's event loop for
// 672 ms. The receiver runs in a process of its own, as an agent's beacon does
// (beacon-flood-receiver.ts). In the test runner its loop also carried what every earlier test
// left there (their heap, timers and sockets): one CI run measured 193 ms, which a fresh process
// never came near (3-15 ms); what stalled the runner is not known (a heap of 10 million objects
// kept in the runner gives ~200 ms by its garbage collection alone). A child floods the beacon
// port from several 127.x addresses with datagrams that claim our cluster and carry a wrong MAC
// (the most expensive kind to refuse) while the receiver times its event loop and a legitimate
// sender keeps announcing. Bounded: 3 s, loopback only.
import { expect, test } from "bun:test";
import { join } from "node:path";

test("a bad-MAC flood from 4 addresses: event loop lag stays under 100 ms and real beacons get through", async () => {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "beacon-flood-receiver.ts")], { stdout: "pipe", stderr: "pipe", env: { ...process.env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`the receiver exited with ${code}: ${err.slice(-2000)}`);
  const r = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { flooderExit: number; sent: number; seconds: number; lagMs: number; badMac: number; rateLimited: number; accepted: number };
  const refused = r.badMac + r.rateLimited;
  console.log(`flood: ${r.sent} sent, ${refused} refused (${r.badMac} verified, ${r.rateLimited} dropped unverified), max loop lag ${r.lagMs.toFixed(1)} ms, ${r.accepted} real beacons accepted`);
  expect(r.flooderExit).toBe(0);
  expect(r.sent).toBeGreaterThan(50_000);
  expect(refused).toBeGreaterThan(20_000); // the flood did reach the agent
  expect(r.lagMs).toBeLessThan(100);
  // The work is bounded whatever the rate: each source may cost 100 verifications at once and 50/s.
  expect(r.badMac).toBeLessThanOrEqual(4 * (100 + 50 * r.seconds) + 10);
  expect(r.accepted).toBeGreaterThan(10); // b announces every 50 ms over the 3 s
}, 20_000);
