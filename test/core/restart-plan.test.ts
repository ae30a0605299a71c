// The rolling-restart plan, one case per rule.
import { describe, expect, test } from "bun:test";
import { chooseTargets, planRestart, startFloor, syncNeeded, type OrderedValue, type RestartInput, type RestartMember } from "../../src/core/restart-plan.ts";

const mc = (running: number, next: number, control: number | null = null): OrderedValue[] => [{ name: "max_connections", running, next, control }];
const node = (name: string, role: RestartMember["role"], over: Partial<RestartMember> = {}): RestartMember => ({
  name, role, healthy: true, state: role === "primary" ? "running" : "streaming", pending: ["max_connections"], ordered: mc(100, 100), ...over,
});
/** p1 primary, s2 and s3 standbys; every node's max_connections goes from `from` to `to`. */
const cluster = (from: number, to: number): RestartMember[] => [
  node("p1", "primary", { ordered: mc(from, to) }),
  node("s2", "standby", { ordered: mc(from, to, from) }),
  node("s3", "standby", { ordered: mc(from, to, from) }),
];
const input = (over: Partial<RestartInput> = {}): RestartInput => ({
  members: cluster(100, 200), targets: ["p1", "s2", "s3"], done: [], inPlace: false, syncNeeded: 1, force: false, ...over,
});
/** `name` restarted: it runs its next values. */
const restarted = (ms: RestartMember[], name: string): RestartMember[] =>
  ms.map((m) => (m.name === name ? { ...m, pending: [], ordered: m.ordered.map((v) => ({ ...v, running: v.next })) } : m));

describe("targets", () => {
  test("--member names one node, --pending those with a pending restart, else every database member", () => {
    const ms = [...cluster(100, 200).map((m) => (m.name === "s3" ? { ...m, pending: [] } : m)), node("w", "other", { pending: [] })];
    expect(chooseTargets(ms, { pending: false })).toEqual({ ok: true, targets: ["p1", "s2", "s3"] });
    expect(chooseTargets(ms, { pending: true })).toEqual({ ok: true, targets: ["p1", "s2"] });
    expect(chooseTargets(ms, { member: "s3", pending: false })).toEqual({ ok: true, targets: ["s3"] });
    expect(chooseTargets(ms, { member: "s3", pending: true })).toEqual({ ok: true, targets: [] });
    expect(chooseTargets(ms, { member: "nope", pending: false }).ok).toBe(false);
    expect(chooseTargets(ms, { member: "w", pending: false }).ok).toBe(false);
  });
  test("k synchronous standbys: voters minus a majority, none when async", () => {
    expect(syncNeeded(3, false)).toBe(1);
    expect(syncNeeded(5, false)).toBe(2);
    expect(syncNeeded(2, false)).toBe(0);
    expect(syncNeeded(3, true)).toBe(0);
  });
});

