// Issue 10 finding 5 on a live cluster: a flood of bad-MAC beacons (they claim the cluster, so each
// costs an HMAC unless refused earlier) from four addresses of an attacker host, at every node,
// while the primary's host is cut off the network. The failover must stay within the same bound
// as without the flood (the network cut in test/e2e/failover-crash.e2e.test.ts): the election runs on the event
// loop that receives the beacons.
import { expect, test } from "bun:test";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import type { Proc } from "../helpers/proc.ts";
import { describeAnalysis, faultRound, secs, startFailoverCluster } from "../helpers/writer.ts";

const DISCOVERY_PORT = 7400;
const EXTRA_SOURCES = [201, 202, 203]; // last octets added to the attacker's interface

// Bursts of 60 datagrams every 2 ms (about 30,000 a second at most), round robin over the sources
// and targets, until killed; prints the running count once a second.
const FLOODER = `
const dgram = require("node:dgram");
const [cluster, sources, targets] = process.argv.slice(-3).map((a, i) => (i === 0 ? a : a.split(",")));
const body = JSON.stringify({ v: 1, cluster, nodeId: "00000000000000ff", name: "x", mesh: "10.0.0.1:1", role: "database", ts: Date.now(), nonce: "0".repeat(32), extra: { pad: "p".repeat(1000) } });
const datagram = Buffer.from(JSON.stringify({ b: body, mac: "ab".repeat(32) }));
const socks = sources.map((ip) => { const s = dgram.createSocket("udp4"); s.on("error", () => {}); s.bind(0, ip); return s; });
let sent = 0;
setInterval(() => console.log("sent " + sent), 1000);
const tick = () => {
  for (let k = 0; k < 60; k++) { socks[k % socks.length].send(datagram, ${DISCOVERY_PORT}, targets[k % targets.length], () => {}); sent++; }
  setTimeout(tick, 2);
};
setTimeout(tick, 100);
console.log("flooding");
`;


const flooded = (r: Record<string, number>) => (r["bad-mac"] ?? 0) + (r["rate-limited"] ?? 0);

describeCluster("a beacon flood during a leader cut (live cluster)", {
  start: async () => {
    const fx = await startFailoverCluster("security-beacon-flood", "secflood");
    const attacker: Host = await fx.c.addBareHost();
    const prefix = attacker.ip.replace(/\.\d+$/, "");
    for (const o of EXTRA_SOURCES) {
      const r = await attacker.exec(["ip", "addr", "add", `${prefix}.${o}/24`, "dev", "eth0"]);
      if (r.code !== 0) throw new Error(`ip addr add on ${attacker.ns}: ${r.stderr.trim()}`);
    }
    return { ...fx, attacker, flooder: undefined as Proc | undefined };
  },
  ready: ({ bounds }) => console.log(`bounds from the config: failover ${bounds.failoverMs} ms, fence ${bounds.fenceMs} ms`),
  beforeDestroy: async (fx) => {
    await fx.flooder?.stop(2_000);
    for (const h of fx.c?.lab.hosts ?? []) await h.heal().catch(() => {});
  },
}, (fx) => {
  test("the primary's host cut while every node is flooded: failover within the bound of an unflooded cut", () => fx.c.diagnose(async () => {
    const { c, attacker } = fx;
    const prefix = attacker.ip.replace(/\.\d+$/, "");
    const sources = [attacker.ip, ...EXTRA_SOURCES.map((o) => `${prefix}.${o}`)];
    const before = new Map(await Promise.all(c.nodes.map(async (n) => [n.name, flooded((await n.status()).rejects.beacon)] as const)));
    let floodStarted = 0;
    const r = await faultRound(c, {
      label: "network cut under a beacon flood", expect: "other",
      inject: async (p) => {
        fx.flooder = attacker.spawn([process.execPath, "-e", FLOODER, c.name, sources.join(","), c.nodes.map((n) => n.ip).join(",")]);
        await fx.flooder.waitForLine(/^sent [1-9]\d*$/, 10_000); // flooding for a second before the cut
        floodStarted = performance.now();
        await p.host.cut();
      },
      restore: async (old) => {
        await fx.flooder?.stop(2_000);
        await old.host.heal();
      },
    });
    const sent = Number(/^sent (\d+)$/.exec(fx.flooder!.lines.filter((l) => l.startsWith("sent ")).at(-1) ?? "")?.[1]);
    const counted = await Promise.all(r.healthy.standbys.concat(r.healthy.primary).filter((n) => n !== r.old).map(async (n) => `${n.name} ${flooded((await n.status()).rejects.beacon) - (before.get(n.name) ?? 0)}`));
    console.log(describeAnalysis(`${r.label} (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost) +
      `; ${sent} bad-MAC datagrams from ${sources.length} addresses over ${secs(performance.now() - floodStarted)}; refused (bad-mac or rate-limited) by ${counted.join(", ")}`);
    expect(r.analysis.recoveryMs).not.toBeNull();
    expect(r.analysis.recoveryMs!).toBeLessThanOrEqual(fx.bounds.failoverMs);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.writableAfter).toEqual([r.neu.name]);
    // The flood really reached the surviving nodes' beacons.
    expect(sent).toBeGreaterThan(10_000);
    for (const line of counted) expect(Number(line.split(" ")[1])).toBeGreaterThan(1_000);
  }), 240_000);
});
