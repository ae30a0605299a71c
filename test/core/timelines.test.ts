// Timeline planning of a promotion (src/core/timelines.ts): PostgreSQL's walk over the history
// files in pg_wal, and the placeholders that keep a promotion above the cluster's reservation.
import { expect, test } from "bun:test";
import { isPlaceholder, mayRestartInPlace, maxTimeline, placeholderText, planTimeline, withTimeline } from "../../src/core/timelines.ts";

const files = (...n: number[]) => (x: number) => n.includes(x);

test("without a reservation above it the promotion takes the timeline after PostgreSQL's own walk, with no placeholder", () => {
  expect(planTimeline(1, files(), undefined)).toEqual({ fill: [], next: 2 });
  expect(planTimeline(3, files(2, 3), 3)).toEqual({ fill: [], next: 4 });
  // history files above the recovery target (fetched, not switched to yet): PostgreSQL walks them too
  expect(planTimeline(3, files(3, 4, 5), 2)).toEqual({ fill: [], next: 6 });
  // an estimate below the real target: the walk finds it
  expect(planTimeline(1, files(2, 3), undefined)).toEqual({ fill: [], next: 4 });
});

test("numbers reserved by others get placeholders, so that the walk passes them; gaps below the target are left alone", () => {
  expect(planTimeline(3, files(3), 4)).toEqual({ fill: [4], next: 5 });
  expect(planTimeline(3, files(3), 6)).toEqual({ fill: [4, 5, 6], next: 7 });
  expect(planTimeline(3, files(3, 5), 6)).toEqual({ fill: [4, 6], next: 7 });
  expect(planTimeline(3, files(3, 7), 6)).toEqual({ fill: [4, 5, 6], next: 8 }); // 7 exists (the archive's, say): past it too
  expect(planTimeline(5, files(5), 4)).toEqual({ fill: [], next: 6 }); // timeline 2..4 missing below the target: not touched
});

test("a former primary restarts in place only at or above the reservation", () => {
  expect(mayRestartInPlace(3, undefined)).toBe(true);
  expect(mayRestartInPlace(3, 3)).toBe(true);
  expect(mayRestartInPlace(4, 3)).toBe(true);
  expect(mayRestartInPlace(3, 4)).toBe(false);
  expect(mayRestartInPlace(null, 4)).toBe(false);
});

test("reservations only grow; a guard without one carries no key", () => {
  expect(maxTimeline(undefined, undefined)).toBeUndefined();
  expect(maxTimeline(3, undefined)).toBe(3);
  expect(maxTimeline(undefined, 5)).toBe(5);
  expect(maxTimeline(6, 5)).toBe(6);
  type G = { seq: number; timeline?: number };
  expect(withTimeline<G>({ seq: 1, timeline: 4 }, undefined)).toEqual({ seq: 1 });
  expect(withTimeline<G>({ seq: 1 }, 5)).toEqual({ seq: 1, timeline: 5 });
});

test("a placeholder is recognised by its first line, and holds only comments", () => {
  const t = placeholderText(4, 9);
  expect(isPlaceholder(t)).toBe(true);
  expect(t.split("\n").filter(Boolean).every((l) => l.startsWith("#"))).toBe(true);
  expect(isPlaceholder("1\t0/3000000\tno recovery target specified\n")).toBe(false);
});
