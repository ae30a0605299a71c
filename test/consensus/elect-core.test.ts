import { describe, expect, test } from "bun:test";
import { clusterKeys, clusterOfKey, decideCandidacy, decodeSnapshot, finalPositionDue, guardRepair, heldAfterRead, nextGuard, ownKeyAction, ownsKey, REPORT_EVERY_MS, reportDue, type CandidacyInput, type MemberReport, type RawKv } from "../../src/consensus/etcd/elect-core.ts";

const A = "aaaaaaaaaaaaaaaa";
const B = "bbbbbbbbbbbbbbbb";
const C = "cccccccccccccccc";
const K = clusterKeys("/pgherd", "main");

let rev = 10;
const kv = (key: string, value: unknown, extra: Partial<RawKv> = {}): RawKv => {
  rev++;
  return { key, value: typeof value === "string" ? value : JSON.stringify(value), createRevision: rev, modRevision: rev, lease: "7", ...extra };
};
const report = (name: string, lsn: string, detachedFor: number | null, o: Partial<MemberReport> = {}): MemberReport =>
  ({ name, role: "database", canLead: true, priority: 100, position: { timeline: 1, lsn }, detachedFor, ...o });
const membership = { term: 0, index: 1, voters: [A, B, C] };

function input(kvs: RawKv[], o: Partial<CandidacyInput> = {}): CandidacyInput {
  return {
    self: A, canLead: true, priority: 100, snapshot: decodeSnapshot(K, 100, kvs), vacatedTerm: 5, vacantSince: 0, now: 10_000,
    requested: null, resignedUntil: -Infinity, deferMs: 2500, ...o,
  };
}

describe("keys", () => {
  test("every key of a cluster is under <prefix>/<cluster>/; another cluster's prefix is not a prefix of it", () => {
    for (const k of [K.leader, K.membership, K.guard, K.transfer, K.lastLeader, K.member(A)]) expect(k.startsWith("/pgherd/main/")).toBe(true);
    expect(clusterKeys("/pgherd/", "main2").root.startsWith(K.root)).toBe(false);
    expect(clusterOfKey("/pgherd", "/pgherd/main2/leader")).toBe("main2");
    expect(clusterOfKey("/pgherd", "/other/main/leader")).toBeNull();
  });

  test("values that do not validate are listed and never used", () => {
    const s = decodeSnapshot(K, 1, [kv(K.leader, "not-a-node-id"), kv(K.member("zz"), report("x", "0/1", null)), kv(K.guard, "{")]);
    expect(s.leader).toBeNull();
    expect(s.members.size).toBe(0);
    expect(s.invalid.sort()).toEqual([K.guard, K.leader, K.member("zz")].sort());
  });

  test("a guard that does not validate is ignored, but its mod revision as read is kept: a take and the leader's guard write compare against it (0: absent)", () => {
    const s = decodeSnapshot(K, 9, [kv(K.guard, "garbage", { modRevision: 17 })]);
    expect([s.guard, s.guardMod, s.invalid]).toEqual([null, 17, [K.guard]]);
    expect(decodeSnapshot(K, 9, []).guardMod).toBe(0);
  });

  test("the last-leader key's mod revision is the latest term", () => {
    expect(decodeSnapshot(K, 1, [kv(K.lastLeader, A, { modRevision: 42 })]).lastTerm).toBe(42);
  });
});

