// The walsender check before the primary confirms standbys left out of synchronous_standby_names
// (src/agent/pg/sync-exclusion.ts): which walsenders count, or may count, as synchronous.
import { expect, test } from "bun:test";
import { countingWalsenders, syncCandidatesInForce } from "../../src/postgres/promote.ts";
import type { Db } from "../../src/postgres/sql.ts";

test("a member's walsender without a flush position yet counts as unconfirmed; others by sync_priority", async () => {
  expect(countingWalsenders([
    { name: "pgherd_b", syncPriority: 0, noFlush: true }, // starting: not known yet
    { name: "pgherd_c", syncPriority: 1, noFlush: false },
    { name: "pgherd_d", syncPriority: 0, noFlush: false },
    { name: "psql", syncPriority: 0, noFlush: true }, // not a member
    { name: "pgherd_e_clone", syncPriority: 0, noFlush: true, backup: true }, // a base backup never acknowledges commits
    { name: "pgherd_e_clone", syncPriority: 0, noFlush: true }, // nor a clone's WAL stream (never named)
  ])).toEqual(["pgherd_b", "pgherd_c"]);
  const rows: Record<string, unknown[]> = {
    "synchronous_standby_names": [{ v: 'ANY 1 ("pgherd_c")' }],
    "sync candidates": [{ name: "pgherd_b", sync_priority: 0, no_flush: true }, { name: "pgherd_c", sync_priority: 1, no_flush: false }, { name: "pgherd_e_clone", sync_priority: 0, no_flush: true, backup: true }],
  };
  const db = { query: async (what: string) => rows[what] ?? [] } as unknown as Db;
  expect(await syncCandidatesInForce(db)).toEqual({ names: 'ANY 1 ("pgherd_c")', counting: ["pgherd_b", "pgherd_c"] });
});
