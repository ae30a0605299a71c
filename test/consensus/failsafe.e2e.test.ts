// [consensus] failsafe = true under a three-node PostgreSQL cluster with a writer on every node, on
// the same etcd setup as quorum-loss.e2e.test.ts: two of the three etcd member hosts (etcd's
// leader and a follower) are cut off. The primary keeps its lease while both standbys confirm over
// the mesh, and writes go on being acknowledged well past the point where it would have fenced
// without failsafe; etcd comes back and renewals take over again, with no fence. Then etcd loses its
// quorum again, and once the primary runs on confirmations alone one standby's host is cut off too:
// its confirmations stop, and the primary fences within one usable lease of the cut. Once etcd and
// the standby are back, writes resume on the same primary (its etcd lease survived the loss); 0
// acknowledged writes lost.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { parse, stringify } from "smol-toml";
import { ensureBuilt } from "../../scripts/build.ts";
import { useBackend } from "../helpers/backend.ts";
import { type ClusterNode, clusterSkipReason, PgCluster } from "../helpers/cluster.ts";
import { etcdLeaderIndex, etcdSkipReason } from "../helpers/etcd.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { API_TOKEN, type Bounds, faultRound, logMark, logSince, readyCluster } from "../helpers/writer.ts";

/**
 * The etcd lease TTL of this file: the smallest the config check accepts with the default poll,
 * request timeout, drift and fence (4 s; the default is 5). Every hold below is a multiple of the
 * lease it gives, so the same sequence runs ~5 s faster.
 */
const TTL_S = 4;

/** Turns [consensus] failsafe on in a node's config (written by the harness with the etcd endpoints) before it starts. */
function enableFailsafe(configPath: string): void {
  const st = statSync(configPath);
  const cfg = parse(readFileSync(configPath, "utf8")) as { consensus: Record<string, unknown> };
  cfg.consensus.failsafe = true;
  cfg.consensus.ttl_s = TTL_S;
  writeFileSync(configPath, `${stringify(cfg)}\n`, { mode: 0o600 });
  chownSync(configPath, st.uid, st.gid);
}

