// The role-change history on disk: written off the event loop (an fsync after heavy writes took a
// second in CI and held a leader's heartbeats until its lease ran out), every entry there in the end,
// a failed write said and survived.
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { History, HistoryEntrySchema, type HistoryEntry } from "../../src/agent/history.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const stateDir = () => {
  const d = mkdtempSync(join(tmpdir(), "pgherd-history-"));
  dirs.push(d);
  return d;
};
const entry = (i: number): Omit<HistoryEntry, "id" | "at"> => ({ term: i, kind: "hook", node: "n1", reason: `run ${i}`, oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
const onDisk = (dir: string) => JSON.parse(readFileSync(join(dir, "history.json"), "utf8")) as HistoryEntry[];

test("an entry is written after add() returns, not within it; every entry of a burst is on disk once flushed", async () => {
  const dir = stateDir();
  const h = new History(dir);
  h.add(entry(0));
  expect(existsSync(join(dir, "history.json"))).toBe(false);
  await h.flushed();
  expect(onDisk(dir).map((e) => e.reason)).toEqual(["run 0"]);
  for (let i = 1; i <= 20; i++) h.add(entry(i));
  expect(onDisk(dir)).toHaveLength(1);
  await h.flushed();
  expect(onDisk(dir)).toHaveLength(21);
  expect(new History(dir).list().map((e) => e.reason)).toEqual(h.list().map((e) => e.reason));
});

test("a write that fails is reported and the agent goes on; the next one writes everything", async () => {
  const dir = stateDir();
  const warned: string[] = [];
  const h = new History(dir, (m) => warned.push(m));
  rmSync(dir, { recursive: true });
  h.add(entry(1));
  await h.flushed();
  expect(warned).toEqual([expect.stringContaining(`history not written to ${join(dir, "history.json")}`)]);
  expect(h.list()).toHaveLength(1);
  // The directory back: the next write brings the first entry with it.
  mkdirSync(dir);
  h.add(entry(2));
  await h.flushed();
  // (entries made within one millisecond keep no order among themselves: by time, then id)
  expect(onDisk(dir).map((e) => e.reason).sort()).toEqual(["run 1", "run 2"]);
});

test("an entry that comes in as a write ends is written too (it once fell between the last check and the writer's reset)", async () => {
  // The second entry arrives 0, 1, 2 … microtask turns after the first write finishes: one of them is
  // the turn between the writer's last look for new entries and its reset.
  for (let turns = 0; turns < 12; turns++) {
    const writes: number[] = [];
    let finish: () => void = () => {};
    const h = new History(stateDir(), () => {}, async (_file, value) => {
      writes.push((value as HistoryEntry[]).length);
      if (writes.length === 1) await new Promise<void>((r) => (finish = r));
    });
    h.add(entry(1));
    finish();
    for (let i = 0; i < turns; i++) await null;
    h.add(entry(2));
    await h.flushed();
    expect({ turns, last: writes.at(-1) }).toEqual({ turns, last: 2 });
  }
});

test("an entry's time is ISO 8601 in UTC, as toISOString writes it: the capped history's sort key takes nothing else", () => {
  const e = { id: "x", term: 1, kind: "config", node: "n1", reason: "r", oldPrimary: null, newPrimary: null, timeline: null, lsn: null };
  expect(HistoryEntrySchema.safeParse({ ...e, at: new Date().toISOString() }).success).toBe(true);
  for (const at of ["zzzz", "9999", "2026-12-05 10:00:00", "2026-12-05T10:00:00+01:00"]) expect(HistoryEntrySchema.safeParse({ ...e, at }).success).toBe(false);
});

test("pgherd_failovers_total (failovers()) never falls as 1,200 hook entries push two failovers out, and a trimmed failover sent again is not counted twice", () => {
  const h = new History(stateDir());
  const failover = (term: number) => h.add({ ...entry(term), kind: "failover", reason: "lost its lease" });
  const first = failover(1);
  failover(2);
  expect(h.failovers()).toBe(2);
  let least = Infinity;
  for (let i = 0; i < 1200; i++) {
    h.add(entry(10 + i));
    least = Math.min(least, h.failovers());
  }
  expect(h.list().some((e) => e.kind === "failover")).toBe(false); // both trimmed
  expect(least).toBe(2);
  expect(h.failovers()).toBe(2);
  h.merge([first]); // a peer that still holds it sends it again: older than the kept 1,000, dropped
  expect(h.failovers()).toBe(2);
  failover(3);
  expect(h.failovers()).toBe(3);
});
