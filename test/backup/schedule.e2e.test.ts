// Scheduled backups ([backup] full_every_hours / incr_every_hours): three namespace hosts archiving
// to one pgBackRest repository with a short schedule (a full backup a day, an incremental one when
// the newest backup is 5 s old; the floor is 0.001 h = 3.6 s). The primary's agent starts a full backup at once and
// the incremental ones at their time (each runs where the leader chooses, a healthy standby when
// there is one); the standbys' agents start none; after a switchover the new primary
// continues the schedule from the repository (no full backup again, no two backups closer than
// the interval); `pgherd backup ls` on a standby lists them.
import { expect, test } from "bun:test";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { ClusterNode } from "../helpers/cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { waitReplicating } from "../helpers/writer.ts";
import { pgherdCli, startBackupCluster, switchoverToStandby } from "./helpers.ts";

const INCR_S = 5;

interface Listed { label: string; type: string; start: number; stop: number }

describeCluster("backup: scheduled backups, started by the primary's agent", {
  start: () => startBackupCluster("backup-schedule", "bksched", { extra: { backup: { full_every_hours: 24, incr_every_hours: INCR_S / 3600 } } }),
}, (fx) => {
  const ls = async (n: ClusterNode): Promise<Listed[]> => {
    const r = await pgherdCli(n, ["backup", "ls", "--json"], 60_000);
    if (r.code !== 0) throw new Error(`pgherd backup ls: ${r.stderr}${r.stdout}`);
    return (JSON.parse(r.stdout) as { backups: Listed[] }).backups;
  };
  /** The nodes whose agent logged that it took this backup. */
  const takenBy = (label: string) => fx.c.nodes.filter((n) => n.lines(new RegExp(`scheduled \\w+ backup ${label} done`)).length > 0).map((n) => n.name);
  /** A backup is in the repository (and `backup ls`) a moment before the agent that started it logs it done: wait for those lines. */
  const waitLogged = (bs: Listed[]) => waitFor(async () => bs.every((b) => takenBy(b.label).length > 0),
    { timeoutMs: 30_000, intervalMs: 200, what: `the agents' "done" lines for ${bs.map((b) => b.label).join(", ")}` });
  const waitBackups = async (on: ClusterNode, count: number, timeoutMs: number) => {
    let got: Listed[] = [];
    await waitFor(async () => (got = await ls(on)).length >= count, { timeoutMs, intervalMs: 1000, what: `${count} backups in pgherd backup ls on ${on.name}` });
    return got;
  };
  /** Consecutive backups are at least the interval apart (pgBackRest's times are whole seconds). */
  const expectSpaced = (bs: Listed[]) => {
    const gaps = bs.slice(1).map((b, i) => b.start - bs[i]!.stop);
    console.log(`backups: ${bs.map((b) => `${b.type} ${b.label} (${takenBy(b.label).join(",")})`).join(", ")}; gaps ${gaps.join(", ")} s (interval ${INCR_S} s)`);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(INCR_S - 1);
  };

  test("the primary takes a full backup at once and an incremental one at its time; no standby takes any", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const bs = await waitBackups(h.standbys[0]!, 2, 120_000);
    // A full one first, then incremental ones only (a third may land while `backup ls` runs).
    expect(bs.map((b) => b.type)).toEqual(["full", ...bs.slice(1).map(() => "incr")]);
    expectSpaced(bs);
    // At its time: started within a few monitoring rounds of becoming due.
    expect(bs[1]!.start - bs[0]!.stop).toBeLessThanOrEqual(INCR_S + 15);
    await waitLogged(bs);
    for (const b of bs) expect(takenBy(b.label)).toEqual([h.primary.name]);
    for (const s of h.standbys) expect(s.lines(/scheduled \w+ backup starting/)).toEqual([]);
  }), 180_000);

  test("after a switchover the new primary continues the schedule from the repository: no full backup again, none twice", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[0]!;
    await switchoverToStandby(fx.c, h.primary, target);
    const after = await waitReplicating(fx.c, 60_000);
    expect(after.primary).toBe(target);
    const before = (await ls(target)).length;
    let bs: Listed[] = [];
    await waitFor(async () => (bs = await ls(h.primary)).some((b) => takenBy(b.label).includes(target.name)),
      { timeoutMs: 90_000, intervalMs: 1000, what: `a scheduled backup by the new primary ${target.name}` });
    expect(bs.length).toBeGreaterThan(before);
    expect(bs.filter((b) => b.type === "full").length).toBe(1);
    expectSpaced(bs);
    await waitLogged(bs);
    for (const b of bs) expect(takenBy(b.label).length).toBe(1);
    expect(bs.at(-1)!.type).toBe("incr");
  }), 180_000);
});
