// `pgherd rejoin`: the progress the loop reports (requested → rewinding/cloning → starting →
// streaming, or failed) and the CLI's wait on it, which must not take a report from before the
// request for the rejoin's success (defect 4).
import { expect, test } from "bun:test";
import { type RejoinEvent, rejoinDropReason, rejoinStep } from "../../src/agent/pg/rejoin.ts";
import type { RejoinProgress } from "../../src/core/report.ts";
import { type NodePg, rejoinLines, rejoinPoll, rejoinSeq } from "../../src/cli/_rejoin-wait.ts";

const run = (events: RejoinEvent[], from: RejoinProgress | null = null) => events.reduce(rejoinStep, from);
const streamingNow: RejoinEvent = { kind: "observed", standby: true, streaming: true };

test("a request made while following is dropped once this node leads or takes the lease (its data is the cluster's then)", () => {
  // Found by review: a request left waiting while this node won an election fired after it lost the
  // lease, rewinding its unreplicated transactions away past rejoin.auto = false and a pause.
  const follower = { leading: false, acquiringLease: false };
  expect(rejoinDropReason(null, { leading: true, acquiringLease: false })).toBeNull();
  expect(rejoinDropReason({ clone: false }, follower)).toBeNull();
  expect(rejoinDropReason({ clone: true, auto: true }, follower)).toBeNull();
  expect(rejoinDropReason({ clone: false }, { leading: true, acquiringLease: false })).toMatch(/became the leader/);
  expect(rejoinDropReason({ clone: true }, { leading: false, acquiringLease: true })).toMatch(/became the leader/);
  // The CLI then sees a dropped request, not one the agent retries.
  expect(run([{ kind: "request", clone: false }, { kind: "failed", error: "not carried out: this node became the leader", dropped: true }])).toMatchObject({ state: "failed", dropped: true });
});

test("a request starts a new rejoin with the next sequence number", () => {
  expect(run([{ kind: "request", clone: false }])).toEqual({ seq: 1, state: "requested", error: null });
  expect(run([{ kind: "request", clone: false }, { kind: "request", clone: true }])).toMatchObject({ seq: 2, state: "requested" });
});

test("nothing is tracked without a request (a first clone or an automatic rewind is no rejoin)", () => {
  expect(run([{ kind: "rebuild", how: "clone" }, { kind: "starting" }, streamingNow])).toBeNull();
});

test("a streaming standby before the rebuild does not finish the rejoin", () => {
  expect(run([{ kind: "request", clone: false }, streamingNow])).toMatchObject({ state: "requested" });
  expect(run([{ kind: "request", clone: false }, { kind: "rebuild", how: "rewind" }, streamingNow])).toMatchObject({ state: "rewinding" });
});

test("rewind, start, then streaming", () => {
  const steps: RejoinEvent[] = [{ kind: "request", clone: false }, { kind: "rebuild", how: "rewind" }, { kind: "starting" }];
  expect(run(steps)).toMatchObject({ state: "starting" });
  expect(run([...steps, { kind: "observed", standby: true, streaming: false }])).toMatchObject({ state: "starting" });
  expect(run([...steps, streamingNow])).toEqual({ seq: 1, state: "streaming", error: null, passed: ["rewinding", "starting"] });
});

test("a failed rewind falls back to a clone within the same rejoin", () => {
  expect(run([{ kind: "request", clone: false }, { kind: "rebuild", how: "rewind" }, { kind: "rebuild", how: "clone" }])).toMatchObject({ state: "cloning" });
});

test("a failure is reported with its error; a retry goes on from there", () => {
  const failed = run([{ kind: "request", clone: true }, { kind: "rebuild", how: "clone" }, { kind: "failed", error: "pg_basebackup: could not connect" }]);
  expect(failed).toEqual({ seq: 1, state: "failed", error: "pg_basebackup: could not connect", passed: ["cloning"] });
  expect(run([{ kind: "rebuild", how: "clone" }, { kind: "starting" }, streamingNow], failed)).toMatchObject({ state: "streaming", error: null });
});

test("a finished rejoin stays finished until the next request", () => {
  const done = run([{ kind: "request", clone: false }, { kind: "rebuild", how: "rewind" }, { kind: "starting" }, streamingNow]);
  expect(run([{ kind: "failed", error: "later trouble" }, { kind: "observed", standby: false, streaming: false }], done)).toMatchObject({ state: "streaming" });
  expect(run([{ kind: "request", clone: false }], done)).toMatchObject({ seq: 2, state: "requested" });
});

