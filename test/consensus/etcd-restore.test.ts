// The etcd backend (src/consensus/etcd/backend.ts) when etcd is restored from a snapshot without
// --bump-revision, on an in-memory etcd (test/helpers/fake-etcd.ts): its revisions go back below the
// terms the agents saw, and keys of earlier terms come back (review). Also the record of the key this
// node holds (src/store/election-state.ts etcdKey), which decides which key with its id it leads on.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DriverHooks } from "../../src/agent/election-driver.ts";
import type { EtcdClient } from "../../src/consensus/etcd/client.ts";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { FakeEtcd } from "../helpers/fake-etcd.ts";
import { waitFor } from "../helpers/proc.ts";

const A = "aaaaaaaaaaaaaaaa", B = "bbbbbbbbbbbbbbbb", C = "cccccccccccccccc";
const keys = clusterKeys("/pgherd", "c1");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const membership = (voters = [A, B, C]) => JSON.stringify({ term: 5, index: 1, voters });
const report = (name: string, lsn: string, detachedFor: number | null) =>
  JSON.stringify({ name, role: "database", canLead: true, priority: 100, position: { timeline: 1, lsn }, detachedFor });

/** Node C's etcd backend at position 0/5000000, counting its detaches and leaderships. */
function node(etcd: FakeEtcd, client: EtcdClient = etcd.client()) {
  const detaches: number[] = [];
  const events = { held: 0, lost: 0 };
  const hooks: DriverHooks = {
    send() {}, leaseHeld: () => void events.held++, leaseLost: async () => (events.lost++, true), leadershipChanged() {}, fatal(m) { throw new Error(m); },
    detach: async (term) => (detaches.push(term), { ok: true, position: null }),
  };
  const dir = mkdtempSync(join(tmpdir(), "pgherd-etcd-restore-"));
  dirs.push(dir);
  const store = new ElectionStore(dir);
  const log = memoryLogger();
  const c = new EtcdConsensus({
    client, keys, self: { id: C, name: "n-c", role: "database", canLead: true, priority: 100 },
    ttlS: 5, pollMs: 20, maxDrift: 0.02, fenceMs: 400, deferMs: 50, store, hooks, log,
  });
  void c.setPosition({ timeline: 1, lsn: "0/5000000" });
  return { c, detaches, events, store, log };
}

/** etcd at revision 1000 with A leading (term 1002), and C following it. */
async function followingA() {
  const etcd = new FakeEtcd();
  etcd.revision = 1000;
  const la = await etcd.leaseGrant(5);
  await etcd.txn([], [{ put: { key: keys.membership, value: membership() } }]);
  await etcd.txn([], [{ put: { key: keys.leader, value: A, lease: la.id } }, { put: { key: keys.lastLeader, value: A } }]);
  const n = node(etcd);
  n.c.start();
  await waitFor(() => n.c.status().leader === A, { timeoutMs: 2000, what: "leader A seen" });
  return { etcd, ...n };
}

