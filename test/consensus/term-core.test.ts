// The etcd backend's term and an etcd restored from a snapshot (src/consensus/etcd/term-core.ts).
import { describe, expect, test } from "bun:test";
import { NO_TERM, readTerm, termTaken, type TermView } from "../../src/consensus/etcd/term-core.ts";

const A = "aaaaaaaaaaaaaaaa";
const key = (term: number) => ({ id: A, term, lease: "L1" });
const read = (revision: number, leader: ReturnType<typeof key> | null, lastTerm: number) => ({ revision, leader, lastTerm });

describe("the term: the highest etcd shows, while etcd's revisions go forward", () => {
  test("a leader key, then its vacancy: the term is the key's create revision and stays once it is gone", () => {
    let v: TermView = NO_TERM;
    v = readTerm(v, null, read(12, key(10), 10)).view;
    expect(v).toEqual({ term: 10, revision: 12, restoredAt: null });
    const r = readTerm(v, null, read(15, null, 10));
    expect(r).toEqual({ view: { term: 10, revision: 15, restoredAt: null }, restored: null, reset: null });
    expect(readTerm(v, 11, read(20, key(18), 18))).toEqual({ view: { term: 18, revision: 20, restoredAt: null }, restored: null, reset: null });
  });

  test("a take this node won sets the term", () => {
    expect(termTaken({ term: 10, revision: 12, restoredAt: 4 }, 30)).toEqual({ term: 30, revision: 30, restoredAt: null });
  });
});

describe("etcd restored from a snapshot without --bump-revision: the term follows etcd's again (review)", () => {
  // Every node saw the leader key of term 1002 (revisions up to 1010); etcd is restored to revision 500.
  const before: TermView = { term: 1002, revision: 1010, restoredAt: null };

  test("a restore without a leader key: the term stays (final positions of the snapshot are below it) and the report is written again", () => {
    const r = readTerm(before, null, read(501, null, 480));
    expect(r.restored).toContain("revision 501, below revision 1010");
    expect(r).toMatchObject({ view: { term: 1002, revision: 501, restoredAt: 480 }, reset: "report" });
    // Further reads of the restored etcd: nothing new until a take.
    expect(readTerm(r.view, 1003, read(503, null, 480))).toEqual({ view: { term: 1002, revision: 503, restoredAt: 480 }, restored: null, reset: null });
  });

  test("the first leader after it: the term is its key's, and the final position of the vacancy before is forgotten (its vacancy is detached for anew)", () => {
    const frozen = readTerm(before, 1003, read(501, null, 480)).view;
    expect(readTerm(frozen, 1003, read(505, key(505), 505))).toEqual({ view: { term: 505, revision: 505, restoredAt: null }, restored: null, reset: "final" });
    // A take after the restore whose key this node never read (gone already): its vacancy.
    expect(readTerm(frozen, 1003, read(509, null, 505))).toEqual({ view: { term: 505, revision: 509, restoredAt: null }, restored: null, reset: "final" });
  });

  test("a restore read with a leader key below the term: the key's term, final position forgotten", () => {
    const r = readTerm(before, 1003, read(501, key(470), 470));
    expect(r).toMatchObject({ view: { term: 470, revision: 501, restoredAt: null }, reset: "final" });
    // The same without the revision sign (the revision climbed past the one read before, or the key alone was brought back).
    const k = readTerm(before, null, read(2000, key(470), 470));
    expect(k.restored).toContain("term 470 is below term 1002");
    expect(k).toMatchObject({ view: { term: 470, revision: 2000, restoredAt: null }, reset: "final" });
  });

  test("the key of a term this node saw gone is back: its vacancy is detached for again", () => {
    const r = readTerm(before, 1003, read(1020, key(1002), 1002));
    expect(r.restored).toContain("back after this node saw it gone");
    expect(r).toMatchObject({ view: { term: 1002 }, reset: "final" });
  });

  test("the last leader's term below the term with no key (the revision climbed past the one read before): the term stays, as for a restore read", () => {
    const r = readTerm(before, 1003, read(3000, null, 480));
    expect(r.restored).toContain("last leader's term 480 is below term 1002");
    expect(r).toMatchObject({ view: { term: 1002, revision: 3000, restoredAt: 480 }, reset: "report" });
  });

  test("a restore to a snapshot at or above this node's term (its last leader is the snapshot's): the term is etcd's, the report written again", () => {
    expect(readTerm(before, 1003, read(1005, null, 1002))).toMatchObject({ view: { term: 1002, revision: 1005, restoredAt: null }, reset: "report" });
  });

  test("a fresh agent (no term yet) detects nothing", () => {
    expect(readTerm(NO_TERM, null, read(501, null, 480))).toEqual({ view: { term: 480, revision: 501, restoredAt: null }, restored: null, reset: null });
  });
});
