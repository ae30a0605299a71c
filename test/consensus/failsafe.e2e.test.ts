// [consensus] failsafe = true under a three-node PostgreSQL cluster with a writer on every node, on
// the same etcd setup as quorum-loss.e2e.test.ts: two of the three etcd member hosts (etcd's
// leader and a follower) are cut off. The primary keeps its lease while both standbys confirm over
// the mesh, and writes go on being acknowledged well past the point where it would have fenced
// without failsafe. Then one standby's host is cut off too: its confirmations stop, and the primary
// fences within one usable lease of the cut. Once etcd and the standby are back, writes resume on
// the same primary (its etcd lease survived the loss); 0 acknowledged writes lost.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { parse, stringify } from "smol-toml";
import { ensureBuilt } from "../../scripts/build.ts";
import { useBackend } from "../helpers/backend.ts";
import { clusterSkipReason, PgCluster } from "../helpers/cluster.ts";
import { etcdLeaderIndex, etcdSkipReason } from "../helpers/etcd.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { API_TOKEN, type Bounds, faultRound, logMark, logSince, readyCluster } from "../helpers/writer.ts";

/** Turns [consensus] failsafe on in a node's config (written by the harness with the etcd endpoints) before it starts. */
function enableFailsafe(configPath: string): void {
  const st = statSync(configPath);
  const cfg = parse(readFileSync(configPath, "utf8")) as { consensus: Record<string, unknown> };
  cfg.consensus.failsafe = true;
  writeFileSync(configPath, `${stringify(cfg)}\n`, { mode: 0o600 });
  chownSync(configPath, st.uid, st.gid);
}

requireReal("etcd failsafe", clusterSkipReason() ?? etcdSkipReason());
describe("etcd quorum loss with failsafe = true [etcd]", () => {
  let c: PgCluster | undefined;
  let bounds: Bounds;
  let etcdHosts: Host[] = [];

  beforeAll(async () => {
    useBackend("etcd");
    ensureBuilt();
    const created = await PgCluster.create({ test: "etcd-failsafe", tag: "efailsafe", nodes: 3, defaults: { extra: { api: { token: API_TOKEN } } } });
    for (const n of created.nodes) enableFailsafe(n.configPath);
    ({ c, bounds } = await readyCluster("etcd-failsafe", created));
    etcdHosts = c.lab.hosts.filter((h) => !c!.nodes.some((n) => n.host === h));
  }, 150_000);

  afterAll(async () => {
    for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {});
    await c?.destroy();
    if (c) console.log(`logs: ${c.artifacts}`);
    useBackend(null);
  }, 120_000);

  test("etcd without quorum: the primary keeps writing while both standbys confirm; a standby cut off → fenced within the bound; none lost", () => c!.diagnose(async () => {
    expect(etcdHosts).toHaveLength(3);
    let mark = 0;
    let lossAt = 0;
    let cutAt = 0;
    let healAt = 0;
    let fencedMs = 0;
    let standby = "";
    const r = await faultRound(c!, {
      label: "etcd quorum loss with failsafe", expect: "any", waitMs: 90_000,
      inject: async (p) => {
        const kept = ((await etcdLeaderIndex(etcdHosts.map((h) => ({ client: `http://${h.ip}:2379`, host: h })))) + 1) % 3;
        mark = logMark(p);
        lossAt = performance.now();
        await Promise.all(etcdHosts.filter((_, i) => i !== kept).map((h) => h.cut()));
        // Twice as long as the primary could have kept its etcd lease alone.
        await waitFor(() => performance.now() - lossAt > 2 * bounds.fenceMs, { timeoutMs: 30_000, intervalMs: 100, what: "the loss to last" });
        expect(logSince(p, mark, /fenced: no longer leading/)).toEqual([]);
        const s = c!.nodes.find((n) => n !== p)!;
        standby = s.name;
        cutAt = performance.now();
        await s.host.cut();
        await waitFor(() => logSince(p, mark, /fenced: no longer leading/).length > 0, { timeoutMs: 20_000, intervalMs: 50, what: `${p.name} to fence itself` });
        fencedMs = performance.now() - cutAt;
        // Hold past the fence: nobody may take over meanwhile (nobody can: etcd has no quorum).
        await waitFor(() => performance.now() - cutAt > bounds.fenceMs + 3000, { timeoutMs: 30_000, intervalMs: 100, what: "the cut to last" });
        healAt = performance.now();
        await Promise.all(c!.lab.hosts.map((h) => h.heal()));
      },
    });
    const oldAcks = r.writer.acked(r.old.name);
    const kept = oldAcks.filter((a) => a.end > lossAt + bounds.fenceMs && a.end < cutAt);
    const lastOld = oldAcks.filter((a) => a.end < healAt).at(-1)!;
    const resumed = r.writer.attempts.filter((a) => a.ok && a.start >= healAt).sort((a, b) => a.end - b.end)[0]!;
    console.log(`etcd failsafe: ${kept.length} writes acknowledged by ${r.old.name} between ${Math.round(bounds.fenceMs)} ms after the etcd loss (the bound without failsafe) ` +
      `and the cut of ${standby} ${(cutAt - lossAt).toFixed(0)} ms after it; fenced ${fencedMs.toFixed(0)} ms after the cut, last write acknowledged ` +
      `${(lastOld.end - cutAt).toFixed(0)} ms after it (bound ${Math.round(bounds.fenceMs)} ms); writes resumed on ${resumed.node} ${(resumed.end - healAt).toFixed(0)} ms after healing; ` +
      `${r.lost.length} acknowledged writes lost, ${r.analysis.splitBrain.length} acknowledged by two primaries`);
    expect(logSince(r.old, mark, /failsafe: the etcd lease is not being renewed; asking/).length).toBeGreaterThan(0);
    // Kept writing through the loss, up to the cut.
    expect(kept.length).toBeGreaterThan(20);
    expect(oldAcks.some((a) => a.end > cutAt - 500 && a.end < cutAt)).toBe(true);
    // The cut standby's confirmations stop: fenced at the deadline its last one gave.
    expect(fencedMs).toBeLessThanOrEqual(bounds.fenceMs);
    expect(lastOld.end - cutAt).toBeLessThanOrEqual(bounds.fenceMs);
    expect(logSince(r.old, mark, new RegExp(`fenced: no longer leading term \\d+ \\(the etcd lease could not be renewed in time; failsafe: no confirmation from ${standby}\\)`)).length).toBeGreaterThan(0);
    expect(r.writer.attempts.filter((a) => a.ok && a.end > lastOld.end && a.end < healAt).map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.lost).toEqual([]);
  }), 240_000);
});