const FENCED = /fenced: no longer leading/;

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
    let cfg;
    ({ c, bounds, cfg } = await readyCluster("etcd-failsafe", created));
    expect(cfg.consensus.ttl_s).toBe(TTL_S);
    console.log(`consensus.ttl_s ${cfg.consensus.ttl_s}: fence bound ${Math.round(bounds.fenceMs)} ms`);
    etcdHosts = c.lab.hosts.filter((h) => !c!.nodes.some((n) => n.host === h));
  }, 150_000);

  afterAll(async () => {
    for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {});
    await c?.destroy();
    if (c) console.log(`logs: ${c.artifacts}`);
    useBackend(null);
  }, 120_000);

  /** Cuts etcd's leader and one follower (as quorum-loss.e2e.test.ts does); returns when. */
  async function loseEtcdQuorum(): Promise<number> {
    const kept = ((await etcdLeaderIndex(etcdHosts.map((h) => ({ client: `http://${h.ip}:2379`, host: h })))) + 1) % 3;
    const at = performance.now();
    await Promise.all(etcdHosts.filter((_, i) => i !== kept).map((h) => h.cut()));
    return at;
  }

  const hold = (from: number, ms: number, what: string) => waitFor(() => performance.now() - from > ms, { timeoutMs: ms + 10_000, intervalMs: 100, what });

  test("etcd without quorum: the primary keeps writing while both standbys confirm, also across etcd's return; a standby cut off → fenced within the bound; none lost", () => c!.diagnose(async () => {
    expect(etcdHosts).toHaveLength(3);
    let mark = 0;
    let lossAt = 0;
    let backAt = 0;
    let cutAt = 0;
    let healAt = 0;
    let fencedMs = 0;
    let standby: ClusterNode | undefined;
    const r = await faultRound(c!, {
      label: "etcd quorum loss with failsafe", expect: "any", waitMs: 90_000,
      inject: async (p) => {
        mark = logMark(p);
        // 1. Twice as long as the primary could have kept its etcd lease alone, then etcd is back.
        lossAt = await loseEtcdQuorum();
        await hold(lossAt, 2 * bounds.fenceMs, "the first loss to last");
        backAt = performance.now();
        await Promise.all(etcdHosts.map((h) => h.heal()));
        await waitFor(() => logSince(p, mark, /failsafe: the etcd lease is renewed again/).length > 0, { timeoutMs: 20_000, intervalMs: 50, what: `${p.name} to renew through etcd again` });
        expect(logSince(p, mark, FENCED)).toEqual([]);
        // 2. Again; once the primary runs on confirmations alone, a standby's host is cut off too.
        const again = await loseEtcdQuorum();
        await hold(again, bounds.fenceMs + 1000, "the second loss to outlast the etcd lease");
        expect(logSince(p, mark, FENCED)).toEqual([]);
        standby = c!.nodes.find((n) => n !== p)!;
        cutAt = performance.now();
        await standby.host.cut();
        await waitFor(() => logSince(p, mark, FENCED).length > 0, { timeoutMs: 20_000, intervalMs: 50, what: `${p.name} to fence itself` });
        fencedMs = performance.now() - cutAt;
        // Hold past the fence: nobody may take over meanwhile (nobody can: etcd has no quorum).
        await hold(cutAt, bounds.fenceMs + 3000, "the cut to last");
        healAt = performance.now();
        await Promise.all(c!.lab.hosts.map((h) => h.heal()));
      },
    });
    const oldAcks = r.writer.acked(r.old.name);
    const kept = oldAcks.filter((a) => a.end > lossAt + bounds.fenceMs && a.end < backAt);
    const keptAgain = oldAcks.filter((a) => a.end > cutAt - 1000 && a.end < cutAt);
    const lastOld = oldAcks.filter((a) => a.end < healAt).at(-1)!;
    const resumed = r.writer.attempts.filter((a) => a.ok && a.start >= healAt).sort((a, b) => a.end - b.end)[0]!;
    const failed = r.writer.attempts.filter((a) => a.node === r.old.name && !a.ok && a.start > lossAt && a.end < cutAt);
    console.log(`etcd failsafe: ${kept.length} writes acknowledged by ${r.old.name} between ${Math.round(bounds.fenceMs)} ms after the etcd loss (the bound without failsafe) ` +
      `and etcd's return ${(backAt - lossAt).toFixed(0)} ms after it, ${failed.length} failed; second loss: ${standby!.name} cut, fenced ${fencedMs.toFixed(0)} ms after the cut, ` +
      `last write acknowledged ${(lastOld.end - cutAt).toFixed(0)} ms after it (bound ${Math.round(bounds.fenceMs)} ms); writes resumed on ${resumed.node} ` +
      `${(resumed.end - healAt).toFixed(0)} ms after healing; ${r.lost.length} acknowledged writes lost, ${r.analysis.splitBrain.length} acknowledged by two primaries`);
    expect(logSince(r.old, mark, /failsafe: the etcd lease is not being renewed; asking/).length).toBeGreaterThanOrEqual(2);
    // Kept writing through the first loss and etcd's return, and through the second up to the cut.
    expect(kept.length).toBeGreaterThan(20);
    expect(failed.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(keptAgain.length).toBeGreaterThan(0);
    // The cut standby's confirmations stop: fenced at the deadline its last one gave.
    expect(fencedMs).toBeLessThanOrEqual(bounds.fenceMs);
    expect(lastOld.end - cutAt).toBeLessThanOrEqual(bounds.fenceMs);
    expect(logSince(r.old, mark, new RegExp(`fenced: no longer leading term \\d+ \\(the etcd lease could not be renewed in time; failsafe: no confirmation from ${standby!.name}\\)`)).length).toBe(1);
    expect(r.writer.attempts.filter((a) => a.ok && a.end > lastOld.end && a.end < healAt).map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.lost).toEqual([]);
  }), 240_000);
});
