// core/restart-in-place.ts: one test per rule of which failed start a restart in place tries again.
import { expect, test } from "bun:test";
import { retryStart, type FailedStart } from "../../src/core/restart-in-place.ts";

const held: FailedStart = { lockHeld: true, keptLocks: 0, now: 1000, deadline: 5000 };

test("a start held back by a lock file, none kept, within the budget: tried again", () => {
  expect(retryStart(held)).toBe(true);
  expect(retryStart({ ...held, now: 5000 })).toBe(true); // at the deadline itself
});

test("a lock file kept before the start (not the OS user's, behind a refused link): not tried again", () => {
  expect(retryStart({ ...held, keptLocks: 1 })).toBe(false);
});

test("any other failure (a full disk, an I/O or memory error): not tried again", () => {
  expect(retryStart({ ...held, lockHeld: false })).toBe(false);
});

test("past the budget: not tried again", () => {
  expect(retryStart({ ...held, now: 5001 })).toBe(false);
});
