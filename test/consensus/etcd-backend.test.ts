// The etcd backend (src/consensus/etcd/backend.ts) on an in-memory etcd (test/helpers/fake-etcd.ts):
// a node takes back the leader key of its previous run and leads; what it then reports as stored
// follows what etcd holds, also while a write that got no answer may still apply; its member report
// is written again over a late write of an older one.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publishGuard, type DriverHooks } from "../../src/agent/election-driver.ts";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { OutcomeUnknown, type TxnResult } from "../../src/consensus/etcd/client.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { blockInForce } from "../../src/core/durability.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { FakeEtcd } from "../helpers/fake-etcd.ts";
import { waitFor } from "../helpers/proc.ts";

const SELF = "aaaaaaaaaaaaaaaa";
const keys = clusterKeys("/pgherd", "c1");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A lone voter whose leader key (of its previous run's lease, recorded in its state directory) etcd still holds, with a blocking guard. */
async function leading(o: { fenceStops?: boolean; client?: (c: ReturnType<FakeEtcd["client"]>) => void; clock?: () => number } = {}) {
  const etcd = new FakeEtcd();
  const { id } = await etcd.leaseGrant(5);
  await etcd.txn([], [
    { put: { key: keys.membership, value: JSON.stringify({ term: 5, index: 1, voters: [SELF] }) } },
    { put: { key: keys.guard, value: JSON.stringify({ term: 5, seq: 3, block: true, holder: SELF, floor: null }) } },
    { put: { key: keys.leader, value: SELF, lease: id } },
  ]);
  const events: string[] = [];
  const hooks: DriverHooks = {
    send() {}, leaseHeld: () => void events.push("held"), leaseLost: async () => (events.push("lost"), o.fenceStops ?? true), leadershipChanged() {}, fatal(m) { throw new Error(m); },
  };
  const dir = mkdtempSync(join(tmpdir(), "pgherd-etcd-backend-"));
  dirs.push(dir);
  const store = new ElectionStore(dir);
  store.saveEtcdKey(etcd.kv.get(keys.leader)!.createRevision); // the previous run took it
  const client = etcd.client();
  o.client?.(client);
  const log = memoryLogger();
  const c = new EtcdConsensus({
    client, keys, self: { id: SELF, name: "n1", role: "database", canLead: true, priority: 100 },
    ttlS: 5, pollMs: 20, maxDrift: 0.02, fenceMs: 400, deferMs: 1000, store, hooks, log, clock: o.clock,
  });
  c.start();
  await waitFor(() => c.status().role === "leader", { timeoutMs: 3000, what: "the key taken back" });
  return { etcd, c, events, log };
}

test("publishGuard: a guard write etcd refuses is not reported stored; one it applies is", async () => {
  const { etcd, c } = await leading();
  const floor = { timeline: 1, lsn: "0/3000000" };
  etcd.refuse = (ops) => ops.some((o) => "put" in o && o.put.key === keys.guard);
  expect(await publishGuard(c, () => c.setGuard(false, floor), 300)).toBe(false);
  expect(c.status().guard?.block).toBe(true); // the block is still up in etcd
  etcd.refuse = () => false;
  expect(await publishGuard(c, () => c.setGuard(false, floor), 300)).toBe(true);
  expect(JSON.parse(etcd.value(keys.guard)!)).toMatchObject({ block: false, floor });
  c.stop();
});

test("a lease past its deadline is none before the timer that fences runs (a stalled event loop runs other timers first; review)", async () => {
  let frozen: number | null = null;
  const { c } = await leading({ clock: () => frozen ?? performance.now() });
  const until = c.lease()!.until;
  frozen = until - 1; // only the clock moves: no timer runs between these lines
  expect(c.lease()?.until).toBe(until);
  frozen = until;
  expect(c.lease()).toBeNull();
  c.stop();
});

test("a read that no longer shows this node's key fences without moving the deadline first", async () => {
  const { etcd, c, events } = await leading();
  const range = etcd.range.bind(etcd);
  etcd.range = async (key, opts) => {
    const r = await range(key, opts);
    if (opts?.prefix && !r.kvs.some((kv) => kv.key === keys.leader)) events.push("read: key gone");
    return r;
  };
  await waitFor(() => events.filter((e) => e === "held").length >= 3, { timeoutMs: 2000, what: "renewals" });
  await etcd.txn([], [{ del: { key: keys.leader } }]); // deleted by hand: the lease itself stays renewable
  await waitFor(() => events.includes("lost"), { timeoutMs: 2000, what: "the fence" });
  const after = events.slice(events.indexOf("read: key gone"));
  expect(after.slice(0, after.indexOf("lost"))).not.toContain("held");
  expect(c.status().role).not.toBe("leader");
  c.stop();
});

test("a resign whose fence could not stop PostgreSQL keeps the leader key until the watchdog has (its lease deadline and budget; review)", async () => {
  const { etcd, c, events } = await leading({ fenceStops: false });
  const until = c.lease()!.until;
  const resigned = c.resign("a broken primary");
  await waitFor(() => events.includes("lost"), { timeoutMs: 3000, what: "the fence" });
  expect(etcd.value(keys.leader)).toBe(SELF); // released now, another node would take it while the old primary writes
  await resigned;
  expect(performance.now()).toBeGreaterThanOrEqual(until + 400);
  expect(etcd.value(keys.leader)).toBeUndefined();
  c.stop();
}, 15_000);

test("a guard write whose read after it failed counts no guard as committed until a poll reads etcd again (review: a lift stored, its answer lost)", async () => {
  let failNextRead = false;
  const { etcd, c } = await leading({
    client: (cl) => {
      const txn = cl.txn.bind(cl);
      const range = cl.range.bind(cl);
      cl.txn = async (cmp, ops, fail) => {
        const r = await txn(cmp, ops, fail);
        if (ops.some((op) => "put" in op && op.put.key === keys.guard)) failNextRead = true;
        return r;
      };
      cl.range = async (key, opts) => {
        if (failNextRead) {
          failNextRead = false;
          throw new Error("no answer within 1000 ms");
        }
        return range(key, opts);
      };
    },
  });
  expect(c.status().guardCommitted).toBe(3); // the block this node stored, committed
  await c.setGuard(false, { timeline: 1, lsn: "0/3000000" }); // the lift: stored by etcd, the read after it lost
  expect(JSON.parse(etcd.value(keys.guard)!)).toMatchObject({ block: false });
  // The snapshot still shows the block: it must not count as committed (a primary would degrade behind it).
  expect(c.status().guard?.block).toBe(true);
  expect(c.status().guardCommitted).toBe(0);
  await waitFor(() => c.status().guard?.block === false && c.status().guardCommitted > 0, { timeoutMs: 3000, what: "a poll to read the lift" });
  c.stop();
});

/**
 * A leader (block stored, seq 3) whose first guard write gets no answer and is kept to apply later
 * (`late`: queued behind a member's slow disk); while `dropSettles`, its writes of the guard etcd holds,
 * unchanged, get no answer either and never apply; with `lateFirst`, the late one applies just before
 * the next guard write.
 */
async function lateGuardWrite() {
  const w = { late: null as (() => Promise<TxnResult>) | null, sent: false, dropSettles: true, lateFirst: false, reads: 0 };
  const f = await leading({
    client: (cl) => {
      const txn = cl.txn.bind(cl);
      const range = cl.range.bind(cl);
      cl.range = (key, opts) => (w.reads++, range(key, opts));
      cl.txn = async (cmp, ops, fail) => {
        const put = ops.flatMap((op) => ("put" in op && op.put.key === keys.guard ? [op.put] : []))[0];
        if (put && !w.sent) {
          w.sent = true;
          w.late = () => txn(cmp, ops, fail);
          throw new OutcomeUnknown("http://etcd-a:2379/v3/kv/txn: no answer within 1000 ms");
        }
        const held = (cl as unknown as FakeEtcd).value(keys.guard);
        if (put && w.dropSettles && held && Bun.deepEquals(JSON.parse(put.value), JSON.parse(held))) throw new OutcomeUnknown("no answer within 1000 ms");
        if (put && w.lateFirst && w.late) {
          w.lateFirst = false;
          await w.late();
        }
        return txn(cmp, ops, fail);
      };
    },
  });
  return { ...f, w };
}

const inForce = (c: EtcdConsensus) => blockInForce({ guard: c.status().guard, committed: c.status().guardCommitted }, SELF, false);

test("a lift that got no answer: the block counts as stored by nobody over any number of polls, until a write of the guard read again is stored; the lift is then refused when it reaches etcd (review)", async () => {
  const { etcd, c, w } = await lateGuardWrite();
  expect(inForce(c)).toBe(true);
  expect(await c.setGuard(false, { timeline: 1, lsn: "0/3000000" })).toBe(false); // no answer
  const reads = w.reads;
  await waitFor(() => w.reads >= reads + 10, { timeoutMs: 3000, what: "polls" });
  // Every poll still shows the block, and the lift may still apply: a primary must not degrade behind it.
  expect(c.status().guard?.block).toBe(true);
  expect(c.status().guardCommitted).toBe(0);
  expect(inForce(c)).toBe(false);
  w.dropSettles = false;
  await waitFor(() => c.status().guardCommitted === 3, { timeoutMs: 3000, what: "the block written again" });
  expect(inForce(c)).toBe(true);
  expect((await w.late!()).succeeded).toBe(false);
  expect(JSON.parse(etcd.value(keys.guard)!)).toMatchObject({ seq: 3, block: true });
  c.stop();
});

test("a lift that got no answer and applies late counts once a read shows it", async () => {
  const { c, w } = await lateGuardWrite();
  await c.setGuard(false, { timeline: 1, lsn: "0/3000000" });
  const reads = w.reads;
  await waitFor(() => w.reads >= reads + 5, { timeoutMs: 3000, what: "polls" });
  expect(c.status().guardCommitted).toBe(0);
  expect((await w.late!()).succeeded).toBe(true);
  await waitFor(() => c.status().guard?.block === false && c.status().guardCommitted === 4, { timeoutMs: 3000, what: "a poll to read the lift" });
  c.stop();
});

test("publishGuard: false when etcd refused the write because an earlier one without an answer applied first, with the same seq (review)", async () => {
  const { etcd, c, w } = await lateGuardWrite();
  await c.setGuard(false, { timeline: 1, lsn: "0/2000000" }); // no answer
  const reads = w.reads;
  await waitFor(() => w.reads >= reads + 5, { timeoutMs: 3000, what: "polls" });
  w.lateFirst = true;
  expect(await publishGuard(c, () => c.setGuard(false, { timeline: 1, lsn: "0/9000000" }), 300)).toBe(false);
  expect(JSON.parse(etcd.value(keys.guard)!)).toMatchObject({ seq: 4, floor: { timeline: 1, lsn: "0/2000000" } });
  c.stop();
});

test("a member report that lands after a later one (its write got no answer) is written again: a detached node's final position is not lost (review)", async () => {
  const L = "bbbbbbbbbbbbbbbb", C = "cccccccccccccccc";
  const etcd = new FakeEtcd();
  const lease = await etcd.leaseGrant(5);
  await etcd.txn([], [
    { put: { key: keys.membership, value: JSON.stringify({ term: 5, index: 1, voters: [L, SELF, C] }) } },
    { put: { key: keys.leader, value: L, lease: lease.id } },
    { put: { key: keys.lastLeader, value: L } },
  ]);
  const hooks: DriverHooks = { send() {}, leaseHeld() {}, leaseLost: async () => true, leadershipChanged() {}, fatal(m) { throw new Error(m); }, detach: async () => ({ ok: true, position: null }) };
  const dir = mkdtempSync(join(tmpdir(), "pgherd-etcd-backend-"));
  dirs.push(dir);
  const client = etcd.client();
  const txn = client.txn.bind(client);
  let late: (() => Promise<TxnResult>) | null = null;
  let arm = false;
  client.txn = async (cmp, ops, fail) => {
    if (arm && !late && ops.some((op) => "put" in op && op.put.key === keys.member(SELF))) {
      late = () => txn(cmp, ops, fail);
      throw new OutcomeUnknown("no answer within 1000 ms");
    }
    return txn(cmp, ops, fail);
  };
  const c = new EtcdConsensus({
    client, keys, self: { id: SELF, name: "n1", role: "database", canLead: false, priority: 0 },
    ttlS: 5, pollMs: 20, maxDrift: 0.02, fenceMs: 400, deferMs: 50, store: new ElectionStore(dir), hooks, log: memoryLogger(),
  });
  const report = () => JSON.parse(etcd.value(keys.member(SELF)) ?? "null") as { detachedFor: number | null } | null;
  await c.setPosition({ timeline: 1, lsn: "0/1000000" });
  c.start();
  await waitFor(() => report(), { timeoutMs: 2000, what: "the first report" });
  arm = true;
  await c.setPosition({ timeline: 1, lsn: "0/2000000" }); // streaming: this report gets no answer
  await waitFor(() => late, { timeoutMs: 2000, what: "the report without an answer" });
  await txn([], [{ del: { key: keys.leader } }]); // the leader's key goes: this node detaches and publishes its final position
  await waitFor(() => report()?.detachedFor !== null, { timeoutMs: 2000, what: "the final position" });
  await late!(); // the older report lands now, over the final one
  expect(report()?.detachedFor).toBeNull();
  await waitFor(() => report()?.detachedFor !== null, { timeoutMs: 2000, what: "the final position written again" });
  c.stop();
});

test("a read that no longer shows this node's key fences also when the renewal sent with it failed (review: it led on until its deadline while another node could take the key)", async () => {
  const { etcd, c, events } = await leading();
  await waitFor(() => events.filter((e) => e === "held").length >= 3, { timeoutMs: 2000, what: "renewals" });
  const until = c.lease()!.until;
  // Renewals fail from now on (a keepalive timing out on every member) while reads still answer.
  etcd.leaseKeepAlive = async () => {
    throw new OutcomeUnknown("/v3/lease/keepalive: no answer within 1000 ms");
  };
  await etcd.txn([], [{ del: { key: keys.leader } }]); // deleted by hand (or by a restore): another node may take it now
  await waitFor(() => events.includes("lost"), { timeoutMs: 1000, what: "the fence at the first read without the key" });
  expect(performance.now()).toBeLessThan(until);
  expect(c.status().role).not.toBe("leader");
  c.stop();
});

test("keys that do not validate are logged once until they change, not at every poll", async () => {
  const { etcd, c, events, log } = await leading();
  const said = () => log.lines.filter((l) => l.includes("ignoring keys that do not validate")).length;
  await etcd.txn([], [{ put: { key: keys.transfer, value: "garbage" } }]);
  const held = () => events.filter((e) => e === "held").length;
  const from = held();
  await waitFor(() => held() >= from + 5, { timeoutMs: 2000, what: "five polls" });
  expect(said()).toBe(1);
  await etcd.txn([], [{ put: { key: keys.member("bbbbbbbbbbbbbbbb"), value: "garbage" } }]);
  await waitFor(() => said() === 2, { timeoutMs: 2000, what: "the new set said" });
  c.stop();
});
