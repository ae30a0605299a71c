// A live migration of a running three-node PostgreSQL cluster from the built-in election to etcd
// and back (`pgherd consensus migrate`), under a writer on every node: real etcd from Debian's
// etcd-server, one member on each of three namespace hosts; the nodes' config files say
// `backend = "builtin"` with the etcd endpoints named. Asserted: the same primary keeps
// acknowledging writes (no outage beyond a switchover's bound), no write acknowledged by two
// nodes, none lost, no postmaster restarted anywhere, every node's /node shows the backend in force,
// and etcd holds the leader key (the primary's id) only while the cluster runs on it. Then a voter
// cut off the network through a migration (to etcd, then back to builtin) adopts the new backend
// once healed; with etcd unreachable a migration to it aborts and nothing changes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { ensureBuilt } from "../../scripts/build.ts";
import { useBackend } from "../helpers/backend.ts";
import { type ClusterNode, clusterSkipReason, PgCluster } from "../helpers/cluster.ts";
import { etcdSkipReason } from "../helpers/etcd.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { API_TOKEN, type Bounds, logMark, logSince, pgherd, readyCluster, waitReplicating, Writer } from "../helpers/writer.ts";

requireReal("live consensus migration", clusterSkipReason() ?? etcdSkipReason());

interface InForce { backend: string; epoch: number }

async function inForce(n: ClusterNode): Promise<InForce & { leading: boolean; id: string }> {
  const r = await pgherd(n, ["status", "--json"], 10_000);
  if (r.code !== 0) throw new Error(`status on ${n.name}: ${r.text.slice(0, 300)}`);
  const s = JSON.parse(r.stdout) as { node: { id: string }; election: { leading: boolean; backend?: InForce } };
  return { ...(s.election.backend ?? { backend: "?", epoch: -1 }), leading: s.election.leading, id: s.node.id };
}

/** The value of this cluster's leader key in etcd, read from an etcd host (null: no key). */
async function leaderKey(h: Host, cluster: string): Promise<string | null> {
  const body = JSON.stringify({ key: Buffer.from(`/pgherd/${cluster}/leader`).toString("base64") });
  const probe = `const r = await fetch("http://${h.ip}:2379/v3/kv/range", { method: "POST", body: ${JSON.stringify(body)}, signal: AbortSignal.timeout(2000) }); process.stdout.write(await r.text());`;
  const r = await h.exec([process.execPath, "-e", probe], { timeoutMs: 5_000 });
  if (r.code !== 0) throw new Error(`etcd range on ${h.name}: ${r.stderr.slice(0, 300)}`);
  const kv = (JSON.parse(r.stdout) as { kvs?: { value: string }[] }).kvs?.[0];
  return kv ? Buffer.from(kv.value, "base64").toString() : null;
}

