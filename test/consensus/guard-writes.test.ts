// The etcd leader's guard writes: a compare-and-swap against the last read's mod revision with the
// leader key held; a refusal is logged once while each round asks again, and once more when stored;
// settle() writes the guard read again, unchanged, after a write that got no answer.
import { expect, test } from "bun:test";
import type { Compare } from "../../src/consensus/etcd/client.ts";
import { clusterKeys, type Snapshot } from "../../src/consensus/etcd/elect-core.ts";
import { GuardWrites } from "../../src/consensus/etcd/guard-writes.ts";
import { memoryLogger } from "../../src/log.ts";

const keys = clusterKeys("/pgherd", "main");
const snap = { revision: 9, leader: null, membership: null, guard: null, guardMod: 7, transfer: null, lastTerm: 3, invalid: [] } as unknown as Snapshot;

test("each write compares the leader key and the guard's mod revision; a refusal is said once until a write is stored", async () => {
  const log = memoryLogger();
  const sent: { compare: Compare[]; key: string; value: string }[] = [];
  let answer = false;
  let term = 3;
  const w = new GuardWrites({
    keys, self: "aaaaaaaaaaaaaaaa", log, leading: () => ({ term }), snap: () => snap,
    holdsKey: () => ({ key: keys.leader, target: "CREATE", createRevision: 3 }),
    cas: (compare, key, value) => (sent.push({ compare, key, value }), Promise.resolve(answer)),
  });
  for (let i = 0; i < 5; i++) await w.set(true, null);
  await w.reserve(4);
  expect(sent).toHaveLength(6);
  expect(sent[0]!.compare).toEqual([{ key: keys.leader, target: "CREATE", createRevision: 3 }, { key: keys.guard, target: "MOD", modRevision: 7 }]);
  expect(JSON.parse(sent[0]!.value)).toMatchObject({ term: 3, seq: 1, block: true, holder: "aaaaaaaaaaaaaaaa" });
  expect(JSON.parse(sent[5]!.value)).toMatchObject({ term: 3, timeline: 4 });
  const warned = () => log.lines.filter((l) => l.startsWith("warn"));
  expect(warned()).toEqual([
    "warn durability guard not stored: the guard changed meanwhile or this node lost the leader key (said once until one is stored)",
    "warn timeline reservation not stored: the guard changed meanwhile or this node lost the leader key (said once until one is stored)",
  ]);
  answer = true;
  await w.set(false, null);
  await w.set(false, null);
  expect(log.lines.filter((l) => l.startsWith("info"))).toEqual(["info durability guard stored"]);
  answer = false;
  await w.set(true, null);
  expect(warned()).toHaveLength(3); // refused again after a stored one: said again
  await w.set(true, null);
  expect(warned()).toHaveLength(3);
  term = 9;
  await w.set(true, null);
  expect(warned()).toHaveLength(4); // a refusal in a later term is said again
});

test("not leading, or nothing read yet: nothing is written", async () => {
  const sent: string[] = [];
  const base = { keys, self: "a", log: memoryLogger(), holdsKey: () => ({ key: keys.leader, target: "CREATE", createRevision: 1 }) as Compare, cas: (_c: Compare[], k: string) => (sent.push(k), Promise.resolve(true)) };
  await new GuardWrites({ ...base, leading: () => null, snap: () => snap }).set(true, null);
  await new GuardWrites({ ...base, leading: () => ({ term: 1 }), snap: () => null }).reserve(2);
  expect(sent).toEqual([]);
});

test("a write answers whether etcd stored it; settle writes the guard read again, unchanged, against its mod revision (only while leading, with a guard)", async () => {
  const guard = { term: 3, seq: 4, block: true, holder: "aaaaaaaaaaaaaaaa", floor: null };
  const withGuard = { ...snap, guard: { value: guard, mod: 7 } } as Snapshot;
  const sent: { compare: Compare[]; value: string }[] = [];
  let answer = true;
  let leading: { term: number } | null = { term: 3 };
  let read: Snapshot = withGuard;
  const w = new GuardWrites({
    keys, self: "aaaaaaaaaaaaaaaa", log: memoryLogger(), leading: () => leading, snap: () => read,
    holdsKey: () => ({ key: keys.leader, target: "CREATE", createRevision: 3 }),
    cas: (compare, _key, value) => (sent.push({ compare, value }), Promise.resolve(answer)),
  });
  expect(await w.set(false, null)).toBe(true);
  answer = false;
  expect(await w.reserve(2)).toBe(false);
  sent.length = 0;
  await w.settle();
  expect(sent).toEqual([{ compare: [{ key: keys.leader, target: "CREATE", createRevision: 3 }, { key: keys.guard, target: "MOD", modRevision: 7 }], value: JSON.stringify(guard) }]);
  read = snap; // no guard read: nothing to write again
  await w.settle();
  read = withGuard;
  leading = null;
  await w.settle();
  expect(await w.set(true, null)).toBe(false);
  expect(sent).toHaveLength(1);
});
