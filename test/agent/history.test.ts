// The role-change history on disk: written off the event loop (an fsync after heavy writes took a
// second in CI and held a leader's heartbeats until its lease ran out), every entry there in the end,
// a failed write said and survived; the failover count it carries (pgherd_failovers_total).
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { History, HistoryEntrySchema, historyForStore, type HistoryEntry } from "../../src/agent/history.ts";
import { renderMetrics } from "../../src/api/metrics.ts";
import { healthFacts } from "../../src/api/source.ts";
import { nodeStatus } from "../api/fake-source.ts";
import { parseProm, sample } from "../api/prom.ts";

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

describe("pgherd_failovers_total: the cluster's failovers, never falling as the capped history trims them", () => {
  const quiet = (dir = stateDir()) => new History(dir, () => {}, async () => {});
  const failover = (term: number): Omit<HistoryEntry, "id" | "at"> => ({ ...entry(term), kind: "failover", reason: `failover ${term}`, newPrimary: "n2" });
  /** What /metrics says for this history. */
  const counter = (history: readonly HistoryEntry[]) => {
    const st = nodeStatus();
    return sample(parseProm(renderMetrics({ status: st, facts: healthFacts(st), view: null, history, apiRejects: {} })), "pgherd_failovers_total");
  };

  test("two failovers, then 1,200 hook and backup entries push them out: the counter stays at 2 all along", () => {
    const h = quiet();
    h.add(failover(1));
    h.add(entry(2));
    h.add(failover(3));
    expect(counter(h.list())).toBe(2);
    let lowest = Infinity;
    for (let i = 0; i < 1200; i++) {
      h.add({ ...entry(4), kind: i % 2 ? "backup" : "hook" });
      if (i % 100 === 99) lowest = Math.min(lowest, counter(h.list()));
    }
    expect(h.list()).toHaveLength(1000);
    expect(h.list().some((e) => e.kind === "failover")).toBe(false);
    expect(lowest).toBe(2);
    expect(counter(h.list())).toBe(2);
    h.add(failover(5));
    expect(counter(h.list())).toBe(3);
  });

  test("the same on every node: a follower merging entries as the mesh brings them, a node joining after the failovers left every history, one reading etcd's 100", () => {
    const leader = quiet();
    const follower = quiet();
    const record = (e: Omit<HistoryEntry, "id" | "at">) => follower.merge([leader.add(e)]);
    record(failover(1));
    record(failover(2));
    for (let i = 0; i < 1100; i++) record(entry(3));
    const late = quiet();
    late.merge(leader.list()); // a peer sends its whole history when the mesh connects
    const fromStore = quiet();
    fromStore.merge(historyForStore(leader.list(), null) ?? []);
    expect([leader, follower, late, fromStore].map((h) => counter(h.list()))).toEqual([2, 2, 2, 2]);
  });

  test("a history.json written before entries carried the count: its failovers count, and keep counting once trimmed", async () => {
    const dir = stateDir();
    const old = (i: number, kind: HistoryEntry["kind"]) => ({ id: `old-${String(i).padStart(4, "0")}`, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), ...entry(i), kind });
    writeFileSync(join(dir, "history.json"), JSON.stringify([old(0, "failover"), old(1, "hook"), old(2, "failover")]));
    const h = quiet(dir);
    expect(counter(h.list())).toBe(2);
    for (let i = 0; i < 1000; i++) h.add(entry(3));
    expect(counter(h.list())).toBe(2);
    // An older pgherd's peer sends a failover without the count: it adds one.
    h.merge([{ ...old(9, "failover"), id: "from-an-older-peer", at: new Date().toISOString() }]);
    expect(counter(h.list())).toBe(3);
    expect(HistoryEntrySchema.safeParse(old(1, "hook")).success).toBe(true);
  });
});
