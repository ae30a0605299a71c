// etcd loses quorum under a three-node PostgreSQL cluster with a writer on every node: two of the
// three etcd member hosts (the etcd leader and a follower) are cut off the network. The primary's
// agent can no longer renew its lease: it must fence by its local deadline (before etcd could ever let another node take the key),
// nobody acknowledges a write while etcd is without quorum, and once the members are back writes
// resume with no acknowledged write lost. This is the behaviour without failsafe (the default);
// failsafe.e2e.test.ts runs the same loss with `[consensus] failsafe = true`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ensureBuilt } from "../../scripts/build.ts";
import { useBackend } from "../helpers/backend.ts";
import { clusterSkipReason, type PgCluster } from "../helpers/cluster.ts";
import { etcdLeaderIndex, etcdSkipReason } from "../helpers/etcd.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { type Bounds, faultRound, logMark, logSince, startFailoverCluster } from "../helpers/writer.ts";

requireReal("etcd quorum loss", clusterSkipReason() ?? etcdSkipReason());
describe("etcd quorum loss under a PostgreSQL cluster [etcd]", () => {
  let c: PgCluster | undefined;
  let bounds: Bounds;
  let etcdHosts: Host[] = [];

  beforeAll(async () => {
    useBackend("etcd");
    ensureBuilt();
    ({ c, bounds } = await startFailoverCluster("etcd-quorum-loss", "equorum"));
    etcdHosts = c.lab.hosts.filter((h) => !c!.nodes.some((n) => n.host === h));
  }, 150_000);

  afterAll(async () => {
    for (const h of etcdHosts) await h.heal().catch(() => {});
    await c?.destroy();
    if (c) console.log(`logs: ${c.artifacts}`);
    useBackend(null);
  }, 120_000);

  test("two of three etcd members cut off: the primary fences by its deadline, no write is acknowledged until etcd is back, none lost", () => c!.diagnose(async () => {
    expect(etcdHosts).toHaveLength(3);
    let mark = 0;
    let healAt = 0;
    let fencedMs = 0;
    let cut: Host[] = [];
    const r = await faultRound(c!, {
      label: "etcd quorum loss", expect: "any", waitMs: 90_000,
      inject: async (p) => {
        // The etcd leader is among the cut: a leader left alone would answer renewals by itself until
        // its check-quorum notices (test/consensus/etcd-backend.e2e.test.ts measures that case).
        const kept = ((await etcdLeaderIndex(etcdHosts.map((h) => ({ client: `http://${h.ip}:2379`, host: h })))) + 1) % 3;
        cut = etcdHosts.filter((_, i) => i !== kept);
        mark = logMark(p);
        const t0 = performance.now();
        await Promise.all(cut.map((h) => h.cut()));
        await waitFor(() => logSince(p, mark, /fenced: no longer leading/).length > 0, { timeoutMs: 20_000, intervalMs: 50, what: `${p.name} to fence itself` });
        fencedMs = performance.now() - t0;
        // Hold the loss for a full TTL past the fence: nobody may take over meanwhile.
        await waitFor(() => performance.now() - t0 > bounds.fenceMs + 3000, { timeoutMs: 30_000, intervalMs: 100, what: "the loss to last" });
        healAt = performance.now();
        await Promise.all(cut.map((h) => h.heal()));
      },
    });
    console.log(`${r.label}: fenced ${fencedMs.toFixed(0)} ms after the cut, ${r.lost.length} acknowledged writes lost, ${r.analysis.splitBrain.length} acknowledged by two primaries`);
    const lastOld = r.writer.acked(r.old.name).filter((a) => a.end < healAt).at(-1)!;
    const resumed = r.writer.attempts.filter((a) => a.ok && a.start >= healAt).sort((a, b) => a.end - b.end)[0]!;
    console.log(`etcd quorum loss: last write acknowledged by ${r.old.name} ${(lastOld.end - r.at).toFixed(0)} ms after the cut (bound ${Math.round(bounds.fenceMs)} ms); ` +
      `writes resumed on ${resumed.node} ${(resumed.end - healAt).toFixed(0)} ms after etcd was healed`);
    expect(lastOld.end - r.at).toBeLessThanOrEqual(bounds.fenceMs);
    // The agent fenced at its own deadline (the watchdog at the same deadline is the second line, not the first).
    expect(fencedMs).toBeLessThanOrEqual(bounds.fenceMs);
    expect(logSince(r.old, mark, /fenced: no longer leading term \d+ \(the etcd lease could not be renewed in time\)/).length).toBeGreaterThan(0);
    expect(r.writer.attempts.filter((a) => a.ok && a.end > lastOld.end && a.end < healAt).map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.lost).toEqual([]);
  }), 240_000);
});
