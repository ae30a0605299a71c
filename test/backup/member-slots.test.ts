// When a primary lists its members' slots (src/slots/members.ts): at once whenever the probe's
// slot names, the last listing or the report disagree with the members, else every `every` rounds.
import { describe, expect, test } from "bun:test";
import { memberListDue, memberSlotNames, type MemberListInput } from "../../src/slots/members.ts";

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
  test("no probe result or no listing yet: listed", () => {
    expect(memberListDue({ ...agreed, found: null })).toBe(true);
    expect(memberListDue({ ...agreed, listedFor: null })).toBe(true);
  });
});

test("memberSlotNames: pgherd's physical slots only", () => {
  expect(memberSlotNames([{ name: "pgherd_b", type: "physical" }, { name: "pgherd_x", type: "logical" }, { name: "backup", type: "physical" }])).toEqual(["pgherd_b"]);
});