describe("candidacy: the key is taken only by a node at the highest final position of a majority", () => {
  const base = () => [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", 6)), kv(K.member(B), report("b", "0/200", 6))];

  test("ahead of a majority of detached reports: take, counting exactly those reports", () => {
    expect(decideCandidacy(input(base()))).toEqual({ kind: "take", counted: [A, B] });
  });

  test("another voter's final position ahead: wait", () => {
    const d = decideCandidacy(input([...base(), kv(K.member(C), report("c", "0/400", 6))]));
    expect(d).toEqual({ kind: "wait", reason: "c is ahead (1/0/400)" });
  });

  test("reports not yet final for this vacancy do not count (a stale position could hide an acknowledged write)", () => {
    const kvs = [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", 6)), kv(K.member(B), report("b", "0/900", 5))];
    expect(decideCandidacy(input(kvs))).toMatchObject({ kind: "wait", reason: "final positions from 1 of 3 voters, 2 needed" });
    expect(decideCandidacy(input(kvs.slice(0, 2)))).toMatchObject({ kind: "wait" });
  });

  test("a final position written before the last take etcd shows is not final for its vacancy (left from before an etcd restore), own or another's (review)", () => {
    // The last leader took the key at revision 5 (vacatedTerm 5): A's and B's reports below were written before it.
    const last = kv(K.lastLeader, C, { modRevision: 5 });
    const kvs = [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", 6)), kv(K.member(B), report("b", "0/200", 9), { modRevision: 4 }), last];
    expect(decideCandidacy(input(kvs))).toMatchObject({ kind: "wait", reason: "final positions from 1 of 3 voters, 2 needed" });
    expect(decideCandidacy(input([...kvs.slice(0, 2), kv(K.member(B), report("b", "0/200", 6)), last]))).toEqual({ kind: "take", counted: [A, B] });
    const ownStale = [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", 6), { modRevision: 3 }), kv(K.member(B), report("b", "0/200", 6)), last];
    expect(decideCandidacy(input(ownStale))).toMatchObject({ kind: "wait", reason: "own final position not published yet" });
  });

  test("own final position not published: wait", () => {
    const kvs = [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", null)), kv(K.member(B), report("b", "0/200", 6))];
    expect(decideCandidacy(input(kvs)).kind).toBe("wait");
  });

  test("a leader exists, no membership, not a voter, cannot lead: wait", () => {
    expect(decideCandidacy(input([...base(), kv(K.leader, B)])).kind).toBe("wait");
    expect(decideCandidacy(input(base().slice(1))).kind).toBe("wait");
    expect(decideCandidacy(input(base(), { self: "dddddddddddddddd" })).kind).toBe("wait");
    expect(decideCandidacy(input(base(), { canLead: false })).kind).toBe("wait");
  });

  test("the durability guard: blocked unless this node is the holder or the operator forces; the floor likewise", () => {
    const block = kv(K.guard, nextGuard(null, 5, B, true, null));
    expect(decideCandidacy(input([...base(), block])).kind).toBe("wait");
    expect(decideCandidacy(input([...base(), block], { requested: { force: true } })).kind).toBe("take");
    expect(decideCandidacy(input([...base(), kv(K.guard, nextGuard(null, 5, A, true, null))])).kind).toBe("take");
    const floor = kv(K.guard, nextGuard(null, 5, B, false, { timeline: 1, lsn: "0/400" }));
    expect(decideCandidacy(input([...base(), floor]))).toMatchObject({ kind: "wait", reason: "behind the durability floor 1/0/400" });
    // A guard that does not validate may have been a block: only a forced take.
    const garbage = kv(K.guard, "garbage", { modRevision: 17 });
    expect(decideCandidacy(input([...base(), garbage]))).toMatchObject({ kind: "wait", reason: expect.stringContaining("does not validate") });
    expect(decideCandidacy(input([...base(), garbage], { requested: { force: true } })).kind).toBe("take");
  });

  test("the leader writes a valid guard over one that does not validate: no block, its own position as floor; nothing else is repaired", () => {
    const at = { timeline: 3, lsn: "0/5000" };
    const garbage = decodeSnapshot(K, 100, [kv(K.guard, "garbage", { modRevision: 17 })]);
    expect(guardRepair(garbage, { leading: true, position: at })).toEqual({ block: false, floor: at });
    expect(guardRepair(garbage, { leading: false, position: at })).toBeNull(); // only the leader writes it
    expect(guardRepair(decodeSnapshot(K, 100, [kv(K.guard, nextGuard(null, 5, A, true, null))]), { leading: true, position: at })).toBeNull(); // a valid block stays
    expect(guardRepair(decodeSnapshot(K, 100, []), { leading: true, position: at })).toBeNull(); // no guard yet: none needed
  });

  test("a transfer to another node, or an equal candidate placed first, is waited for deferMs; then anyone may stand", () => {
    const transfer = kv(K.transfer, { to: B, term: 5 });
    expect(decideCandidacy(input([...base(), transfer], { now: 1000 })).kind).toBe("wait");
    expect(decideCandidacy(input([...base(), transfer], { now: 3000 })).kind).toBe("take");
    expect(decideCandidacy(input([...base(), transfer], { now: 1000, requested: { force: false } })).kind).toBe("take");
    expect(decideCandidacy(input([...base(), kv(K.transfer, { to: B, term: 4 })], { now: 1000 })).kind).toBe("take"); // an older vacancy's transfer
    const tie = [kv(K.membership, membership), kv(K.member(A), report("a", "0/300", 6)), kv(K.member(B), report("b", "0/300", 6, { priority: 200 }))];
    expect(decideCandidacy(input(tie, { now: 1000 }))).toMatchObject({ kind: "wait", reason: "b is as advanced and stands first" });
    expect(decideCandidacy(input(tie, { now: 3000 })).kind).toBe("take");
    expect(decideCandidacy(input(tie, { now: 1000, self: B, priority: 200 })).kind).toBe("take");
    expect(decideCandidacy(input([...tie, kv(K.transfer, { to: A, term: 5 })], { now: 1000 })).kind).toBe("take"); // handed to this node
  });

  test("after resigning, a node stands again only after the pause or when asked", () => {
    expect(decideCandidacy(input(base(), { resignedUntil: 20_000 })).kind).toBe("wait");
    expect(decideCandidacy(input(base(), { resignedUntil: 20_000, requested: { force: false } })).kind).toBe("take");
  });
});

describe("final position: when a member stops streaming and publishes it (the vacancy of the leader key of term 5)", () => {
  const due = (o: Partial<Parameters<typeof finalPositionDue>[0]> = {}) =>
    finalPositionDue({ vacatedTerm: 5, detaching: false, detachedFor: null, promised: false, positionKnown: true, ...o });

  test("a database node publishes none before its own position is known in this process (a ZERO report would count among a majority's)", () => {
    expect(due()).toBe(6);
    expect(due({ positionKnown: false })).toBeNull();
    // the rest as before: not twice, not while one runs, not under a failsafe promise
    expect(due({ detachedFor: 6 })).toBeNull();
    expect(due({ detachedFor: 5 })).toBe(6);
    expect(due({ detaching: true })).toBeNull();
    expect(due({ promised: true })).toBeNull();
  });
});

describe("own key: the leader key holds this node's id while this process does not lead on it", () => {
  const own = (o: Partial<Parameters<typeof ownKeyAction>[0]> = {}) =>
    ownKeyAction({ keyTerm: 7, onOwnLease: true, held: 7, lostTake: null, resigned: null, now: 0, ...o });

  test("a key it resigned from (its delete did not get through) is not won again before the resign pause is over; after it, or for another term, it is", () => {
    const resigned = { term: 7, until: 10_000 };
    expect(own({ resigned, now: 9_999 })).toBe("release");
    expect(own({ resigned, now: 10_000 })).toBe("win");
    expect(own({ keyTerm: 8, held: 8, resigned, now: 9_999 })).toBe("win");
    expect(own()).toBe("win");
  });

  test("the recorded key on a previous run's lease is taken back; a take of this process whose answer was lost is won", () => {
    expect(own({ onOwnLease: false })).toBe("resume");
    expect(own({ held: null, lostTake: 6 })).toBe("win"); // the key's term is above the read the take was decided on
  });

  test("a key of a term this node did not record (an etcd restore brought back its key of an earlier term) is never led on: deleted on its own lease, else left to run out (review)", () => {
    expect(own({ held: null, onOwnLease: false })).toBe("ignore");
    expect(own({ held: 9, onOwnLease: false })).toBe("ignore");
    expect(own({ held: null })).toBe("drop");
    expect(own({ held: 9 })).toBe("drop");
    expect(own({ held: null, lostTake: 7 })).toBe("drop"); // not above the read of the lost take: older than it
    expect(own({ held: null, onOwnLease: false, lostTake: 6 })).toBe("ignore"); // a lost take is on this process's lease
  });

  test("the record is kept while a read shows that key as this node's, and dropped once it shows the key gone or another's", () => {
    expect(heldAfterRead(7, { id: A, term: 7, lease: "L1" }, A)).toBe(7);
    expect(heldAfterRead(7, { id: A, term: 7, lease: "L9" }, A)).toBe(7); // a previous run's lease: still this key
    expect(heldAfterRead(7, null, A)).toBeNull();
    expect(heldAfterRead(7, { id: B, term: 9, lease: "L2" }, A)).toBeNull();
    expect(heldAfterRead(7, { id: A, term: 9, lease: "L1" }, A)).toBeNull();
    expect(heldAfterRead(null, { id: A, term: 7, lease: "L1" }, A)).toBeNull();
  });
});

test("ownsKey: this node's id on its lease (and of the term, when asked)", () => {
  const key = { id: "a", term: 7, lease: "L1" };
  expect(ownsKey(key, "a", "L1")).toBe(true);
  expect(ownsKey(key, "a", "L1", 7)).toBe(true);
  expect(ownsKey(key, "a", "L1", 6)).toBe(false);
  expect(ownsKey(key, "a", "L2")).toBe(false);
  expect(ownsKey(key, "b", "L1")).toBe(false);
  expect(ownsKey(null, "a", "L1")).toBe(false);
  expect(ownsKey(key, "a", null)).toBe(false);
});

describe("member report: written when the last read shows another one", () => {
  const mine = report("n1", "0/5000000", null);
  const due = (shown: MemberReport | null, o: { bound?: boolean; sinceMs?: number; report?: MemberReport } = {}) =>
    reportDue({ report: o.report ?? mine, shown, bound: o.bound ?? true, sinceMs: o.sinceMs ?? 0 });
  test("a read showing exactly this report: nothing to write; none written under this lease yet: written", () => {
    expect(due(report("n1", "0/5000000", null))).toBe(false);
    expect(due(report("n1", "0/5000000", null), { bound: false })).toBe(true);
  });
  test("a read showing an older report after this one was written (a late write of it applied: review) is answered at once", () => {
    const final = report("n1", "0/5000000", 6);
    expect(due(report("n1", "0/4000000", null), { report: final })).toBe(true); // detachedFor differs
    expect(due(null)).toBe(true);
    expect(due(report("n1", "0/6000000", null))).toBe(true); // a position ahead of this one
  });
  test("a position that only moved, or another field: at most every REPORT_EVERY_MS", () => {
    expect(due(report("n1", "0/4000000", null), { sinceMs: REPORT_EVERY_MS - 1 })).toBe(false);
    expect(due(report("n1", "0/4000000", null), { sinceMs: REPORT_EVERY_MS })).toBe(true);
    expect(due(report("n1", "0/5000000", null, { priority: 7 }), { sinceMs: 10 })).toBe(false);
    expect(due(report("n1", "0/5000000", null, { priority: 7 }), { sinceMs: REPORT_EVERY_MS })).toBe(true);
  });
});
