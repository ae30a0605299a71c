import { expect, test } from "bun:test";
import { handoverBoundMs, handoverSettled, planShutdown, type ShutdownFacts } from "../../src/core/handover.ts";
import type { PgReport } from "../../src/core/report.ts";
import type { Candidate } from "../../src/core/switchover.ts";

const rep = (over: Partial<PgReport> = {}): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000000" },
  receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: null, streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const primary = rep({ inRecovery: false, streaming: false, action: "primary" });
const cand = (name: string, report: PgReport | null = rep(), extra: Partial<Candidate> = {}): Candidate => ({ id: `id-${name}`, name, voter: true, witness: false, neverPromoted: false, report, ...extra });
const facts = (over: Partial<ShutdownFacts> = {}): ShutdownFacts => ({
  enabled: true, database: true, leading: true, paused: false, own: primary,
  candidates: [cand("a", primary), cand("b", rep({ replayLsn: "0/2000000" })), cand("c")], maxLagBytes: 1 << 20, ...over,
});

test("a leader with a caught-up standby hands over to the least lagging one", () => {
  expect(planShutdown(facts())).toMatchObject({ kind: "handover", to: { name: "c" } });
});

test("--no-handover / [shutdown] handover = false: stop as is", () => {
  expect(planShutdown(facts({ enabled: false }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("disabled") });
});

test("a witness stops as is", () => {
  expect(planShutdown(facts({ database: false }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("witness") });
});

test("a node that does not lead stops as is", () => {
  expect(planShutdown(facts({ leading: false }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("does not lead") });
});

test("a paused cluster gets no role change", () => {
  expect(planShutdown(facts({ paused: true }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("paused") });
});

test("a leader whose server is not a running primary has nothing to hand over", () => {
  expect(planShutdown(facts({ own: rep({ up: false, inRecovery: null }) }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("no running primary") });
});

test("no standby qualifies (not streaming, lagging, nofailover, unreachable): stop as is", () => {
  const candidates = [
    cand("a", primary), cand("b", rep({ streaming: false })), cand("c", rep({ replayLsn: "0/1000000" })),
    cand("d", rep(), { neverPromoted: true }), cand("e", null), cand("w", rep(), { witness: true }),
  ];
  expect(planShutdown(facts({ candidates, maxLagBytes: 1 << 20 }))).toMatchObject({ kind: "stop", reason: expect.stringContaining("no streaming standby") });
});

test("the bound grows with the timers (22.8 s with the defaults)", () => {
  const d = { timeout_ms: 1500, jitter_ms: 300, lease_ms: 1000, loop_ms: 500 };
  expect(handoverBoundMs(d)).toBe(22_800);
  expect(handoverBoundMs({ ...d, loop_ms: 1000 })).toBe(24_800);
});

const settle = { self: "a", leader: "b", leaderReport: primary, own: rep(), leaseArmed: false, target: "b", targetReachable: true };

test("settled: another leader runs the primary, this server is a disarmed standby", () => {
  expect(handoverSettled(settle)).toEqual({ done: true });
});

test("not settled without a leader, or while this node leads again", () => {
  expect(handoverSettled({ ...settle, leader: null })).toMatchObject({ done: false, waiting: "no leader yet" });
  expect(handoverSettled({ ...settle, leader: "a" })).toMatchObject({ done: false, waiting: expect.stringContaining("leads again") });
});

test("not settled before the new primary runs", () => {
  expect(handoverSettled({ ...settle, leaderReport: rep() })).toMatchObject({ done: false, waiting: expect.stringContaining("primary") });
  expect(handoverSettled({ ...settle, leaderReport: null })).toMatchObject({ done: false });
});

test("not settled before this server runs as a standby", () => {
  expect(handoverSettled({ ...settle, own: rep({ up: false, inRecovery: null }) })).toMatchObject({ done: false, waiting: expect.stringContaining("standby") });
  expect(handoverSettled({ ...settle, own: primary })).toMatchObject({ done: false });
});

test("not settled while the lease file is armed (the watchdog would stop the standby)", () => {
  expect(handoverSettled({ ...settle, leaseArmed: true })).toMatchObject({ done: false, waiting: expect.stringContaining("lease") });
});

test("gives up once the target's agent is gone before it led", () => {
  expect(handoverSettled({ ...settle, leader: "a", targetReachable: false })).toMatchObject({ done: false, giveUp: true });
  expect(handoverSettled({ ...settle, leader: null, targetReachable: false })).toMatchObject({ done: false, giveUp: true });
  // Once it leads, its reports decide (a dropped connection alone is no reason to stop waiting).
  expect(handoverSettled({ ...settle, targetReachable: false })).toEqual({ done: true });
});
