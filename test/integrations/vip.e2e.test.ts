// [vip] on three namespace hosts on one bridge, a client on a fourth writing through the virtual
// IP every 50 ms: after a partition of the primary, a power-off of its host (link cut, every
// process killed; it comes back without the address, as a rebooted host), a switchover, and the primary's agent frozen
// (SIGSTOP) or killed (SIGKILL), the writes reach the new primary through the same address within
// the failover bound + 0.5 s; the client's neighbour entry moves to the new holder's MAC, whose
// gratuitous ARP tcpdump captures on the client; sampled every 100 ms, no two hosts ever hold the
// address. With the agent frozen or killed, its fencing watchdog removes the address at the lease
// deadline (within the fence bound), before the new holder announces it.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { PgCluster, poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import type { Proc } from "../helpers/proc.ts";
import { API_TOKEN, boundsOf, pgherd, signal, waitReplicating, watchdogPid, Writer, type Bounds } from "../helpers/writer.ts";
import { addHbaRule } from "../helpers/hba.ts";

interface Attempt { start: number; end: number; ok: boolean; addr?: string | null }
interface Fx { c: PgCluster; client: Host; vip: string; bounds: Bounds; writer: Proc | null; arp: Proc | null }
interface Sample { at: number; holders: string[] }
/** Exactly CAP_NET_ADMIN (12) and CAP_NET_RAW (13). */
const NET_CAPS = (1n << 12n | 1n << 13n).toString(16).padStart(16, "0");
const capEff = (pid: number) => readFileSync(`/proc/${pid}/status`, "utf8").match(/^CapEff:\s*([0-9a-f]+)$/m)?.[1];

