// The migrating leader's etcd steps (src/agent/migrate-leader-etcd.ts) against an in-memory etcd:
// the commit writes the built-in guard as it stands then beside the membership, so a guard stored in
// builtin after the open (before the commit held new blocks back: core guardChangeAllowed) is what
// etcd holds when the cluster switches.
import { expect, test } from "bun:test";
import * as L from "../../src/agent/migrate-leader-etcd.ts";
import type { Guard } from "../../src/core/messages.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { memoryLogger } from "../../src/log.ts";
import { FakeEtcd } from "../helpers/fake-etcd.ts";

const A = "aaaaaaaaaaaaaaa1";
const keys = clusterKeys("/pgherd", "c");
const membership = { term: 3, index: 1, voters: [A, "bbbbbbbbbbbbbbb2", "ccccccccccccccc3"] };

function leader(etcd: FakeEtcd, guard: { now: Guard | null }) {
  const consensus = { status: () => ({ membership, guard: guard.now, guardCommitted: guard.now?.seq ?? 0 }), setCap() {} };
  const store = { etcdTerm: null as number | null, saveEtcdKey(t: number | null) { this.etcdTerm = t; } };
  const x = {
    d: { self: A, log: memoryLogger(), consensus, store, cfg: { consensus: { ttl_s: 5, poll_ms: 250 } } }, etcd: () => ({ client: etcd.client(), keys }),
    timers: { maxDrift: 0.02, fenceMs: 400 }, clock: () => performance.now(), persist() {}, note() {},
  } as unknown as L.LeaderEtcdCtx;
  const r = { state: { to: "etcd", epoch: 1, phase: "open" }, membership, etcd: null, etcdUntil: null, renewedAt: 0 } as unknown as Parameters<typeof L.commitEtcd>[1];
  return { x, r, store };
}

test("a block stored in builtin between the open and the commit is in etcd after the commit", async () => {
  const etcd = new FakeEtcd();
  const guard: { now: Guard | null } = { now: { term: 3, seq: 4, block: false, holder: null, floor: null } };
  const { x, r, store } = leader(etcd, guard);
  expect(await L.openEtcd(x, r, () => {})).toBe(true);
  // The key is recorded as this node's: its etcd backend resumes it (and only a recorded key).
  expect(store.etcdTerm).toBe(etcd.kv.get(keys.leader)!.createRevision);
  expect(JSON.parse(etcd.value(keys.guard)!).block).toBe(false);
  guard.now = { term: 3, seq: 5, block: true, holder: A, floor: null }; // the primary degraded, a built-in majority stored it
  expect(await L.commitEtcd(x, r)).toEqual({ type: "committed", ok: true, pending: false });
  expect(JSON.parse(etcd.value(keys.guard)!)).toEqual(guard.now);
  expect(JSON.parse(etcd.value(keys.membership)!)).toEqual(membership);
});

test("no built-in guard at the commit: etcd holds none either", async () => {
  const etcd = new FakeEtcd();
  const guard: { now: Guard | null } = { now: { term: 3, seq: 4, block: false, holder: null, floor: { timeline: 1, lsn: "0/1000000" } } };
  const { x, r } = leader(etcd, guard);
  expect(await L.openEtcd(x, r, () => {})).toBe(true);
  guard.now = null;
  expect((await L.commitEtcd(x, r)).type).toBe("committed");
  expect(etcd.value(keys.guard)).toBeUndefined();
});