test("after a restore to lower revisions, a later leader's vacancy is detached for again, and final positions of the vacancy before it do not count (review)", async () => {
  const { etcd, c, detaches, log } = await followingA();
  // etcd restored from an older snapshot: revision 500, no leader key, this agent's lease unknown.
  etcd.kv.clear(); etcd.leases.clear(); etcd.revision = 500;
  await etcd.txn([], [{ put: { key: keys.membership, value: membership() } }, { put: { key: keys.lastLeader, value: A } }]);
  await waitFor(() => detaches.length >= 1, { timeoutMs: 2000, what: "first detach" });
  expect(detaches[0]).toBe(1003); // the vacancy of A's key, as before the restore
  expect(log.lines.join("\n")).toContain("etcd was restored from a snapshot");
  // A publishes its final position for that vacancy (behind C) and dies; its report stays (its lease has not run out).
  const la2 = await etcd.leaseGrant(5);
  await etcd.txn([], [{ put: { key: keys.member(A), value: report("n-a", "0/4000000", detaches[0]!), lease: la2.id } }]);
  // B wins that election (revision ~505), C follows B.
  const lb = await etcd.leaseGrant(5);
  await etcd.txn([{ key: keys.leader, target: "CREATE", createRevision: 0 }], [{ put: { key: keys.leader, value: B, lease: lb.id } }, { put: { key: keys.lastLeader, value: B } }]);
  const termB = etcd.kv.get(keys.leader)!.createRevision;
  await waitFor(() => c.status().leader === B && c.status().term === termB, { timeoutMs: 2000, what: "leader B seen, its term taken" });
  // B's key goes (B crashed): C stops streaming from B and publishes a final position for B's term...
  await etcd.txn([], [{ del: { key: keys.leader } }]);
  await waitFor(() => detaches.length >= 2, { timeoutMs: 2000, what: "a detach for B's vacancy" });
  expect(detaches[1]).toBe(termB + 1);
  // ...and does not count A's report of the vacancy before B (written before B took the key): 1 of 3 final positions.
  await waitFor(() => c.note().startsWith("final positions from 1 of 3 voters"), { timeoutMs: 2000, what: "C to weigh the reports" });
  expect(etcd.value(keys.leader)).toBeUndefined();
  c.stop();
}, 10_000);

test("a restored etcd without a leader key: final positions the snapshot holds (of an earlier vacancy) do not count", async () => {
  const { etcd, c, detaches } = await followingA();
  // The snapshot was taken in the vacancy after term 480: A's final position for it (behind C), on a restored lease.
  etcd.kv.clear(); etcd.leases.clear(); etcd.revision = 479;
  const old = await etcd.leaseGrant(5);
  await etcd.txn([], [{ put: { key: keys.membership, value: membership() } }, { put: { key: keys.lastLeader, value: B } }]); // 480
  await etcd.txn([], [{ put: { key: keys.member(A), value: report("n-a", "0/4000000", 481), lease: old.id } }]);
  await waitFor(() => detaches.length >= 1, { timeoutMs: 2000, what: "C's detach" });
  expect(detaches[0]).toBe(1003);
  await waitFor(() => c.note().startsWith("final positions from 1 of 3 voters"), { timeoutMs: 2000, what: "C to weigh the reports" });
  expect(etcd.value(keys.leader)).toBeUndefined();
  c.stop();
}, 10_000);

test("a leader key of this node brought back by a restore, on a lease this process does not hold, is not taken back nor led on (review)", async () => {
  const etcd = new FakeEtcd();
  await etcd.txn([], [{ put: { key: keys.membership, value: membership() } }]);
  await etcd.txn([], [{ put: { key: keys.guard, value: JSON.stringify({ term: 5, seq: 3, block: true, holder: A, floor: { timeline: 1, lsn: "0/9000000" } }) } }]);
  const la = await etcd.leaseGrant(5);
  await etcd.txn([], [{ put: { key: keys.leader, value: A, lease: la.id } }, { put: { key: keys.lastLeader, value: A } }]);
  const { c, events } = node(etcd);
  c.start();
  await waitFor(() => c.status().leader === A, { timeoutMs: 2000, what: "leader A seen" });
  // Restore: a snapshot from when C held the key, with C's lease of then (etcd renews restored leases).
  etcd.leases.set("Lold", 5);
  etcd.kv.set(keys.leader, { key: keys.leader, value: C, createRevision: 2, modRevision: 2, lease: "Lold" });
  await waitFor(() => c.note().includes("not the key this node recorded taking"), { timeoutMs: 2000, what: "C to leave the key alone" });
  expect([c.status().role, events.held, etcd.leases.has("Lold")]).toEqual(["follower", 0, true]);
  c.stop();
}, 10_000);

test("a leader key of this node brought back on this process's own lease, of a term it never took, is deleted, not led on", async () => {
  const { etcd, c, events } = await followingA();
  const own = await waitFor(() => etcd.kv.get(keys.member(C))?.lease, { timeoutMs: 2000, what: "C's report on its lease" });
  etcd.kv.set(keys.leader, { key: keys.leader, value: C, createRevision: 900, modRevision: 900, lease: own });
  await waitFor(() => etcd.value(keys.leader) === undefined, { timeoutMs: 2000, what: "the key deleted" });
  expect(events.held).toBe(0);
  c.stop();
}, 10_000);

