// The shell of the cap (src/agent/sync-cap.ts): numbering state messages, the leader's memory of
// whom its records named, and a standby's echo of the last leader message it processed.
import { expect, test } from "bun:test";
import { SyncCap } from "../../src/agent/sync-cap.ts";
import type { Consensus } from "../../src/agent/election-driver.ts";
import type { FactsSnapshot } from "../../src/core/cluster-facts.ts";
import { memoryLogger } from "../../src/log.ts";

const A = "aaaaaaaaaaaaaaaa", B = "bbbbbbbbbbbbbbbb";
const pos = (lsn: string) => ({ timeline: 1, lsn });

function cap(nofailover: boolean, self: string, leader: string | null) {
  const st = { leader, term: 4, positionKnown: true, position: pos("0/9000000") };
  const consensus = { status: () => st, setPosition: async () => undefined } as unknown as Consensus;
  return new SyncCap({ role: "database", tags: { nofailover } as never, priority: 100 }, self, 11, () => consensus, memoryLogger(), () => 0);
}

test("the leader numbers its state messages and remembers the last one whose record named each standby", () => {
  const l = cap(false, A, A);
  // B cannot lead and is the only standby: the fill wants it, named once its echo is later than the last record naming it
  const facts = (seq: number): FactsSnapshot => ({
    self: { id: A, name: "a", role: "database", neverPromoted: false, report: null }, now: 20_000, startedAt: 0, freshMs: 5000,
    voters: [A, B], leader: A, peers: [],
    reports: new Map([[B, { report: null, role: "database", at: 20_000, nofailover: true, promotable: false, epoch: 7, heard: { leader: A, epoch: 11, seq } }]]),
  });
  expect(l.stamp(null)).toBe(1);
  expect(l.stamp({ term: 4, at: pos("0/6000000"), excluded: [{ id: B, epoch: 7 }] })).toBe(2);
  expect(l.stamp(null)).toBe(3);
  expect(l.syncSet(facts(2), 1)).toEqual({ names: [], wanted: [B], pending: [B] });
  expect(l.syncSet(facts(3), 1)).toEqual({ names: [B], wanted: [B], pending: [] });
});

test("a standby that cannot lead echoes the last leader message it processed, drops its cap with it, and ignores older ones", () => {
  const b = cap(true, B, A);
  expect(b.announce().heard).toBeUndefined();
  expect(b.withholding()).toBe(true); // a new run keeps its state messages back until its echo
  expect(cap(false, A, A).withholding()).toBe(false);
  const rec = { term: 4, at: pos("0/6000000"), excluded: [{ id: B, epoch: b.epoch }] };
  b.heard(A, rec, { epoch: 11, seq: 5 });
  expect(b.withholding()).toBe(false);
  expect(b.cap()).toEqual(pos("0/6000000"));
  expect(b.announce().heard).toEqual({ leader: A, epoch: 11, seq: 5 });
  b.heard(A, null, { epoch: 11, seq: 6 }); // the fill wants B: the record leaves it out
  expect(b.cap()).toBeNull();
  expect(b.announce().heard).toEqual({ leader: A, epoch: 11, seq: 6 });
  b.heard(A, rec, { epoch: 11, seq: 5 }); // late copy of seq 5: ignored
  expect(b.cap()).toBeNull();
  expect(b.announce().heard).toEqual({ leader: A, epoch: 11, seq: 6 });
  // the leader restarted (same term: it resumes it), its new run's first message; then a late frame of the run before
  b.heard(A, null, { epoch: 12, seq: 1 });
  b.heard(A, rec, { epoch: 11, seq: 7 });
  expect(b.cap()).toBeNull();
  expect(b.announce().heard).toEqual({ leader: A, epoch: 12, seq: 1 });
  // a message from a node it does not follow: no echo
  const c = cap(true, B, null);
  c.heard(A, null, { epoch: 11, seq: 9 });
  expect(c.announce().heard).toBeUndefined();
  expect(c.withholding()).toBe(true);
  // an older leader's message (no numbers): no echo, but nothing to wait for any more
  const d = cap(true, B, A);
  d.heard(A, null, {});
  expect(d.announce().heard).toBeUndefined();
  expect(d.withholding()).toBe(false);
});