describe("live consensus migration builtin → etcd → builtin under a writer", () => {
  let c: PgCluster | undefined;
  let bounds: Bounds;
  let etcdHosts: Host[] = [];

  beforeAll(async () => {
    useBackend("etcd"); // starts the etcd members and names them in every config …
    ensureBuilt();
    const created = await PgCluster.create({ test: "consensus-migrate", tag: "cmig", nodes: 3, defaults: { extra: { api: { token: API_TOKEN } } } });
    for (const n of created.nodes) {
      // … which then says backend = "builtin": the cluster starts on the built-in election.
      const text = readFileSync(n.configPath, "utf8");
      if (!/backend = "etcd"/.test(text)) throw new Error(`${n.configPath}: no etcd backend line to change`);
      // [consensus] allow_migration is left to its default (true).
      writeFileSync(n.configPath, text.replace('backend = "etcd"', 'backend = "builtin"'));
    }
    ({ c, bounds } = await readyCluster("consensus-migrate", created));
    etcdHosts = c.lab.hosts.filter((h) => !c!.nodes.some((n) => n.host === h));
  }, 150_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`logs: ${c.artifacts}`);
    useBackend(null);
  }, 120_000);

  async function migrate(via: ClusterNode, to: string, epoch: number): Promise<number> {
    const t0 = performance.now();
    const r = await pgherd(via, ["consensus", "migrate", "--to", to, "--yes"], 60_000);
    const ms = performance.now() - t0;
    console.log(`migrate --to ${to} via ${via.name}: exit ${r.code} in ${ms.toFixed(0)} ms: ${r.text}`);
    expect(r.code).toBe(0);
    await waitFor(async () => (await Promise.all(c!.nodes.map(inForce))).every((s) => s.backend === to && s.epoch === epoch),
      { timeoutMs: 20_000, intervalMs: 200, what: `every node's /node to show ${to} (epoch ${epoch})` });
    return ms;
  }

  test("the same primary keeps writing through both migrations; none lost, never two writable, no postmaster restarted", () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    const p = h.primary;
    const pids = new Map(c!.nodes.map((n) => [n.name, n.postmasterPid()]));
    expect([...pids.values()].filter((p) => p === null)).toEqual([]);
    const pid = (await inForce(p)).id;
    const marks = new Map(c!.nodes.map((n) => [n.name, logMark(n)]));
    expect(await leaderKey(etcdHosts[0]!, c!.name)).toBeNull();
    const w = new Writer(c!.nodes);
    w.start();
    try {
      const warm = w.mark("warm");
      await waitFor(() => w.acked(p.name).filter((a) => a.start >= warm).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${p.name}` });
      const at = w.mark("to-etcd");
      await migrate(h.standbys[0]!, "etcd", 1); // asked on a standby: forwarded to the leader
      expect(await leaderKey(etcdHosts[1]!, c!.name)).toBe(pid);
      await waitFor(async () => (await inForce(p)).leading, { timeoutMs: 5_000, intervalMs: 100, what: `${p.name} to lead on etcd` });
      const mid = w.mark("on-etcd");
      await waitFor(() => w.acked(p.name).filter((a) => a.start >= mid).length >= 10, { timeoutMs: 15_000, what: `10 writes on ${p.name} on etcd` });
      await migrate(p, "builtin", 2);
      await waitFor(async () => (await leaderKey(etcdHosts[2]!, c!.name)) === null, { timeoutMs: 10_000, intervalMs: 200, what: "the etcd leader key to be released" });
      expect((await inForce(p)).leading).toBe(true);
      const back = w.mark("back");
      await waitFor(() => w.acked(p.name).filter((a) => a.start >= back).length >= 10, { timeoutMs: 15_000, what: `10 writes on ${p.name} back on builtin` });
      await w.stop();
      const a = w.analyse({ from: at, oldPrimary: p.name, newPrimary: p.name });
      const lost = await w.lost(p);
      console.log(`builtin → etcd → builtin: longest gap between acknowledged writes ${a.outageMs.toFixed(0)} ms (switchover bound ${bounds.switchoverMs} ms), ` +
        `${a.acked} of ${a.attempts} writes acknowledged, writable since the start: ${w.writableSince(at).join(",")}, ${lost.length} lost`);
      expect(w.writableSince(at)).toEqual([p.name]);
      expect(a.outageMs).toBeLessThanOrEqual(bounds.switchoverMs);
      expect(lost).toEqual([]);
      expect(new Map(c!.nodes.map((n) => [n.name, n.postmasterPid()]))).toEqual(pids);
      // No other agent led at any point (either backend's "leading term …" line), and nobody fenced.
      expect(c!.nodes.filter((n) => n !== p).flatMap((n) => logSince(n, marks.get(n.name)!, /leading term \d+ with a valid lease/))).toEqual([]);
      expect(c!.nodes.flatMap((n) => logSince(n, marks.get(n.name)!, /fenc(ed|ing PostgreSQL)/))).toEqual([]);
    } finally {
      await w.stop();
    }
  }), 180_000);

  test("etcd unreachable: migrate --to etcd aborts before anyone switches; nothing changes and the primary keeps writing", () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    const p = h.primary;
    const pm = p.postmasterPid();
    expect(pm).not.toBeNull();
    const w = new Writer([p]);
    w.start();
    try {
      const at = w.mark("etcd-cut");
      await Promise.all(etcdHosts.map((x) => x.cut()));
      try {
        const r = await pgherd(p, ["consensus", "migrate", "--to", "etcd", "--yes"], 60_000);
        console.log(`migrate --to etcd with etcd cut off: exit ${r.code}: ${r.text}`);
        expect(r.code).toBe(1);
        expect(r.text).toContain("aborted");
        expect(r.text).toContain("nothing changed");
      } finally {
        await Promise.all(etcdHosts.map((x) => x.heal()));
      }
      // etcd elects a leader again after the cut; until then the next test's migration may read "leader changed".
      await waitFor(async () => (await Promise.all(etcdHosts.map((x) => leaderKey(x, c!.name).then(() => true, () => false)))).every(Boolean),
        { timeoutMs: 30_000, intervalMs: 200, what: "every etcd member to answer again after the cut" });
      expect((await Promise.all(c!.nodes.map(inForce))).map((s) => `${s.backend}/${s.epoch}`)).toEqual(["builtin/2", "builtin/2", "builtin/2"]);
      const after = w.mark("after");
      await waitFor(() => w.acked(p.name).filter((x) => x.start >= after).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${p.name}` });
      await w.stop();
      const a = w.analyse({ from: at, oldPrimary: p.name, newPrimary: p.name });
      console.log(`aborted migration: longest gap between acknowledged writes ${a.outageMs.toFixed(0)} ms`);
      // Where a long gap fell (ms after the cut, by the test's clock) and what the attempts in it got.
      const acks = w.acked(p.name).filter((x) => x.end >= at);
      const gapEnd = acks.findIndex((x, i) => i > 0 && x.end - acks[i - 1]!.end === a.outageMs);
      if (a.outageMs > 500 && gapEnd > 0) {
        const [g0, g1] = [acks[gapEnd - 1]!.end, acks[gapEnd]!.end];
        const inGap = w.attempts.filter((x) => x.start >= g0 && x.start < g1).map((x) => `${(x.start - at).toFixed(0)}+${(x.end - x.start).toFixed(0)} ms: ${x.ok ? "ok" : x.error}`);
        console.log(`  the gap: from ${(g0 - at).toFixed(0)} to ${(g1 - at).toFixed(0)} ms after the cut; attempts in it: ${inGap.join("; ")}`);
      }
      expect(w.writableSince(at)).toEqual([p.name]);
      expect(a.outageMs).toBeLessThanOrEqual(1000);
      expect(p.postmasterPid()).toBe(pm);
    } finally {
      await w.stop();
    }
  }), 120_000);

  /** A standby cut off just as a migration to `to` starts: the others commit without it; once healed it adopts the epoch. */
  const cutThrough = (to: string, epoch: number) => () => c!.diagnose(async () => {
    const h = await waitReplicating(c!, 60_000);
    const p = h.primary;
    const off = h.standbys[1]!;
    // Connected to the leader before the cut: a voter reports its epoch and built-in term on each
    // (re)connection, and a migration to builtin needs every voter's report at the epoch in force
    // (the previous case's healed voter may still be reconnecting here).
    await waitFor(async () => (await p.status()).peers.find((x) => x.name === off.name)?.connected === true,
      { timeoutMs: 15_000, intervalMs: 200, what: `${p.name} to be connected to ${off.name}` });
    const mark = logMark(off);
    const w = new Writer([p]);
    w.start();
    try {
      const at = w.mark("cut");
      // Cut, then ask at once: the leader still counts the voter connected (mesh.dead_ms) and starts;
      // the switch it sends is lost with the connection, and the other voter's acknowledgement commits.
      await off.host.cut();
      try {
        const r = await pgherd(p, ["consensus", "migrate", "--to", to, "--yes"], 60_000);
        console.log(`migrate --to ${to} with ${off.name} cut off: exit ${r.code}: ${r.text}`);
        expect(r.code).toBe(0);
        const on = c!.nodes.filter((n) => n !== off);
        await waitFor(async () => (await Promise.all(on.map(inForce))).every((s) => s.backend === to && s.epoch === epoch),
          { timeoutMs: 20_000, intervalMs: 200, what: `the connected nodes to show ${to} (epoch ${epoch})` });
        // Past mesh.dead_ms: the leader dropped the connection, and the switch with it.
        await waitFor(async () => (await p.status()).peers.find((x) => x.name === off.name)?.connected !== true,
          { timeoutMs: 15_000, intervalMs: 200, what: `${p.name} to drop its connection to ${off.name}` });
      } finally {
        await off.host.heal();
      }
      await waitFor(async () => {
        const s = await inForce(off);
        return s.backend === to && s.epoch === epoch;
      }, { timeoutMs: 30_000, intervalMs: 200, what: `${off.name} to adopt ${to} (epoch ${epoch})` });
      // Usually from the epoch a peer repeats; sometimes TCP still delivers the switch sent before the cut once healed.
      const how = logSince(off, mark, new RegExp(`consensus backend now ${to} \\(epoch ${epoch}\\), (heard from|switched by)`));
      console.log(`${off.name}: ${how.join(" | ")}`);
      expect(how).toHaveLength(1);
      await waitReplicating(c!, 60_000);
      await w.stop();
      const lost = await w.lost(p);
      console.log(`${off.name} cut through the migration to ${to}: adopted it after healing; ${w.acked(p.name).length} writes acknowledged by ${p.name}, ${lost.length} lost`);
      expect(w.writableSince(at)).toEqual([p.name]);
      expect(lost).toEqual([]);
    } finally {
      await w.stop();
    }
  });

  test("a voter cut off during a migration to etcd catches up once healed (from the epoch its peers repeat); the primary keeps writing", cutThrough("etcd", 3), 180_000);
  test("the same back to builtin", cutThrough("builtin", 4), 180_000);
});
