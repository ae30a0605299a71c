// The monitoring round's end-of-WAL scan of a stopped server (src/agent/pg/wal-end.ts): one scan per
// change of the WAL files, never two at a time; the round waits for it only when asked (the first
// round), otherwise it runs on and the round is told when its result is known; a failed scan is
// tried again for the same files only after a while; another major version's WAL is not read.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { isRoot } from "../../src/postgres/users.ts";
import { join } from "node:path";
import { StoppedWal } from "../../src/agent/pg/wal-end.ts";
import { memoryLogger } from "../../src/log.ts";
import type { PgNode } from "../../src/postgres/ctl.ts";
import type { ControlData } from "../../src/postgres/datadir.ts";
import type { findWalEndOn, TimelineWalEnd } from "../../src/postgres/wal-end.ts";
import { FakeClock } from "./_clock.ts";

const me = isRoot() ? "root" : userInfo().username;
const top = mkdtempSync("/tmp/pgherd-stopped-wal-");
afterAll(() => rmSync(top, { recursive: true, force: true }));

const control = { checkpointLsn: "0/4000060", timeline: 1, raw: {} } as unknown as ControlData;

function setup(name: string) {
  const dataDir = join(top, name);
  mkdirSync(join(dataDir, "pg_wal"), { recursive: true });
  const seg = (n: string, bytes = "x") => writeFileSync(join(dataDir, "pg_wal", n), bytes);
  seg("000000010000000000000004");
  const log = memoryLogger();
  const clock = new FakeClock();
  const node: PgNode = { bins: { dir: "/nonexistent", version: 15, versionString: "15" }, dataDir, osUser: me, log };
  const calls: number[] = [];
  let answer: TimelineWalEnd = { timeline: 1, lsn: "0/4976348", from: "000000010000000000000004", runs: 2 };
  let release: () => void = () => {};
  let held = false;
  const find: typeof findWalEndOn = async (_n, _c, timelines) => {
    calls.push(timelines[0]!);
    if (held) await new Promise<void>((r) => (release = r));
    return answer;
  };
  let found = 0;
  const wal = new StoppedWal({ node, clock, log }, () => found++, find);
  return {
    wal, clock, log, seg, calls, found: () => found,
    answer: (a: TimelineWalEnd) => (answer = a),
    hold: () => (held = true),
    release: () => { held = false; release(); },
  };
}

test("the first round waits for the scan; the same files are not read again", async () => {
  const t = setup("first");
  expect(await t.wal.end(control, 15, [1], true)).toEqual({ timeline: 1, lsn: "0/4976348" });
  expect(t.calls).toEqual([1]);
  expect(t.found()).toBe(0); // the round waited for it: nothing to publish later
  for (let i = 0; i < 5; i++) expect(await t.wal.end(control, 15, [1], false)).toEqual({ timeline: 1, lsn: "0/4976348" });
  expect(t.calls).toEqual([1]);
  expect(t.log.lines.some((l) => l.includes("its WAL on timeline 1 ends at 0/4976348"))).toBe(true);
});

test("a later round does not wait: the scan runs on, the round is told when it is done, and the next one has it", async () => {
  const t = setup("later");
  expect(await t.wal.end(control, 15, [1], true)).not.toBeNull();
  // New WAL (the server ran and stopped again): a write, and a new segment.
  t.seg("000000010000000000000004", "xy");
  t.seg("000000010000000000000005");
  t.answer({ timeline: 1, lsn: "0/5000128", from: "000000010000000000000005", runs: 2 });
  t.hold();
  expect(await t.wal.end(control, 15, [1], false)).toBeNull();
  expect(await t.wal.end(control, 15, [1], false)).toBeNull(); // running: not started twice
  expect(t.calls).toEqual([1, 1]);
  expect(t.found()).toBe(0);
  t.release();
  await Bun.sleep(0);
  expect(t.found()).toBe(1);
  expect(await t.wal.end(control, 15, [1], false)).toEqual({ timeline: 1, lsn: "0/5000128" });
  expect(t.calls).toEqual([1, 1]);
  // Only a change of the newest segment written counts, mtime included; another timeline or
  // checkpoint is another key.
  utimesSync(join(top, "later", "pg_wal", "000000010000000000000005"), new Date(), new Date(Date.now() + 5000));
  await t.wal.end(control, 15, [1], true);
  await t.wal.end({ ...control, checkpointLsn: "0/5000028" } as ControlData, 15, [1], true);
  t.seg("000000020000000000000005");
  await t.wal.end(control, 15, [2], true);
  expect(t.calls).toEqual([1, 1, 1, 1, 2]);
  // Timelines above pg_control's, highest first: the position is on the one whose end was found.
  t.answer({ timeline: 2, lsn: "0/5000220", from: "000000020000000000000005", runs: 2 });
  expect(await t.wal.end(control, 15, [2, 1], true)).toEqual({ timeline: 2, lsn: "0/5000220" });
  expect(t.calls).toEqual([1, 1, 1, 1, 2, 2]);
});

test("no WAL on its timelines is \"none\" (pg_control's position stands), known until the files change", async () => {
  const t = setup("none");
  t.answer({ timeline: null, lsn: null, why: "timeline 1: no segment", runs: 0, absent: true });
  expect(await t.wal.end(control, 15, [1], true)).toBe("none");
  expect(await t.wal.end(control, 15, [1], true)).toBe("none");
  expect(t.calls).toEqual([1]);
  expect(t.log.lines.some((l) => l.includes("no WAL on timeline 1"))).toBe(true);
});

test("a failed scan leaves the published position to pg_control (and no vote): tried again for the same files only after 30 s", async () => {
  const t = setup("failed");
  t.answer({ timeline: null, lsn: null, why: "pg_waldump gave no answer within 10000 ms", runs: 1, absent: false });
  expect(await t.wal.end(control, 15, [1], true)).toBeNull();
  expect(t.log.lines.some((l) => l.includes("is not known (pg_waldump gave no answer within 10000 ms"))).toBe(true);
  expect(await t.wal.end(control, 15, [1], false)).toBeNull();
  expect(t.calls).toEqual([1]);
  await t.clock.advance(30_000);
  t.answer({ timeline: 1, lsn: "0/4976348", from: "000000010000000000000004", runs: 2 });
  expect(await t.wal.end(control, 15, [1], true)).toEqual({ timeline: 1, lsn: "0/4976348" });
  expect(t.calls).toEqual([1, 1]);
});

test("a scan that throws is a failed one; another major version's data directory, or no pg_wal, is not read", async () => {
  const t = setup("throws");
  const wal = new StoppedWal({ node: { bins: { dir: "/x", version: 15, versionString: "15" }, dataDir: join(top, "throws"), osUser: me, log: t.log }, clock: t.clock, log: t.log }, () => {}, async () => {
    throw new Error("spawn failed");
  });
  expect(await wal.end(control, 15, [1], true)).toBeNull();
  expect(t.log.lines.some((l) => l.includes("reading the end of its WAL failed (spawn failed)"))).toBe(true);
  expect(await t.wal.end(control, 14, [1], true)).toBeNull();
  expect(t.calls).toEqual([]);
  rmSync(join(top, "throws", "pg_wal"), { recursive: true });
  expect(await t.wal.end(control, 15, [1], true)).toBeNull();
  expect(t.calls).toEqual([]);
});
