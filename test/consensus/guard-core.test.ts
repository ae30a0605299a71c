// Whether the guard a read showed counts as committed while a guard write of this node that got no
// answer may still apply (src/consensus/etcd/guard-core.ts).
import { expect, test } from "bun:test";
import { guardRead, guardSettled, guardWritten, NO_DOUBT, settleDue } from "../../src/consensus/etcd/guard-core.ts";

test("a write without an answer stays in doubt over any number of reads that show the revision it compared (review: a lift applied after the next poll)", () => {
  let d = guardWritten(NO_DOUBT, 7, "unknown");
  expect(guardSettled(d)).toBe(false);
  expect(settleDue(d)).toBe(false); // the read after it first
  for (let i = 0; i < 5; i++) {
    d = guardRead(d, 7);
    expect(guardSettled(d)).toBe(false);
    expect(settleDue(d)).toBe(true); // the leader writes the guard it read again
  }
  // A second write without an answer, against the same revision, changes nothing.
  d = guardRead(guardWritten(d, 7, "unknown"), 7);
  expect(d).toEqual({ unanswered: 7, unread: false });
});

test("the doubt ends when a read shows another mod revision (mod revisions only grow), or a later write of this node is stored", () => {
  const open = guardRead(guardWritten(NO_DOUBT, 7, "unknown"), 7);
  expect(guardSettled(guardRead(open, 9))).toBe(true);
  expect(guardSettled(guardRead(open, 0))).toBe(true); // the key gone: the write compared 7, never applies
  const stored = guardWritten(open, 7, "stored");
  expect(guardSettled(stored)).toBe(false); // until the read after it
  expect(guardSettled(guardRead(stored, 12))).toBe(true);
  // A refused write leaves the unanswered one where it was.
  expect(guardRead(guardWritten(open, 7, "refused"), 7)).toEqual({ unanswered: 7, unread: false });
});

test("an answered write is settled by the read after it; while that read has not come, nothing counts", () => {
  for (const outcome of ["stored", "refused"] as const) {
    const d = guardWritten(NO_DOUBT, 7, outcome);
    expect(guardSettled(d)).toBe(false);
    expect(settleDue(d)).toBe(false);
    expect(guardRead(d, outcome === "stored" ? 8 : 7)).toEqual(NO_DOUBT);
  }
  expect(guardSettled(NO_DOUBT)).toBe(true);
  expect(guardRead(NO_DOUBT, 3)).toEqual(NO_DOUBT);
});
