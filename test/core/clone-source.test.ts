// Where a clone copies from (src/core/clone-source.ts): one test per rule.
import { expect, test } from "bun:test";
import { cloneSource } from "../../src/core/clone-source.ts";

test("without clone_from = backup (and pgBackRest): always the primary", () => {
  for (const stuck of [false, true]) for (const lastCloneRestored of [false, true]) expect(cloneSource({ restoreConfigured: false, stuck, lastCloneRestored })).toBe("primary");
});

test("with it: the latest backup, for a stuck standby too when its data did not come from a restore", () => {
  expect(cloneSource({ restoreConfigured: true, stuck: false, lastCloneRestored: false })).toBe("backup");
  expect(cloneSource({ restoreConfigured: true, stuck: false, lastCloneRestored: true })).toBe("backup");
  expect(cloneSource({ restoreConfigured: true, stuck: true, lastCloneRestored: false })).toBe("backup");
});

test("a standby restored from the latest backup that then could not stream is cloned from the primary: the same backup would stop at the same gap in the archive", () => {
  expect(cloneSource({ restoreConfigured: true, stuck: true, lastCloneRestored: true })).toBe("primary");
});