// ---------------------------------------------------------------- the CLI's wait

const node = (o: Partial<NodePg> = {}): NodePg => ({ action: "standby", note: "", error: null, ...o });

test("defect 4: a report from before the request (already streaming) is not taken for the rejoin's success", () => {
  // The old wait printed "rejoined" on any report with inRecovery && streaming: this one.
  const before = node({ rejoin: { seq: 1, state: "streaming", error: null } });
  const seq = rejoinSeq(before);
  expect(rejoinPoll(seq, before)).toEqual({ line: "requested: waiting for the agent to take it up", done: null, passed: [] });
  expect(rejoinPoll(0, node())).toMatchObject({ done: null });
});

test("the wait follows the new request to streaming", () => {
  const polls = [
    node({ action: "wait", note: "rejoin requested: waiting for the leader's primary", rejoin: { seq: 2, state: "requested", error: null } }),
    node({ action: "clone", note: "cloning 40% (400/1000 kB)", rejoin: { seq: 2, state: "cloning", error: null } }),
    node({ action: "clone", rejoin: { seq: 2, state: "starting", error: null } }),
    node({ rejoin: { seq: 2, state: "streaming", error: null } }),
  ].map((pg) => rejoinPoll(1, pg));
  expect(polls).toMatchObject([
    { line: "requested: rejoin requested: waiting for the leader's primary", done: null },
    { line: "cloning: cloning 40% (400/1000 kB)", done: null },
    { line: "starting", done: null },
    { line: "rejoined: streaming from the primary", done: "streaming" },
  ]);
});

test("steps that began and ended between two polls are still printed, once, in order (a rewind of 18 ms and a start of 111 ms)", () => {
  const shown = new Set<string>();
  const first = rejoinPoll(1, node({ rejoin: { seq: 2, state: "requested", error: null } }));
  const second = rejoinPoll(1, node({ rejoin: { seq: 2, state: "streaming", error: null, passed: ["rewinding", "starting"] } }));
  expect(rejoinLines(first, "", shown)).toEqual(["requested"]);
  expect(rejoinLines(second, first.line, shown)).toEqual(["rewinding", "starting", "rejoined: streaming from the primary"]);
  // A step seen as the current state is not printed again from the list.
  const seen = new Set<string>();
  const cloning = rejoinPoll(1, node({ note: "cloning 40%", rejoin: { seq: 2, state: "cloning", error: null, passed: ["cloning"] } }));
  expect(rejoinLines(cloning, "", seen)).toEqual(["cloning: cloning 40%"]);
  const done = rejoinPoll(1, node({ rejoin: { seq: 2, state: "streaming", error: null, passed: ["cloning", "starting"] } }));
  expect(rejoinLines(done, cloning.line, seen)).toEqual(["starting", "rejoined: streaming from the primary"]);
});

test("a failed rejoin ends the wait with its error", () => {
  expect(rejoinPoll(0, node({ rejoin: { seq: 1, state: "failed", error: "pg_rewind: source and target clusters are from different systems" } }))).toEqual({
    line: "rejoin failed: pg_rewind: source and target clusters are from different systems (the agent retries; follow it with pgherd status)",
    done: "failed",
    passed: [],
  });
});

test("a failed rejoin whose request was dropped (a clone with no room) says it is not retried", () => {
  const failed = run([{ kind: "request", clone: true }, { kind: "rebuild", how: "clone" }, { kind: "failed", error: "no room for a clone of the primary", dropped: true }]);
  expect(failed).toMatchObject({ state: "failed", dropped: true });
  // A later step or failure of an automatic rebuild does not carry the flag; a later request starts clean.
  expect(run([{ kind: "rebuild", how: "rewind" }], failed)).not.toHaveProperty("dropped");
  expect(run([{ kind: "failed", error: "pg_rewind failed" }], failed)).not.toHaveProperty("dropped");
  expect(run([{ kind: "request", clone: true }], failed)).toEqual({ seq: 2, state: "requested", error: null });
  expect(rejoinPoll(0, node({ rejoin: failed! })).line).toBe("rejoin failed: no room for a clone of the primary (not retried: run pgherd rejoin again once it can succeed)");
});

test("no report yet", () => {
  expect(rejoinPoll(0, null)).toEqual({ line: "no report yet", done: null, passed: [] });
});
