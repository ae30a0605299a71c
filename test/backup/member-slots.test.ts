// When a primary lists its members' slots (src/slots/members.ts): at once whenever the probe's
// slot names, the last listing or the report disagree with the members, else every `every` rounds;
// and which member slots it drops and makes then (planMemberSlots, one test per rule).
import { describe, expect, test } from "bun:test";
import { memberListDue, memberSlotNames, planMemberSlots, type MemberListInput, type MemberSlotInput } from "../../src/slots/members.ts";

const agreed: MemberListInput = { wanted: ["pgherd_b", "pgherd_c"], found: ["pgherd_c", "pgherd_b"], listedFor: ["pgherd_b", "pgherd_c"], reported: ["pgherd_b", "pgherd_c"], skipped: 0, every: 4 };

describe("memberListDue", () => {
  test("all agree: skipped for every - 1 rounds, then listed", () => {
    expect([0, 1, 2, 3].map((skipped) => memberListDue({ ...agreed, skipped }))).toEqual([false, false, false, true]);
  });
  test("a member slot missing on the server (dropped by hand, a new member): listed at once", () => {
    expect(memberListDue({ ...agreed, found: ["pgherd_b"] })).toBe(true);
  });
  test("a member slot of a member that left: listed at once (to drop it)", () => {
    expect(memberListDue({ ...agreed, found: ["pgherd_b", "pgherd_c", "pgherd_d"] })).toBe(true);
  });
  test("the members changed since the last listing: listed at once", () => {
    expect(memberListDue({ ...agreed, wanted: ["pgherd_b"], found: ["pgherd_b"] })).toBe(true);
  });
  test("the report lacks a member's slot (a standby waits for it): listed at once", () => {
    expect(memberListDue({ ...agreed, reported: ["pgherd_b"] })).toBe(true);
  });
  test("the report's other physical slots (a permanent one, an operator's) do not make it due every round", () => {
    const reported = ["pgherd_b", "pgherd_c", "wal_archive", "barman"];
    expect([0, 1, 2, 3].map((skipped) => memberListDue({ ...agreed, reported, skipped }))).toEqual([false, false, false, true]);
    expect(memberListDue({ ...agreed, reported: ["pgherd_b", "wal_archive"] })).toBe(true);
  });
  test("no probe result or no listing yet: listed", () => {
    expect(memberListDue({ ...agreed, found: null })).toBe(true);
    expect(memberListDue({ ...agreed, listedFor: null })).toBe(true);
  });
});

test("memberSlotNames: pgherd's physical slots only", () => {
  expect(memberSlotNames([{ name: "pgherd_b", type: "physical" }, { name: "pgherd_x", type: "logical" }, { name: "backup", type: "physical" }])).toEqual(["pgherd_b"]);
});

describe("planMemberSlots", () => {
  const MIN = 60_000;
  const base = (over: Partial<MemberSlotInput> = {}): MemberSlotInput => ({
    slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }, { name: "pgherd_c", active: false, walStatus: "reserved" }],
    wanted: new Map([["pgherd_b", "b"], ["pgherd_c", "c"]]),
    downForMs: () => 0, retainMs: 30 * MIN, droppedFor: new Set(), ...over,
  });

  test("every member has a usable slot: nothing to do", () => {
    expect(planMemberSlots(base())).toEqual({ drop: [], create: [], forgive: [] });
  });
  test("a member without a slot gets one", () => {
    expect(planMemberSlots(base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }] })).create).toEqual(["pgherd_c"]);
  });
  test("the slot of a member that left is dropped, even in use", () => {
    const p = planMemberSlots(base({ wanted: new Map([["pgherd_c", "c"]]) }));
    expect(p.drop).toEqual([{ name: "pgherd_b", why: "left" }]);
    expect(p.create).toEqual([]);
  });
  test("a member whose data its last report could not read keeps its slot until idle past retainMs, and gets none made (review: one failed pg_controldata dropped it as gone)", () => {
    const unknown = { wanted: new Map([["pgherd_b", "b"]]), kept: new Map([["pgherd_c", "c"]]) };
    expect(planMemberSlots(base({ ...unknown, downForMs: (id) => (id === "c" ? 5 * MIN : 0) }))).toEqual({ drop: [], create: [], forgive: [] });
    expect(planMemberSlots(base({ ...unknown, downForMs: (id) => (id === "c" ? 31 * MIN : 0) })).drop).toEqual([{ name: "pgherd_c", why: "down", id: "c", downMs: 31 * MIN }]);
    expect(planMemberSlots(base({ ...unknown, slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }] })).create).toEqual([]);
  });
  test("a member down past retainMs loses its idle slot and gets none while it stays away", () => {
    const down = (id: string) => (id === "c" ? 31 * MIN : 0);
    expect(planMemberSlots(base({ downForMs: down })).drop).toEqual([{ name: "pgherd_c", why: "down", id: "c", downMs: 31 * MIN }]);
    expect(planMemberSlots(base({ downForMs: down })).create).toEqual([]);
    expect(planMemberSlots(base({ downForMs: (id) => (id === "c" ? 29 * MIN : 0) })).drop).toEqual([]);
    const later = base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }], downForMs: down, droppedFor: new Set(["c"]) });
    expect(planMemberSlots(later)).toEqual({ drop: [], create: [], forgive: [] });
  });
  test("a member back after its slot was dropped for being down gets a new one", () => {
    const back = base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }], droppedFor: new Set(["c"]) });
    expect(planMemberSlots(back)).toEqual({ drop: [], create: ["pgherd_c"], forgive: ["c"] });
  });
  test("a slot PostgreSQL invalidated (wal_status lost) is dropped and made again", () => {
    const p = planMemberSlots(base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }, { name: "pgherd_c", active: false, walStatus: "lost" }] }));
    expect(p.drop).toEqual([{ name: "pgherd_c", why: "lost" }]);
    expect(p.create).toEqual(["pgherd_c"]);
  });
  test("an invalidated slot a standby is connected to is dropped and made again too (before 18 PostgreSQL lets a standby use one)", () => {
    const p = planMemberSlots(base({ slots: [{ name: "pgherd_b", active: true, walStatus: "lost" }, { name: "pgherd_c", active: false, walStatus: "unreserved" }] }));
    expect(p).toEqual({ drop: [{ name: "pgherd_b", why: "lost" }], create: ["pgherd_b"], forgive: [] });
  });
  test("an invalidated slot of a member down past retainMs goes as a down member's: not made again while it stays away", () => {
    const p = planMemberSlots(base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }, { name: "pgherd_c", active: false, walStatus: "lost" }], downForMs: (id) => (id === "c" ? 31 * MIN : 0) }));
    expect(p).toEqual({ drop: [{ name: "pgherd_c", why: "down", id: "c", downMs: 31 * MIN }], create: [], forgive: [] });
  });
  test("an invalidated slot of a member whose slot went for being down, still away: dropped, not made again", () => {
    const p = planMemberSlots(base({ slots: [{ name: "pgherd_b", active: true, walStatus: "reserved" }, { name: "pgherd_c", active: false, walStatus: "lost" }], downForMs: (id) => (id === "c" ? 5 * MIN : 0), droppedFor: new Set(["c"]) }));
    expect(p).toEqual({ drop: [{ name: "pgherd_c", why: "lost" }], create: [], forgive: [] });
  });
});
