// [vip] on three namespace hosts on one bridge, a client on a fourth writing through the virtual
// IP every 50 ms: after a partition of the primary and after a switchover the writes reach the new
// primary through the same address within the failover bound + 0.5 s; the client's neighbour
// entry moves to the new holder's MAC (gratuitous ARP); sampled every 100 ms, no two hosts ever
// hold the address.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { PgCluster, poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import type { Proc } from "../helpers/proc.ts";
import { API_TOKEN, boundsOf, pgherd, waitReplicating, Writer, type Bounds } from "../helpers/writer.ts";

interface Attempt { start: number; end: number; ok: boolean; addr?: string | null }
interface Fx { c: PgCluster; client: Host; vip: string; bounds: Bounds; writer: Proc | null }

async function start(): Promise<Fx> {
  const c = await PgCluster.create({ test: "vip", tag: "vip", nodes: 0 });
  try {
    const vip = c.lab.subnet.replace(/\.0\/24$/, ".200");
    // As postgres with exactly the capabilities docs/vip.md grants (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW).
    const agentCaps = ["net_admin", "net_raw"];
    for (let i = 0; i < 3; i++) await c.addNode({ agentCaps, extra: { api: { token: API_TOKEN }, vip: { address: `${vip}/24`, interface: "eth0" } } });
    const client = await c.addBareHost();
    await Promise.all(c.nodes.map((n) => n.start()));
    for (const n of c.nodes) {
      const caps = readFileSync(`/proc/${n.agent!.pid}/status`, "utf8").match(/^CapEff:\s*([0-9a-f]+)$/m)?.[1];
      expect(caps).toBe((1n << 12n | 1n << 13n).toString(16).padStart(16, "0")); // CAP_NET_ADMIN (12), CAP_NET_RAW (13), nothing else
    }
    const h = await c.diagnose(() => c.waitHealthy(90_000));
    await new Writer([]).prepare(h.primary);
    await h.primary.query("create role app login superuser");
    await h.primary.query("create table pool_w (id bigserial primary key, at timestamptz not null)");
    for (const n of c.nodes) {
      appendFileSync(join(n.dataDir, "pg_hba.conf"), `host all app ${client.ip}/32 trust\n`);
      await n.query("select pg_reload_conf()");
    }
    return { c, client, vip, bounds: boundsOf(loadConfig(c.nodes[0]!.configPath)), writer: null };
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
  },
}, (fx) => {
  const file = () => join(fx.c.scratch, "vip-writes.jsonl");
  const attempts = (): Attempt[] => (existsSync(file()) ? readFileSync(file(), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);
  const holders = async (): Promise<string[]> => {
    const out = await Promise.all(fx.c.nodes.map(async (n) => ((await n.host.exec(["ip", "-o", "addr", "show", "dev", "eth0"])).stdout.includes(` ${fx.vip}/24 `) ? n.name : null)));
    return out.filter((x): x is string => x !== null);
  };
  const mac = async (n: ClusterNode) => /link\/ether ([0-9a-f:]{17})/.exec((await n.host.exec(["ip", "-o", "link", "show", "dev", "eth0"])).stdout)?.[1];
  const clientNeighbour = async () => /lladdr ([0-9a-f:]{17})/.exec((await fx.client.exec(["ip", "neigh", "show", fx.vip])).stdout)?.[1];

  /** One fault with the writer through the VIP and the holders sampled every 100 ms. */
  const round = async (label: string, fault: (p: ClusterNode, standbys: ClusterNode[]) => Promise<void>, restore?: (old: ClusterNode) => Promise<void>) => {
    const h = await waitReplicating(fx.c, 90_000);
    await poll(async () => ((await holders()).join() === h.primary.name ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, what: `${fx.vip} on ${h.primary.name} alone` });
    if (!fx.writer || fx.writer.exited) {
      fx.writer = fx.client.spawn([process.execPath, join(import.meta.dir, "pgpool-writer.ts"), fx.vip, "5432", file(), "dir"], { logFile: join(fx.c.artifacts, "vip-writer.log") });
    }
    const warm = Date.now();
    await poll(async () => (attempts().filter((a) => a.ok && a.addr === h.primary.dataDir && a.start >= warm).length >= 5 ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, what: `5 writes through ${fx.vip} on ${h.primary.name}` });
    const samples: string[][] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push(await holders());
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
      console.log(`vip ${label} (${h.primary.name} -> ${neu.name}): client outage through ${fx.vip} ${(outage / 1000).toFixed(2)} s; client's neighbour entry ${neighbour} (${neu.name} eth0 ${await mac(neu)})`);
      expect(neighbour).toBe(await mac(neu));
      await restore?.(h.primary);
      return { old: h.primary, neu, outage };
    } finally {
      sampling = false;
      await sampler;
      const two = samples.filter((s) => s.length > 1);
      console.log(`vip ${label}: ${samples.length} samples of the holders, ${two.length} with two or more`);
      expect(two).toEqual([]);
    }
  };

  test("failover (the primary cut off) and a switchover: writes reach the new primary through the same address; never two holders", () => fx.c.diagnose(async () => {
    const f = await round("failover", (p) => p.host.cut(), (old) => old.host.heal());
    expect(f.outage).toBeLessThanOrEqual(fx.bounds.failoverMs + 500);
    const s = await round("switchover", async (p, standbys) => {
      const r = await pgherd(p, ["switchover", "--to", standbys[0]!.name]);
      if (r.code !== 0) throw new Error(`pgherd switchover: ${r.text}`);
    });
    expect(s.outage).toBeLessThanOrEqual(fx.bounds.switchoverMs + 500);
  }), 300_000);
});
