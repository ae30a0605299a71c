// composeView passes the leader's scheduled switchover through, and the view's schema (what a
// follower accepts from the leader over the mesh) bounds it.
import { describe, expect, test } from "bun:test";
import { ClusterViewSchema, composeView, type ViewInput } from "../../src/core/cluster-view.ts";

const base: ViewInput = { cluster: "c", term: 4, leader: "a", members: [{ id: "a", name: "n1", role: "database", host: "10.0.0.1", voter: true, reachable: true, report: null }], slotOf: (id) => `pgherd_${id}` };
const scheduled = { at: "2026-12-01T17:00:00.000Z", to: "n2", requestedAt: "2026-12-01T16:00:00.000Z" };

describe("scheduled switchover in the cluster view", () => {
  test("passed through when the leader has one, and valid for the schema", () => {
    const v = composeView({ ...base, scheduledSwitchover: scheduled });
    expect(v.scheduledSwitchover).toEqual(scheduled);
    expect(ClusterViewSchema.parse(v)).toEqual(v);
    const any = composeView({ ...base, scheduledSwitchover: { ...scheduled, to: null } });
    expect(any.scheduledSwitchover?.to).toBeNull();
  });

  test("absent when there is none", () => {
    expect("scheduledSwitchover" in composeView(base)).toBe(false);
    expect("scheduledSwitchover" in composeView({ ...base, scheduledSwitchover: null })).toBe(false);
  });

  test("the schema refuses a time that is not ISO 8601 with an offset, and over-long names", () => {
    const v = composeView(base);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, at: "tomorrow" } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, at: "2026-12-01T17:00:00" } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, to: "x".repeat(65) } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, extra: 1 } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: null }).success).toBe(true);
  });
});
