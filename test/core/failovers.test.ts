// The cluster's failover count carried by its history entries (core/failovers.ts): the running
// maximum of their stamps, an unstamped failover (an older pgherd's) adding one.
import { expect, test } from "bun:test";
import { failoverCount, withFailoverCounts, type Counted } from "../../src/core/failovers.ts";

const f = (failovers?: number): Counted => ({ kind: "failover", ...(failovers === undefined ? {} : { failovers }) });
const h = (failovers?: number): Counted => ({ kind: "hook", ...(failovers === undefined ? {} : { failovers }) });

test("stamps count as the running maximum; unstamped failovers add one each", () => {
  expect(failoverCount([])).toBe(0);
  expect(failoverCount([f(), h(), f()])).toBe(2);
  expect(failoverCount([h(5), f()])).toBe(6);
  expect(failoverCount([f(3), h(2)])).toBe(3); // a later entry from a node that had not heard of failover 3
});

test("stamping the running count: dropping the oldest entries never lowers the count of the rest", () => {
  const entries = withFailoverCounts([f(), h(), f(4), h(1), h()]);
  expect(entries.map((e) => e.failovers)).toEqual([1, 1, 4, 4, 4]);
  for (let i = 0; i < entries.length; i++) expect(failoverCount(entries.slice(i))).toBe(4);
  const kept = h(7);
  expect(withFailoverCounts([kept])[0]).toBe(kept); // already right: the same object
});
