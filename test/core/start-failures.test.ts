// core/start-failures.ts: when a standby whose starts fail is rebuilt from a fresh clone. One test per rule.
import { expect, test } from "bun:test";
import { afterFailedStart, afterStreaming, NO_START_FAILURES, STARTS_BEFORE_REBUILD } from "../../src/core/start-failures.ts";

const LIB = `FATAL:  could not access file "pg_nope": No such file or directory`;
const MEM = "FATAL:  could not map anonymous shared memory: Cannot allocate memory";

test("fewer failed starts than STARTS_BEFORE_REBUILD: nothing", () => {
  for (let n = 1; n < STARTS_BEFORE_REBUILD; n++) expect(afterFailedStart(NO_START_FAILURES, n, LIB)).toEqual({ memory: NO_START_FAILURES, action: "none" });
});

test("the third failed start for a cause not rebuilt for yet: a rebuild, and the cause is remembered", () => {
  expect(afterFailedStart(NO_START_FAILURES, STARTS_BEFORE_REBUILD, LIB)).toEqual({ memory: { rebuiltFor: LIB, notRebuilt: "" }, action: "rebuild" });
});

test("the fresh clone fails the same way: said once, never rebuilt again for it", () => {
  const rebuilt = afterFailedStart(NO_START_FAILURES, 3, LIB).memory;
  const said = afterFailedStart(rebuilt, 3, LIB);
  expect(said).toEqual({ memory: { rebuiltFor: LIB, notRebuilt: LIB }, action: "say-not-rebuilt" });
  for (const n of [4, 5, 9]) expect(afterFailedStart(said.memory, n, LIB)).toEqual({ memory: said.memory, action: "none" });
});

test("another cause after a rebuild: rebuilt for that one", () => {
  const said = afterFailedStart(afterFailedStart(NO_START_FAILURES, 3, LIB).memory, 3, LIB).memory;
  expect(afterFailedStart(said, 3, MEM)).toEqual({ memory: { rebuiltFor: MEM, notRebuilt: LIB }, action: "rebuild" });
});

test("streaming again clears the memory: the same cause later is rebuilt for again", () => {
  const rebuilt = afterFailedStart(NO_START_FAILURES, 3, LIB).memory;
  const fresh = afterStreaming(rebuilt);
  expect(fresh).toEqual(NO_START_FAILURES);
  expect(afterFailedStart(fresh, 3, LIB).action).toBe("rebuild");
});
