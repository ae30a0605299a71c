// Automatic failover when the primary's host is cut off the network, and rejoin by re-clone when
// pg_rewind cannot work. Three namespace hosts, real PostgreSQL, a writer on every node through
// its unix socket (which still reaches the isolated host: the probe the issue asks for, from the
// old primary's own side of the cut).
import { expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { describeAnalysis, faultRound, logMark, logSince, rejoinPath, secs, startFailoverCluster, type RoundResult } from "../helpers/writer.ts";

describeCluster("automatic failover: partition and re-clone", {
  start: () => startFailoverCluster("failover-partition", "fpart"),
  ready: ({ bounds }) => console.log(`bounds from the config: failover ${bounds.failoverMs} ms, fence ${bounds.fenceMs} ms`),
  beforeDestroy: async ({ c }) => { for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {}); },
}, (fx) => {
  const report = (r: RoundResult) => {
    console.log(describeAnalysis(`${r.label} (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost) + `; healthy again ${secs(r.healMs)} after restoring`);
    expect(r.analysis.recoveryMs).not.toBeNull();
    expect(r.analysis.recoveryMs!).toBeLessThanOrEqual(fx.bounds.failoverMs);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.writableAfter).toEqual([r.neu.name]);
    expect(r.healthy.primary).toBe(r.neu);
    // Asynchronous replication may lose what the old primary acknowledged alone (reported above);
    // quorum commit promises the elected node holds every acknowledged write.
    if (fx.cfg.durability !== "async") expect(r.lost).toEqual([]);
  };

  test("network cut of the primary: it stops acknowledging before the new primary accepts any; after heal it rejoins by pg_rewind", () => fx.c.diagnose(async () => {
    let mark = 0;
    const r = await faultRound(fx.c, {
      label: "network cut", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        await p.host.cut();
      },
      restore: (old) => old.host.heal(),
    });
    report(r);
    const a = r.analysis;
    const fence = a.lastOldAck ? a.lastOldAck.end - r.at : null;
    console.log(`network cut: the isolated old primary acknowledged its last write ${secs(fence)} after the cut (bound ${fx.bounds.fenceMs} ms), ` +
      `${Math.round(a.separationMs ?? NaN)} ms before the new primary's first was sent`);
    expect(a.separationMs!).toBeGreaterThan(0);
    expect(fence!).toBeLessThanOrEqual(fx.bounds.fenceMs);
    // It fenced itself, and said so, before anything else could be elected.
    expect(logSince(r.old, mark, /fencing PostgreSQL|fenced: no longer leading/).length).toBeGreaterThan(0);
    // One pg_rewind that rewound it (a no-op rewind first would leave it stuck on the old timeline).
    const p = rejoinPath(r.old, mark);
    console.log(`network cut: rejoin of ${r.old.name}:\n  ${p.lines.join("\n  ")}`);
    expect(p.decisions).toEqual(["rewind"]);
    expect(p.rewinds).toEqual(["rewound"]);
  }), 240_000);

  test("rejoin by re-clone: the crashed old primary's pg_wal is gone, pg_rewind fails, a fresh clone is swapped in", () => fx.c.diagnose(async () => {
    let mark = 0;
    const r = await faultRound(fx.c, {
      label: "host crash, WAL removed", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        await p.host.killAll("SIGKILL");
      },
      restore: async (old) => {
        const wal = join(old.dataDir, "pg_wal");
        for (const f of readdirSync(wal)) rmSync(join(wal, f), { recursive: true, force: true });
        await old.start();
      },
    });
    report(r);
    const rejoin = logSince(r.old, mark, /decision: |pg_rewind .*failed|taking a fresh clone|clone complete|rebuilt from a fresh clone/);
    console.log(`re-clone: rejoin of ${r.old.name}:\n  ${rejoin.map((l) => l.slice(0, 220)).join("\n  ")}`);
    expect(rejoin.some((l) => /pg_rewind .*failed/.test(l))).toBe(true);
    expect(rejoin.some((l) => /taking a fresh clone/.test(l))).toBe(true);
    expect(rejoin.some((l) => /clone complete/.test(l))).toBe(true);
    // The clone replaced the data directory only once complete; the broken one is kept aside.
    const kept = logSince(r.old, mark, /previous data directory kept at /).map((l) => l.replace(/^.*kept at /, "").trim());
    expect(kept).toHaveLength(1);
    expect(existsSync(join(kept[0]!, "PG_VERSION"))).toBe(true);
  }), 240_000);
});
