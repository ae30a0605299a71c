// election.json keeps the shape earlier versions read (their schema is strict): the leader's hold
// lives in a file of its own, so a rollback still starts, and a restart still has the hold.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ElectionStore, HOLD_FILE } from "../../src/store/election-state.ts";

test("the hold is stored beside election.json, whose keys stay those of earlier versions (re-review: a rollback refused the file)", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-election-"));
  try {
    const s = new ElectionStore(dir);
    s.saveElection({ term: 3, votedFor: null, membership: null, hold: 5205 });
    const file = JSON.parse(readFileSync(join(dir, "election.json"), "utf8"));
    expect(Object.keys(file).sort()).toEqual(["bootstrapVote", "guard", "ledTerm", "membership", "term", "votedFor"]);
    expect(JSON.parse(readFileSync(join(dir, HOLD_FILE), "utf8"))).toEqual({ hold: 5205 });
    expect(new ElectionStore(dir).get()).toMatchObject({ term: 3, hold: 5205 }); // after a restart
    s.saveElection({ term: 4, votedFor: "aaaaaaaaaaaaaaaa", membership: null }); // without a hold: kept
    expect(new ElectionStore(dir).get()).toMatchObject({ term: 4, hold: 5205 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
