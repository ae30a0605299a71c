// The member slots a new primary needs, made before its promotion (src/agent/pg/slots.ts
// prepareForPromotion): three namespace hosts, real PostgreSQL. After a planned switchover no
// member's walreceiver was refused by the target for a missing slot (before, each one was, every
// wal_retrieve_retry_interval until the first round after the promotion made the slots, and the new
// primary's first synchronous commit waited for that); the old primary drops the member slots it
// kept through its clean stop; and a standby holding pgherd_* slots of a promotion that did not
// follow drops them once another node runs the primary. Last, a member down while the primary
// wrote past max_slot_wal_keep_size: its slot, invalidated, is made again, and the member, whose WAL
// is gone (no archive here), is rebuilt from a fresh clone and streams.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { logMark, logSince, pgherd, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

/** The server log's lines (every file of the log collector, and pg_ctl's own) that match `re`. */
function serverLines(n: ClusterNode, re: RegExp): string[] {
  const dir = `${n.dataDir}.log`;
  const files = [...(existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : []), n.pgLogFile].filter((f) => existsSync(f));
  return files.flatMap((f) => readFileSync(f, "utf8").split("\n")).filter((l) => re.test(l));
}

const REFUSED = /replication slot "pgherd_[a-z0-9_]+" does not exist/;

describeCluster("switchover: the target holds the members' slots before its promotion", {
  start: () => startFailoverCluster("switchover-slots", "swsl"),
}, (fx) => {
  test("after a switchover no member was refused by the new primary for a missing slot", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[0]!;
    const refusedBefore = serverLines(target, REFUSED).length;
    const mark = logMark(target);
    const r = await pgherd(h.primary, ["switchover", "--to", target.name]);
    if (r.code !== 0) throw new Error(`pgherd switchover --to ${target.name}: exit ${r.code}: ${r.text.slice(0, 300)}`);
    console.log(`switchover ${h.primary.name} -> ${target.name}: ${r.text}`);
    const after = await waitReplicating(fx.c, 30_000);
    expect(after.primary).toBe(target);
    console.log(logSince(target, mark, /before the promotion|promoted|created replication slot/).join("\n"));
    const refused = serverLines(target, REFUSED).slice(refusedBefore);
    expect(refused).toEqual([]);
    // The old primary follows with the member slots it kept through its clean stop: dropped, or
    // they would hold WAL on it for good.
    const slotsOn = async (n: ClusterNode) => (await n.query("select slot_name from pg_replication_slots where slot_name like 'pgherd\\_%'")).map((x) => x.slot_name);
    await waitFor(async () => (await slotsOn(h.primary)).length === 0,
      { timeoutMs: 20_000, intervalMs: 200, what: `the old primary ${h.primary.name} to drop its member slots` }).catch(async (e: Error) => {
      throw new Error(`${e.message}: still ${JSON.stringify(await slotsOn(h.primary))}`);
    });
  }), 120_000);

  test("a standby drops pgherd slots of a promotion that did not follow", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const s = h.standbys[0]!;
    // What prepareForPromotion leaves behind when this standby is not promoted after all (here as
    // the agent would find it after a restart).
    await s.query("select pg_create_physical_replication_slot('pgherd_left_behind', true)");
    await s.stopAgent();
    await s.start();
    await waitFor(async () => (await s.query("select 1 from pg_replication_slots where slot_name = 'pgherd_left_behind'")).length === 0,
      { timeoutMs: 30_000, intervalMs: 200, what: `${s.name} to drop the left-behind slot` });
    // The primary keeps its member slots.
    const kept = await h.primary.query("select slot_name from pg_replication_slots where slot_name like 'pgherd\\_%' order by 1");
    expect(kept.length).toBe(2);
  }), 120_000);

  test("a member down while the primary wrote past max_slot_wal_keep_size: its invalidated slot is made again, and the member, its WAL gone, is rebuilt from a clone", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const p = h.primary;
    const s = h.standbys[0]!;
    const slot = `pgherd_${s.nodeId()}`;
    const [pos] = await s.query("select pg_last_wal_replay_lsn()::text as lsn");
    const need = String((await p.query(`select pg_walfile_name('${String(pos!.lsn)}') as f`))[0]!.f);
    const pMark = logMark(p);
    const sMark = logMark(s);
    await s.stopAgent();
    expect((await s.pgCtl("stop", "-m", "fast", "-w")).code).toBe(0);
    // The operator's bound (ALTER SYSTEM: not a key pgherd manages here): ten segments, which the
    // other standby, streaming, never lags by.
    await p.query("alter system set max_slot_wal_keep_size = '160MB'");
    await p.query("select pg_reload_conf()");
    try {
      let rounds = 0;
      await waitFor(async () => {
        rounds++;
        await p.query(`insert into failover_w (id, node) select 2000000 + g + ${rounds * 1000}, 'filler' from generate_series(1, 100) g`);
        await p.query("select pg_switch_wal()");
        await p.query("checkpoint");
        return (await p.query(`select 1 from pg_ls_waldir() where name = '${need}'`)).length === 0 && logSince(p, pMark, /was invalidated by PostgreSQL/).length > 0;
      }, { timeoutMs: 60_000, intervalMs: 300, what: `the primary to remove ${need} and make ${slot} again` });
      console.log(`after ${rounds} segment switches: ${logSince(p, pMark, /was invalidated by PostgreSQL|created replication slot/).join("\n")}`);
    } finally {
      await p.query("alter system reset max_slot_wal_keep_size");
      await p.query("select pg_reload_conf()");
    }
    await waitFor(async () => (await p.query(`select wal_status from pg_replication_slots where slot_name = '${slot}'`))[0]?.wal_status === "reserved",
      { timeoutMs: 10_000, intervalMs: 200, what: `${slot} made again, reserving WAL` });
    // Only the down member's slot was invalidated.
    expect(logSince(p, pMark, /was invalidated by PostgreSQL/).every((l) => l.includes(slot))).toBe(true);
    await s.start();
    const after = await waitReplicating(fx.c, 120_000);
    expect(after.primary).toBe(p);
    const rebuilt = logSince(s, sMark, /could not stream although its history matches|clone complete|rebuilt from a fresh clone/);
    console.log(`${s.name}: ${rebuilt.join("\n")}`);
    expect(rebuilt.some((l) => /could not stream although its history matches/.test(l))).toBe(true);
    expect(rebuilt.some((l) => /clone complete/.test(l))).toBe(true);
  }), 240_000);
});
