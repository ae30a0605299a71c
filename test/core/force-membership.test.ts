// `pgherd member force` (src/core/force-membership.ts): one test per rule.
import { describe, expect, test } from "bun:test";
import { planForcedMembership, type ForceInput } from "../../src/core/force-membership.ts";
import { compareVersion, versionOf } from "../../src/core/election-membership.ts";

const [A, B, C, D, E] = ["a000000000000001", "b000000000000002", "c000000000000003", "d000000000000004", "e000000000000005"];
const input = (over: Partial<ForceInput> = {}): ForceInput => ({
  term: 7, membership: { term: 6, index: 3, voters: [A, B, C] }, self: C, canLead: true, keep: [C], ...over,
});

describe("forced membership", () => {
  test("the survivors become the voters, the others removed; term and version move past everything this node holds, no vote", () => {
    const p = planForcedMembership(input());
    expect(p).toEqual({ ok: true, term: 8, membership: { term: 8, index: 4, voters: [C], removed: [A, B] }, lost: [A, B] });
    if (!p.ok) return;
    expect(compareVersion(versionOf(p.membership), versionOf(input().membership))).toBeGreaterThan(0);
    // A stored term below the membership's (it adopted a later leader's membership first) still moves past both.
    expect(planForcedMembership(input({ term: 5 }))).toMatchObject({ ok: true, term: 7 });
  });

  test("two survivors of five keep each other; approvals of the lost go, earlier removals stay", () => {
    const m = { term: 6, index: 3, voters: [A, B, C, D, E], approved: [A, "f000000000000006"], removed: ["9000000000000009"] };
    const p = planForcedMembership(input({ membership: m, keep: [D, C, C] }));
    expect(p).toMatchObject({ ok: true, membership: { voters: [C, D], approved: ["f000000000000006"], removed: ["9000000000000009", A, B, E] }, lost: [A, B, E] });
  });

  test("refused while the kept voters are a majority: the cluster elects a leader, and member remove goes through it", () => {
    expect(planForcedMembership(input({ keep: [B, C] }))).toMatchObject({ ok: false, reason: expect.stringContaining("are a majority") });
    expect(planForcedMembership(input({ membership: { term: 1, index: 0, voters: [C] } }))).toMatchObject({ ok: false, reason: expect.stringContaining("1 of 1 voters are a majority") });
  });

  test("refused for a node that is not a voter, for a list without this node, and without a membership", () => {
    expect(planForcedMembership(input({ keep: [C, "f000000000000006"] }))).toMatchObject({ ok: false, reason: expect.stringContaining("not a voter") });
    expect(planForcedMembership(input({ keep: [A] }))).toMatchObject({ ok: false, reason: expect.stringContaining("this node (c000000000000003) is not among") });
    expect(planForcedMembership(input({ membership: null }))).toMatchObject({ ok: false, reason: expect.stringContaining("never joined") });
  });

  test("a witness alone cannot be the voters (it never leads); with a database node it may", () => {
    expect(planForcedMembership(input({ canLead: false }))).toMatchObject({ ok: false, reason: expect.stringContaining("witness") });
    const five = { term: 6, index: 3, voters: [A, B, C, D, E] };
    expect(planForcedMembership(input({ canLead: false, membership: five, keep: [C, D] }))).toMatchObject({ ok: true });
  });
});
