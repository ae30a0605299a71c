// The etcd backend (src/consensus/etcd/backend.ts) on an in-memory etcd (test/helpers/fake-etcd.ts):
// a node takes back the leader key of its previous run and leads; what it then reports as stored
// follows what etcd holds.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publishGuard, type DriverHooks } from "../../src/agent/election-driver.ts";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { FakeEtcd } from "../helpers/fake-etcd.ts";
import { waitFor } from "../helpers/proc.ts";

const SELF = "aaaaaaaaaaaaaaaa";
const keys = clusterKeys("/pgherd", "c1");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A lone voter whose leader key (of its previous run's lease) etcd still holds, with a blocking guard. */
async function leading(o: { fenceStops?: boolean; client?: (c: ReturnType<FakeEtcd["client"]>) => void } = {}) {
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
  const client = etcd.client();
  o.client?.(client);
  const c = new EtcdConsensus({
    client, keys, self: { id: SELF, name: "n1", role: "database", canLead: true, priority: 100 },
    ttlS: 5, pollMs: 20, maxDrift: 0.02, fenceMs: 400, deferMs: 1000, store: new ElectionStore(dir), hooks, log: memoryLogger(),
  });
  c.start();
  await waitFor(() => c.status().role === "leader", { timeoutMs: 3000, what: "the key taken back" });
  return { etcd, c, events };
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