test("a leader whose key reads as an older key of its own, on the same lease (a restore), fences at once", async () => {
  const etcd = new FakeEtcd();
  await etcd.txn([], [{ put: { key: keys.membership, value: membership([C]) } }]);
  const { c, events, store } = node(etcd);
  c.start();
  await waitFor(() => c.status().role === "leader", { timeoutMs: 2000, what: "C to take the key" });
  const kv = etcd.kv.get(keys.leader)!;
  expect(store.etcdKey()).toBe(kv.createRevision); // recorded when it took it
  etcd.kv.set(keys.leader, { ...kv, createRevision: 2 });
  await waitFor(() => events.lost > 0, { timeoutMs: 1000, what: "the fence (well before the lease's deadline)" });
  // Not its key: deleted, the record gone, and taken anew by an election.
  await waitFor(() => c.status().role === "leader" && etcd.kv.get(keys.leader)!.createRevision > kv.createRevision, { timeoutMs: 2000, what: "a new take" });
  expect(store.etcdKey()).toBe(etcd.kv.get(keys.leader)!.createRevision);
  c.stop();
}, 10_000);

test("a take whose answer was lost is still won on the next read, and recorded; a key seen gone drops the record", async () => {
  const etcd = new FakeEtcd();
  await etcd.txn([], [{ put: { key: keys.membership, value: membership([C]) } }]);
  const client = etcd.client();
  const txn = client.txn.bind(client);
  let lost = 0;
  client.txn = async (cmp, ops, fail) => {
    const r = await txn(cmp, ops, fail);
    if (lost === 0 && ops.some((o) => "put" in o && o.put.key === keys.leader)) {
      lost++;
      throw new Error("outcome unknown: no answer within 1000 ms");
    }
    return r;
  };
  const { c, store } = node(etcd, client);
  c.start();
  await waitFor(() => c.status().role === "leader", { timeoutMs: 2000, what: "C to lead on the key it took" });
  const term = etcd.kv.get(keys.leader)!.createRevision;
  expect([lost, c.lease()!.term, store.etcdKey()]).toEqual([1, term, term]);
  await etcd.txn([], [{ del: { key: keys.leader } }]);
  await waitFor(() => store.etcdKey() !== term, { timeoutMs: 2000, what: "the record dropped" });
  c.stop();
}, 10_000);

test("a node that took the key in a restored etcd (below the term its final position was for) detaches for that key's own vacancy", async () => {
  const etcd = new FakeEtcd();
  etcd.revision = 1000;
  const la = await etcd.leaseGrant(5);
  await etcd.txn([], [{ put: { key: keys.membership, value: membership([A, C]) } }]);
  await etcd.txn([], [{ put: { key: keys.leader, value: A, lease: la.id } }, { put: { key: keys.lastLeader, value: A } }]);
  const { c, detaches } = node(etcd);
  c.start();
  await waitFor(() => c.status().leader === A, { timeoutMs: 2000, what: "leader A seen" });
  // Restored without a leader key, and with C the only voter: C detaches for A's vacancy and takes the key.
  etcd.kv.clear(); etcd.leases.clear(); etcd.revision = 500;
  await etcd.txn([], [{ put: { key: keys.membership, value: membership([C]) } }, { put: { key: keys.lastLeader, value: A } }]);
  await waitFor(() => c.status().role === "leader", { timeoutMs: 2000, what: "C to take the key" });
  const term = c.lease()!.term;
  expect([detaches, term < 1003]).toEqual([[1003], true]);
  await etcd.txn([], [{ del: { key: keys.leader } }]);
  await waitFor(() => detaches.length >= 2, { timeoutMs: 2000, what: "a detach for the vacancy of C's own key" });
  expect(detaches[1]).toBe(term + 1);
  await waitFor(() => c.status().role === "leader" && c.lease()!.term > term, { timeoutMs: 2000, what: "C to take it again" });
  c.stop();
}, 10_000);