describe("rules", () => {
  test("done once every target was restarted and everyone is healthy", () => {
    expect(planRestart(input({ done: ["p1", "s2", "s3"] }))).toEqual({ kind: "done" });
    expect(planRestart(input({ targets: [] }))).toEqual({ kind: "done" });
  });
  test("never more than one node down: anything not healthy is waited for first", () => {
    const ms = cluster(100, 200).map((m) => (m.name === "s2" ? { ...m, healthy: false, state: "starting" } : m));
    expect(planRestart(input({ members: ms }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("s2 is starting") });
    // even when everything is done: the last one must be back before the run ends
    expect(planRestart(input({ members: ms, done: ["p1", "s2", "s3"] })).kind).toBe("wait");
  });
  test("no primary: wait", () => {
    const ms = cluster(100, 200).filter((m) => m.role !== "primary");
    expect(planRestart(input({ members: ms })).kind).toBe("wait");
  });
  test("standbys first, one at a time, in name order", () => {
    expect(planRestart(input())).toEqual({ kind: "restart", node: "s2", primary: false, why: expect.any(String) });
    expect(planRestart(input({ members: restarted(cluster(100, 200), "s2"), done: ["s2"] }))).toMatchObject({ kind: "restart", node: "s3" });
  });
  test("the primary last, by switchover to a restarted standby", () => {
    const ms = restarted(restarted(cluster(100, 200), "s2"), "s3");
    expect(planRestart(input({ members: ms, done: ["s2", "s3"] }))).toMatchObject({ kind: "switchover", from: "p1", to: "s2" });
  });
  test("the switchover's target holds a copy of every permanent slot: preferred, else waited for", () => {
    const ms = restarted(restarted(cluster(100, 200), "s2"), "s3");
    const lacks = (names: string[], slots: string[]) => ms.map((m) => (names.includes(m.name) ? { ...m, missingSlotCopies: slots } : m));
    expect(planRestart(input({ members: lacks(["s2"], ["cdc"]), done: ["s2", "s3"] }))).toMatchObject({ kind: "switchover", from: "p1", to: "s3" });
    expect(planRestart(input({ members: lacks(["s2", "s3"], ["cdc"]), done: ["s2", "s3"] }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("s2 lacks cdc") });
  });
  test("the switchover's target is never a standby that cannot be promoted (nofailover or priority 0); with none, in place", () => {
    // Found by review: the plan picked s2 by name, the switchover refused it, and the restart stopped.
    const ms = restarted(restarted(cluster(100, 200), "s2"), "s3");
    const never = (names: string[]) => ms.map((m) => (names.includes(m.name) ? { ...m, promotable: false } : m));
    expect(planRestart(input({ members: never(["s2"]), done: ["s2", "s3"] }))).toMatchObject({ kind: "switchover", from: "p1", to: "s3" });
    expect(planRestart(input({ members: never(["s2", "s3"]), done: ["s2", "s3"] }))).toMatchObject({ kind: "restart", node: "p1", primary: true, why: expect.stringContaining("no standby can be promoted") });
  });
  test("--in-place restarts the primary where it is", () => {
    const ms = restarted(restarted(cluster(100, 200), "s2"), "s3");
    expect(planRestart(input({ members: ms, done: ["s2", "s3"], inPlace: true }))).toMatchObject({ kind: "restart", node: "p1", primary: true });
  });
  test("a member restarted in this run whose report still shows a value below its configured one is waited for, not taken as running it (review: right after the last standby's restart, --in-place stopped with \"restart the standbys first\")", () => {
    // s3's restart answered; the leader's view still holds its report from before (a standby's settings are read every few rounds).
    const ms = restarted(cluster(100, 200), "s2");
    const waits = planRestart(input({ members: ms, done: ["s2", "s3"], inPlace: true }));
    expect(waits).toMatchObject({ kind: "wait", reason: expect.stringContaining("s3 was restarted in this run, but its report still says max_connections = 100 (configured 200)") });
    // by switchover too: nothing is chosen on the old report
    expect(planRestart(input({ members: ms, done: ["s2", "s3"] })).kind).toBe("wait");
    // once it reports what it runs, the run goes on
    expect(planRestart(input({ members: restarted(ms, "s3"), done: ["s2", "s3"], inPlace: true }))).toMatchObject({ kind: "restart", node: "p1", primary: true });
    // a start raised to its pg_control's values (running above the configured one) is not waited for
    const floored = restarted(ms, "s3").map((m) => (m.name === "s3" ? { ...m, ordered: mc(300, 200, 300) } : m));
    expect(planRestart(input({ members: floored, done: ["s2", "s3"] })).kind).not.toBe("wait");
  });
  test("an increase reaches the primary only after every standby runs it (in place is refused before)", () => {
    expect(planRestart(input({ targets: ["p1"], inPlace: true }))).toMatchObject({ kind: "blocked", reason: expect.stringContaining("restart the standbys first") });
    // by switchover to a standby still on 100, the old primary rejoining with 200 is fine
    expect(planRestart(input({ targets: ["p1"] }))).toMatchObject({ kind: "switchover", to: "s2" });
  });
  test("a decrease reaches the primary first, in place even without --in-place (a switchover would keep the higher value)", () => {
    const step = planRestart(input({ members: cluster(200, 100) }));
    expect(step).toMatchObject({ kind: "restart", node: "p1", primary: true, why: expect.stringContaining("falls to 100") });
  });
  test("after the primary runs the lower value, a standby waits until it replayed it (its pg_control), then restarts", () => {
    const ms = restarted(cluster(200, 100), "p1");
    expect(planRestart(input({ members: ms, done: ["p1"] }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("not replayed") });
    // reports not caught up yet (the primary's still says 200): a wait too, not a refusal
    expect(planRestart(input({ members: cluster(200, 100), done: ["p1"] })).kind).toBe("wait");
    const replayed = ms.map((m) => (m.role === "standby" ? { ...m, ordered: mc(200, 100, 100) } : m));
    expect(planRestart(input({ members: replayed, done: ["p1"] }))).toMatchObject({ kind: "restart", node: "s2" });
  });
  test("a standby that would run below the primary, with the primary not in this run, is refused", () => {
    expect(planRestart(input({ members: cluster(200, 100), targets: ["s2"] }))).toMatchObject({ kind: "blocked", reason: expect.stringContaining("restart the primary p1 first") });
  });
  test("durability: a standby whose restart leaves fewer synchronous standbys than needed is refused unless forced", () => {
    const ms = cluster(100, 200).filter((m) => m.name !== "s3");
    expect(planRestart(input({ members: ms, targets: ["s2"] }))).toMatchObject({ kind: "blocked", reason: expect.stringContaining("--force") });
    expect(planRestart(input({ members: ms, targets: ["s2"], force: true }))).toMatchObject({ kind: "restart", node: "s2", why: expect.stringContaining("forced") });
    expect(planRestart(input({ members: ms, targets: ["s2"], syncNeeded: 0 }))).toMatchObject({ kind: "restart", node: "s2" });
    // A standby that cannot lead counts too: it fills the synchronous set while fewer than k promotable ones stream.
    const tagged = cluster(100, 200).map((m) => (m.name === "s3" ? { ...m, promotable: false } : m));
    expect(planRestart(input({ members: tagged, targets: ["s2"] }))).toMatchObject({ kind: "restart", node: "s2" });
    expect(planRestart(input({ members: tagged.filter((m) => m.name !== "s2"), targets: ["s3"] }))).toMatchObject({ kind: "blocked" });
  });
  test("a single node (no standby) restarts in place", () => {
    expect(planRestart(input({ members: [node("p1", "primary")], targets: ["p1"], syncNeeded: 0 }))).toMatchObject({ kind: "restart", node: "p1", primary: true });
  });
  test("a witness is neither waited for nor restarted", () => {
    const ms = [...cluster(100, 200), node("w", "other", { healthy: false, state: "running", pending: [], ordered: [] })];
    expect(planRestart(input({ members: ms }))).toMatchObject({ kind: "restart", node: "s2" });
  });
});

describe("mixed changes", () => {
  test("one ordered setting rising and another falling cannot be ordered: refused", () => {
    const two = (from: [number, number], to: [number, number], control: boolean): OrderedValue[] => [
      { name: "max_connections", running: from[0], next: to[0], control: control ? from[0] : null },
      { name: "max_wal_senders", running: from[1], next: to[1], control: control ? from[1] : null },
    ];
    const ms = [
      node("p1", "primary", { ordered: two([100, 10], [200, 5], false) }),
      node("s2", "standby", { ordered: two([100, 10], [200, 5], true) }),
      node("s3", "standby", { ordered: two([100, 10], [200, 5], true) }),
    ];
    expect(planRestart(input({ members: ms })).kind).toBe("blocked");
    expect(planRestart(input({ members: ms, inPlace: true })).kind).toBe("blocked");
  });
});

describe("a standby's start", () => {
  test("a setting configured below pg_control is raised to it for the start; equal, higher or unknown ones are not", () => {
    expect(startFloor(
      { max_connections: 20, max_locks_per_transaction: 64, max_worker_processes: 16, max_wal_senders: 10 },
      { max_connections: 40, max_locks_per_transaction: 64, max_worker_processes: 8, max_prepared_transactions: 5 },
    )).toEqual({ max_connections: 40 });
    expect(startFloor({}, { max_connections: 40 })).toEqual({});
  });
});
