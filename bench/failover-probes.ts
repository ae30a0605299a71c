// The two link faults of bench/failover.ts that are not a write outage: a flapping leader link
// (how soon a new leader holds a lease) and a standby cut off and healed (how soon it streams
// again). Each returns seconds, or throws.
import { lineTime, type ClusterNode, type PgCluster } from "../test/helpers/cluster.ts";
import { waitReplicating } from "../test/helpers/writer.ts";

const LEASE_LINE = /leading term (\d+) with a valid lease/;

function lastTerm(n: ClusterNode): number {
  const ls = n.lines(LEASE_LINE);
  return ls.length ? Number(LEASE_LINE.exec(ls.at(-1)!)![1]) : 0;
}

/** Cut/heal the primary's link every `periodMs` until a node leads a newer term; seconds from the first cut. */
export async function flappingLeader(c: PgCluster, periodMs = 2000, giveUpMs = 30_000): Promise<number> {
  const h = await waitReplicating(c, 60_000);
  const old = h.primary;
  const term0 = Math.max(...c.nodes.map(lastTerm));
  const marks = new Map(c.nodes.map((n) => [n.name, n.mark()] as const));
  const t0 = Date.now();
  const won = (): number | null => {
    for (const n of c.nodes) {
      for (const l of n.lines(LEASE_LINE, marks.get(n.name)!)) {
        if (Number(LEASE_LINE.exec(l)![1]) > term0) return lineTime(l).getTime();
      }
    }
    return null;
  };
  let at: number | null = null;
  try {
    for (let cut = true; at === null && Date.now() - t0 < giveUpMs; cut = !cut) {
      await (cut ? old.host.cut() : old.host.heal());
      const end = Date.now() + periodMs;
      while (at === null && Date.now() < end) {
        await Bun.sleep(20);
        at = won();
      }
    }
  } finally {
    await old.host.heal();
  }
  await waitReplicating(c, 120_000);
  if (at === null) throw new Error(`no new leader within ${giveUpMs} ms of flapping ${old.name}'s link`);
  return (at - t0) / 1000;
}

/** Cut a standby off for `cutMs`, heal, and time until a row written on the primary replays there. */
export async function standbyHeal(c: PgCluster, cutMs = 8000, table = "failover_w"): Promise<number> {
  const h = await waitReplicating(c, 60_000, table);
  const s = h.standbys[0]!;
  await s.host.cut();
  try {
    await Bun.sleep(cutMs);
  } finally {
    await s.host.heal();
  }
  const healed = performance.now();
  const id = 900_000_000 + Math.floor(Math.random() * 1e8);
  const late = () => performance.now() - healed > 60_000;
  for (let written = false; ; await Bun.sleep(20)) {
    if (late()) throw new Error(`${s.name} did not replay a row written after the heal within 60 s`);
    try {
      if (!written) await h.primary.query(`insert into ${table} (id, node) values (${id}, 'heal')`, 5000);
      written = true;
      if ((await s.query(`select 1 from ${table} where id = ${id}`, 1000)).length > 0) return (performance.now() - healed) / 1000;
    } catch {
      // not yet: the standby (or the primary's synchronous commit) is still coming back
    }
  }
}
