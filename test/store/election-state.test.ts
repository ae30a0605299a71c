// election.json keeps the shape earlier versions read (their schema is strict): the leader's hold
// lives in a file of its own, so a rollback still starts, and a restart still has the hold.
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ELECTION_FILE, ElectionStore, ETCD_KEY_FILE, HOLD_FILE } from "../../src/store/election-state.ts";

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

test("the etcd leader key this node took is recorded in a file of its own, read back after a restart, and removed with null; a corrupt record stops the start", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-election-"));
  try {
    const s = new ElectionStore(dir);
    expect(s.etcdKey()).toBeNull();
    s.saveEtcdKey(1234);
    expect(JSON.parse(readFileSync(join(dir, ETCD_KEY_FILE), "utf8"))).toEqual({ term: 1234 });
    expect(existsSync(join(dir, ELECTION_FILE))).toBe(false); // election.json untouched
    expect(new ElectionStore(dir).etcdKey()).toBe(1234); // after a restart
    s.saveEtcdKey(null);
    expect(existsSync(join(dir, ETCD_KEY_FILE))).toBe(false);
    expect(new ElectionStore(dir).etcdKey()).toBeNull();
    writeFileSync(join(dir, ETCD_KEY_FILE), "{");
    expect(() => new ElectionStore(dir)).toThrow(ETCD_KEY_FILE);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