async function start(): Promise<Fx> {
  const c = await PgCluster.create({ test: "vip", tag: "vip", nodes: 0 });
  try {
    const vip = c.lab.subnet.replace(/\.0\/24$/, ".200");
    // As postgres with exactly the capabilities docs/vip.md grants (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW).
    const agentCaps = ["net_admin", "net_raw"];
    for (let i = 0; i < 3; i++) await c.addNode({ agentCaps, extra: { api: { token: API_TOKEN }, vip: { address: `${vip}/24`, interface: "eth0" } } });
    const client = await c.addBareHost();
    await Promise.all(c.nodes.map((n) => n.start()));
    for (const n of c.nodes) expect(capEff(n.agent!.pid)).toBe(NET_CAPS); // CAP_NET_ADMIN, CAP_NET_RAW, nothing else
    const h = await c.diagnose(() => c.waitHealthy(90_000));
    // The fencing watchdog (started by the agent) inherits them: it removes the address of a frozen agent.
    for (const n of c.nodes) expect(capEff(await poll(async () => watchdogPid(n) ?? undefined, { timeoutMs: 10_000, intervalMs: 100, what: `${n.name}: watchdog` }))).toBe(NET_CAPS);
    await new Writer([]).prepare(h.primary);
    await h.primary.query("create role app login superuser");
    await h.primary.query("create table pool_w (id bigserial primary key, at timestamptz not null)");
    for (const n of c.nodes) await addHbaRule(n, `host all app ${client.ip}/32 trust`);
    // Every ARP packet about the address on the client's segment, with link-level source and epoch time.
    const arp = client.spawn(["tcpdump", "-i", "eth0", "-n", "-l", "-e", "-tt", "arp", "and", "host", vip], { logFile: join(c.artifacts, "vip-arp.txt") });
    return { c, client, vip, bounds: boundsOf(loadConfig(c.nodes[0]!.configPath)), writer: null, arp };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

describeCluster("virtual IP tied to the lease", {
  start,
  beforeDestroy: async (fx) => {
    for (const h of fx.c?.lab.hosts ?? []) await h.heal().catch(() => {});
    fx.writer?.kill("SIGTERM");
    fx.arp?.kill("SIGTERM");
  },
}, (fx) => {
  const file = () => join(fx.c.scratch, "vip-writes.jsonl");
  const attempts = (): Attempt[] => (existsSync(file()) ? readFileSync(file(), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);
  /** Hosts powered off (cut from the network, every process killed): they hold nothing for anyone. */
  const off = new Set<string>();
  const holders = async (): Promise<string[]> => {
    const out = await Promise.all(fx.c.nodes.filter((n) => !off.has(n.name)).map(async (n) => ((await n.host.exec(["ip", "-o", "addr", "show", "dev", "eth0"])).stdout.includes(` ${fx.vip}/24 `) ? n.name : null)));
    return out.filter((x): x is string => x !== null);
  };
  const mac = async (n: ClusterNode) => /link\/ether ([0-9a-f:]{17})/.exec((await n.host.exec(["ip", "-o", "link", "show", "dev", "eth0"])).stdout)?.[1];
  const clientNeighbour = async () => /lladdr ([0-9a-f:]{17})/.exec((await fx.client.exec(["ip", "neigh", "show", fx.vip])).stdout)?.[1];
  /** Gratuitous ARPs (who-has VIP tell VIP) captured on the client since `since` (epoch ms): time and sender MAC. */
  const garps = (since: number) => readFileSync(join(fx.c.artifacts, "vip-arp.txt"), "utf8").split("\n").flatMap((l) => {
    const m = /^(\d+\.\d+) ([0-9a-f:]{17}) > .*Request who-has (\S+) .*tell (\S+),/.exec(l);
    return m && m[3] === fx.vip && m[4] === fx.vip && Number(m[1]) * 1000 >= since ? [{ at: Number(m[1]) * 1000, mac: m[2]! }] : [];
  });

  /** One fault with the writer through the VIP and the holders sampled every 100 ms. */
  const round = async (label: string, fault: (p: ClusterNode, standbys: ClusterNode[]) => Promise<void>, restore?: (old: ClusterNode) => Promise<void>) => {
    const h = await waitReplicating(fx.c, 90_000);
    await poll(async () => ((await holders()).join() === h.primary.name ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, what: `${fx.vip} on ${h.primary.name} alone` });
    if (!fx.writer || fx.writer.exited) {
      fx.writer = fx.client.spawn([process.execPath, join(import.meta.dir, "pgpool-writer.ts"), fx.vip, "5432", file(), "dir"], { logFile: join(fx.c.artifacts, "vip-writer.log") });
    }
    const warm = Date.now();
    await poll(async () => (attempts().filter((a) => a.ok && a.addr === h.primary.dataDir && a.start >= warm).length >= 5 ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, what: `5 writes through ${fx.vip} on ${h.primary.name}` });
    const samples: Sample[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = Date.now();
        samples.push({ at: t, holders: await holders() });
        await Bun.sleep(100);
      }
    })();
    const at = Date.now();
    try {
      await fault(h.primary, h.standbys);
      const first = await poll(async () => attempts().find((a) => a.ok && a.start >= at && a.addr !== h.primary.dataDir), { timeoutMs: 60_000, intervalMs: 100, what: `${label}: a write through ${fx.vip} acknowledged by another node` });
      const neu = fx.c.nodes.find((n) => n.dataDir === first.addr)!;
      const lastOld = attempts().filter((a) => a.ok && a.addr === h.primary.dataDir).at(-1)!;
      const outage = first.end - lastOld.end;
      await poll(async () => ((await holders()).join() === neu.name ? true : undefined), { timeoutMs: 10_000, intervalMs: 100, what: `${fx.vip} on ${neu.name} alone` });
      const neighbour = await clientNeighbour();
      const neuMac = await mac(neu);
      const announced = await poll(async () => garps(at).find((g) => g.mac === neuMac), { timeoutMs: 5_000, intervalMs: 100, what: `tcpdump on the client: ${neu.name}'s gratuitous ARP for ${fx.vip}` });
      const lastOldHeld = samples.filter((x) => x.holders.includes(h.primary.name)).at(-1)?.at ?? at;
      console.log(`vip ${label} (${h.primary.name} -> ${neu.name}): client outage through ${fx.vip} ${(outage / 1000).toFixed(2)} s; client's neighbour entry ${neighbour} (${neu.name} eth0 ${neuMac}); ${neu.name}'s gratuitous ARP captured ${((announced.at - at) / 1000).toFixed(2)} s after the fault, last sample with ${fx.vip} on ${h.primary.name} ${((lastOldHeld - at) / 1000).toFixed(2)} s`);
      expect(neighbour).toBe(neuMac);
      expect(lastOldHeld).toBeLessThan(announced.at);
      await restore?.(h.primary);
      return { old: h.primary, neu, outage, at, samples, announced };
    } finally {
      sampling = false;
      await sampler;
      const two = samples.filter((s) => s.holders.length > 1);
      console.log(`vip ${label}: ${samples.length} samples of the holders, ${two.length} with two or more`);
      expect(two).toEqual([]);
    }
  };

  test("failover (the primary cut off) and a switchover: writes reach the new primary through the same address; never two holders", () => fx.c.diagnose(async () => {
    const f = await round("failover", (p) => p.host.cut(), (old) => old.host.heal());
    expect(f.outage).toBeLessThanOrEqual(fx.bounds.failoverMs + 500);
    const s = await round("switchover", async (p, standbys) => {
      // The standby the failover rewound streams again a moment before the leader's view says so (its
      // state report): the leader refuses until then ("is not streaming", "lags … behind").
      let r = await pgherd(p, ["switchover", "--to", standbys[0]!.name]);
      for (let i = 0; i < 20 && r.code !== 0 && /is not streaming|lags .* behind/.test(r.text); i++) {
        await Bun.sleep(250);
        r = await pgherd(p, ["switchover", "--to", standbys[0]!.name]);
      }
      if (r.code !== 0) throw new Error(`pgherd switchover: ${r.text}`);
    });
    expect(s.outage).toBeLessThanOrEqual(fx.bounds.switchoverMs + 500);
  }), 300_000);

  test("host power-off (link cut and every process killed): writes reach the new primary through the same address within the failover bound + 0.5 s; never two holders", () => fx.c.diagnose(async () => {
    let oldNode: ClusterNode | null = null;
    try {
      const r = await round("host power-off", async (p) => {
        oldNode = p;
        off.add(p.name);
        await p.host.cut();
        await p.host.killAll("SIGKILL");
      }, async (old) => {
        // A host that boots again has no address it was given at run time: the namespace keeps it, so drop it as the reboot would.
        await old.host.exec(["ip", "addr", "del", `${fx.vip}/24`, "dev", "eth0"]);
        await old.host.heal();
        off.delete(old.name);
        oldNode = null;
        await old.start();
      });
      console.log(`vip host power-off: client outage ${(r.outage / 1000).toFixed(2)} s (bound ${((fx.bounds.failoverMs + 500) / 1000).toFixed(2)} s); ${r.neu.name}'s gratuitous ARP ${((r.announced.at - r.at) / 1000).toFixed(2)} s after the fault`);
      expect(r.outage).toBeLessThanOrEqual(fx.bounds.failoverMs + 500);
    } finally {
      const o = oldNode as ClusterNode | null;
      if (o) {
        await o.host.heal().catch(() => {});
        off.delete(o.name);
      }
    }
  }), 180_000);

  /** The primary's agent frozen or killed (its watchdog left alone): the watchdog removes the address at the lease deadline. */
  const agentFault = async (sig: "SIGSTOP" | "SIGKILL") => {
    let oldNode: ClusterNode | null = null;
    try {
      const r = await round(`agent ${sig}`, async (p) => {
        oldNode = p;
        signal(p.agent!.pid, sig);
      }, async (old) => {
        if (sig === "SIGSTOP") signal(old.agent!.pid, "SIGCONT");
        else {
          await old.agent!.waitExit(5_000);
          await old.start();
        }
        oldNode = null;
      });
      // When the address left the old host: the watchdog's own log line (ISO time), and the sampled holders.
      const line = readFileSync(join(r.old.stateDir, "watchdog.log"), "utf8").split("\n").filter((l) => l.includes(`virtual IP ${fx.vip}/24 removed`)).at(-1);
      expect(line).toBeDefined();
      const removedAt = Date.parse(line!.split(" ")[0]!);
      const goneSample = r.samples.find((x) => x.at > r.at && !x.holders.includes(r.old.name))?.at ?? Infinity;
      console.log(`vip agent ${sig}: the watchdog removed ${fx.vip} from ${r.old.name} ${((removedAt - r.at) / 1000).toFixed(2)} s after the fault (fence bound ${(fx.bounds.fenceMs / 1000).toFixed(2)} s; first sample without it ${((goneSample - r.at) / 1000).toFixed(2)} s); ${r.neu.name}'s gratuitous ARP ${((r.announced.at - r.at) / 1000).toFixed(2)} s; client outage ${(r.outage / 1000).toFixed(2)} s`);
      expect(removedAt - r.at).toBeLessThanOrEqual(fx.bounds.fenceMs);
      expect(removedAt).toBeLessThan(r.announced.at);
      expect(r.outage).toBeLessThanOrEqual(fx.bounds.failoverMs + 500);
    } finally {
      const o = oldNode as ClusterNode | null;
      if (o && sig === "SIGSTOP") try { signal(o.agent!.pid, "SIGCONT"); } catch { /* gone */ }
    }
  };

  test("the primary's agent frozen (SIGSTOP): its watchdog removes the address within the fence bound; writes reach the new primary; never two holders", () => fx.c.diagnose(() => agentFault("SIGSTOP")), 180_000);
  test("the primary's agent killed (SIGKILL): its watchdog removes the address within the fence bound; writes reach the new primary; never two holders", () => fx.c.diagnose(() => agentFault("SIGKILL")), 180_000);
});
