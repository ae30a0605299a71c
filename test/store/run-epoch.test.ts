// A run's epoch is above every earlier run's of the node (core/sync-exclusion.ts laterMessage orders
// a leader's messages by it), even when the wall clock goes back, and at least the wall clock.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StoreError } from "../../src/store/durable.ts";
import { nextRunEpoch, RUN_EPOCH_FILE } from "../../src/store/run-epoch.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-run-epoch-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("each run's epoch is above the last one's, whatever the clock does; the file is private", () => {
  const dir = mkdtempSync(join(root, "a-"));
  const first = nextRunEpoch(dir, 5_000);
  expect(first).toBe(5_000);
  expect(statSync(join(dir, RUN_EPOCH_FILE)).mode & 0o777).toBe(0o600);
  expect(nextRunEpoch(dir, 4_000)).toBe(5_001); // the clock went back
  expect(nextRunEpoch(dir, 5_001)).toBe(5_002); // the same millisecond
  expect(nextRunEpoch(dir, 9_000)).toBe(9_000);
});

test("a file that does not validate stops the start, naming it", () => {
  const dir = mkdtempSync(join(root, "b-"));
  writeFileSync(join(dir, RUN_EPOCH_FILE), '{"epoch": -1}');
  expect(() => nextRunEpoch(dir)).toThrow(StoreError);
  expect(() => nextRunEpoch(dir)).toThrow(RUN_EPOCH_FILE);
});
