import { expect, test } from "bun:test";
import { classifyAnswer, tryNext } from "../../src/consensus/etcd/transport-core.ts";

test("etcd's refusals before raft leave nothing applied: a learner, no leader, not leader, too many requests, not capable, proposal dropped", () => {
  for (const m of ["etcdserver: rpc not supported for learner", "etcdserver: no leader", "etcdserver: not leader", "etcdserver: too many requests", "etcdserver: not capable", "raft proposal dropped"]) {
    expect(classifyAnswer(503, m)).toBe("not-applied");
  }
});

test("etcd's answers after a proposal that do not say whether it applied: timed out, leader changed, server stopped, unhealthy", () => {
  for (const m of ["etcdserver: request timed out", "etcdserver: request timed out, possibly due to previous leader failure", "etcdserver: leader changed", "etcdserver: server stopped", "etcdserver: unhealthy cluster"]) {
    expect(classifyAnswer(503, m)).toBe("unknown");
  }
});

test("a 5xx without a known message (a proxy's 502/503/504) is unknown; a 429 is not applied", () => {
  expect(classifyAnswer(502, undefined)).toBe("unknown");
  expect(classifyAnswer(500, "etcdserver: corrupt cluster")).toBe("unknown");
  expect(classifyAnswer(429, undefined)).toBe("not-applied");
});

test("any other answer is etcd's decision: final", () => {
  expect(classifyAnswer(400, "etcdserver: permission denied")).toBe("final");
  expect(classifyAnswer(404, "etcdserver: requested lease not found")).toBe("final");
  expect(classifyAnswer(400, undefined)).toBe("final");
});

test("the next endpoint: after not-applied always, after unknown only for a read, never after a final answer", () => {
  expect([tryNext("not-applied", true), tryNext("not-applied", false)]).toEqual([true, true]);
  expect([tryNext("unknown", true), tryNext("unknown", false)]).toEqual([false, true]);
  expect([tryNext("final", true), tryNext("final", false)]).toEqual([false, false]);
});
