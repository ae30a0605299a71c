// core/start-failures.ts: when a standby whose starts fail is rebuilt from a fresh clone. One test per rule.
import { expect, test } from "bun:test";
import { afterFailedStart, afterRebuildStarting, afterStreaming, NO_START_FAILURES, STARTS_BEFORE_REBUILD } from "../../src/core/start-failures.ts";

const LIB = `FATAL:  could not access file "pg_nope": No such file or directory`;
const MEM = "FATAL:  could not map anonymous shared memory: Cannot allocate memory";

/** The third failed start for `cause` asks for a rebuild, whose clone then reaches its start. */
const rebuiltFor = (m: typeof NO_START_FAILURES, cause: string) => afterRebuildStarting(afterFailedStart(m, STARTS_BEFORE_REBUILD, cause, true).memory);

test("fewer failed starts than STARTS_BEFORE_REBUILD: nothing", () => {
  for (let n = 1; n < STARTS_BEFORE_REBUILD; n++) expect(afterFailedStart(NO_START_FAILURES, n, LIB, true)).toEqual({ memory: NO_START_FAILURES, action: "none" });
});

test("the third failed start for a cause not rebuilt for yet: a rebuild, the cause remembered as asked for", () => {
  expect(afterFailedStart(NO_START_FAILURES, STARTS_BEFORE_REBUILD, LIB, true)).toEqual({ memory: { rebuiltFor: "", notRebuilt: "", asked: LIB }, action: "rebuild" });
});

test("the clone asked for reaches its start: its cause is rebuilt for; a start without one asked changes nothing", () => {
  expect(rebuiltFor(NO_START_FAILURES, LIB)).toEqual({ rebuiltFor: LIB, notRebuilt: "", asked: "" });
  expect(afterRebuildStarting(NO_START_FAILURES)).toBe(NO_START_FAILURES);
});

test("the clone asked for never started (refused for want of room): the next failed start for that cause asks again, not 'failed as before the fresh clone' (found by review)", () => {
  const asked = afterFailedStart(NO_START_FAILURES, STARTS_BEFORE_REBUILD, LIB, true).memory;
  expect(afterFailedStart(asked, STARTS_BEFORE_REBUILD + 1, LIB, true)).toEqual({ memory: asked, action: "rebuild" });
});

test("the fresh clone fails the same way: said once, never rebuilt again for it", () => {
  const rebuilt = rebuiltFor(NO_START_FAILURES, LIB);
  const said = afterFailedStart(rebuilt, 3, LIB, true);
  expect(said).toEqual({ memory: { rebuiltFor: LIB, notRebuilt: LIB, asked: "" }, action: "say-not-rebuilt" });
  for (const n of [4, 5, 9]) expect(afterFailedStart(said.memory, n, LIB, true)).toEqual({ memory: said.memory, action: "none" });
});

test("another cause after a rebuild: rebuilt for that one", () => {
  const said = afterFailedStart(rebuiltFor(NO_START_FAILURES, LIB), 3, LIB, true).memory;
  expect(afterFailedStart(said, 3, MEM, true)).toEqual({ memory: { rebuiltFor: LIB, notRebuilt: LIB, asked: MEM }, action: "rebuild" });
  expect(rebuiltFor(said, MEM)).toEqual({ rebuiltFor: MEM, notRebuilt: LIB, asked: "" });
});

test("streaming again clears the memory: the same cause later is rebuilt for again", () => {
  const rebuilt = rebuiltFor(NO_START_FAILURES, LIB);
  const fresh = afterStreaming(rebuilt);
  expect(fresh).toEqual(NO_START_FAILURES);
  expect(afterFailedStart(fresh, 3, LIB, true).action).toBe("rebuild");
});

test("rejoin.auto = false: never rebuilt by itself; said once per cause, and the rounds keep starting it (found by review: a fresh clone moved the data directory aside all the same)", () => {
  const said = afterFailedStart(NO_START_FAILURES, STARTS_BEFORE_REBUILD, LIB, false);
  expect(said).toEqual({ memory: { rebuiltFor: "", notRebuilt: LIB, asked: "" }, action: "say-auto-off" });
  for (const n of [4, 5, 9]) expect(afterFailedStart(said.memory, n, LIB, false)).toEqual({ memory: said.memory, action: "none" });
  expect(afterFailedStart(said.memory, STARTS_BEFORE_REBUILD, MEM, false).action).toBe("say-auto-off"); // another cause: said too
  expect(afterFailedStart(NO_START_FAILURES, STARTS_BEFORE_REBUILD - 1, LIB, false).action).toBe("none");
});
