// The fencer: one stop and one history entry per lost lease, never queued behind a PostgreSQL
// task, and no primary brought up without a lease this agent armed after the fence. A real lease
// file in a temp dir; the stop of PostgreSQL is a function the test controls.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SerialExecutor } from "../../src/agent/pg/executor.ts";
import { Fencer, NoLease } from "../../src/fence/fencer.ts";
import { HostClock } from "../../src/fence/clock.ts";
import { LEASE_FILE, LeaseFile } from "../../src/fence/lease-file.ts";
import { createLogger } from "../../src/log.ts";
import { fakeWatchdog, killFakeWatchdogs } from "../helpers/fake-watchdog.ts";
import { deferred, FakeClock, settle } from "./_clock.ts";

let dir: string;
const log = createLogger("error");
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-fencer-"));
});
afterAll(() => {
  killFakeWatchdogs();
  rmSync(dir, { recursive: true, force: true });
});

/** A fencer over a fresh state dir; `stop` is what "stop PostgreSQL" does; `primary` what the last round saw. */
function setup(o: { stop?: () => Promise<void>; primary?: boolean; running?: boolean; hostClock?: HostClock } = {}) {
  const d = join(dir, `s${n++}`);
  mkdirSync(d);
  fakeWatchdog(d);
  const lease = new LeaseFile(d, "/data", process.getuid!(), log, null, o.hostClock);
  const clock = new FakeClock();
  const stops: number[] = [];
  const history: string[] = [];
  const state = { primary: o.primary ?? true, running: o.running ?? true };
  const fencer = new Fencer({
    lease, log, clock,
    stopPostgres: async () => {
      stops.push(clock.now());
      await o.stop?.();
      const was = state.running;
      state.primary = false;
      state.running = false;
      return was;
    },
    primaryMayRun: () => state.primary,
    primaryStarted: () => {
      state.primary = true;
      state.running = true;
    },
    record: (reason) => history.push(reason),
  });
  const file = () => JSON.parse(readFileSync(join(d, LEASE_FILE), "utf8"));
  return { fencer, lease, clock, stops, history, state, file, dir: d };
}

test("concurrent fence calls share one stop and one history entry", async () => {
  const gate = deferred();
  const s = setup({ stop: () => gate.promise });
  s.fencer.arm(3, performance.now() + 5000);
  const a = s.fencer.fence("lost leadership");
  const b = s.fencer.fence("this node is not the leader but its PostgreSQL runs as a primary");
  expect(a).toBe(b);
  gate.resolve();
  await Promise.all([a, b]);
  expect(s.stops.length).toBe(1);
  expect(s.history).toEqual([expect.stringContaining("lost leadership: primary stopped in")]);
  expect(s.fencer.fences).toBe(1);
});

test("the fence starts at once while a long task holds the PostgreSQL executor", async () => {
  const s = setup();
  const ex = new SerialExecutor(s.clock);
  const clone = deferred();
  void ex.run("clone", () => clone.promise);
  await settle();
  await s.fencer.fence("lost leadership"); // resolves although the clone still runs
  expect(ex.running).toBe("clone");
  expect(s.stops.length).toBe(1);
  clone.resolve();
});

test("no primary without a lease armed by this agent, and none after a fence until a new lease", async () => {
  const s = setup({ primary: false });
  let started = 0;
  const startPrimary = () => s.fencer.asPrimary("start as primary", async () => {
    started++;
  });
  await expect(startPrimary()).rejects.toBeInstanceOf(NoLease); // never armed
  s.fencer.arm(4, performance.now() + 5000);
  await startPrimary();
  expect(started).toBe(1);
  await s.fencer.fence("lost leadership");
  await expect(startPrimary()).rejects.toBeInstanceOf(NoLease);
  expect(started).toBe(1);
  s.fencer.arm(6, performance.now() + 5000); // a new lease
  await startPrimary();
  expect(started).toBe(2);
});

test("an expired lease is no lease", async () => {
  const s = setup();
  s.fencer.arm(4, performance.now() - 1);
  await expect(s.fencer.asPrimary("promote", async () => "promoted")).rejects.toBeInstanceOf(NoLease);
});

test("a start as primary under way when the lease is lost is stopped again when it ends, and fails", async () => {
  const s = setup({ primary: false, running: false });
  s.fencer.arm(7, performance.now() + 5000);
  const starting = deferred();
  const task = s.fencer.asPrimary("start as primary", async () => {
    await starting.promise; // pg_ctl start -w: the postmaster is not there yet when the fence comes
    s.state.primary = true;
    s.state.running = true;
  });
  let outcome: unknown = "pending";
  task.then((v) => (outcome = v), (e) => (outcome = e));
  // The last round saw no primary, but a start is in flight: the fence stops at once anyway.
  await s.fencer.fence("lost leadership");
  expect(s.stops.length).toBe(1);
  expect(s.history).toEqual([]); // nothing was running yet
  starting.resolve();
  await settle();
  expect(outcome).toBeInstanceOf(NoLease);
  expect(s.stops.length).toBe(2); // what the start brought up went down again before the task returned
  expect(s.state.running).toBe(false);
  expect(s.history).toEqual([expect.stringContaining("start as primary ended after the lease was lost: primary stopped in")]);
});

test("a fence with no primary here stops nothing and records nothing, but still revokes the lease", async () => {
  const s = setup({ primary: false });
  s.fencer.arm(2, performance.now() + 5000);
  await s.fencer.fence("lost leadership");
  expect(s.stops).toEqual([]);
  expect(s.history).toEqual([]);
  expect(s.fencer.holds()).toBe(false);
});

test("the lease file keeps its deadline after a fence; it is disarmed only once nothing is left to guard", async () => {
  const s = setup();
  s.fencer.arm(5, performance.now() + 5000);
  const deadline = s.file().deadline;
  expect(deadline).toBeNumber();
  s.fencer.settle(5, { leading: true, acquiringLease: false, primaryRunning: true });
  expect(s.file().deadline).toBe(deadline);
  await s.fencer.fence("lost leadership");
  expect(s.file().deadline).toBe(deadline); // the watchdog still guards if the stop had failed
  s.fencer.settle(5, { leading: false, acquiringLease: false, primaryRunning: true });
  expect(s.file().deadline).toBe(deadline);
  s.fencer.settle(5, { leading: false, acquiringLease: true, primaryRunning: false });
  expect(s.file().deadline).toBe(deadline);
  s.fencer.settle(5, { leading: false, acquiringLease: false, primaryRunning: false });
  expect(s.file()).toMatchObject({ deadline: null, term: 5 });
});

test("a second fence that finds the server already stopped records nothing", async () => {
  const s = setup();
  s.fencer.arm(3, performance.now() + 5000);
  await s.fencer.fence("lost leadership");
  s.state.primary = true; // a round that observed the primary before the stop decides "fence"
  await s.fencer.fence("this node is not the leader but its PostgreSQL runs as a primary");
  expect(s.stops.length).toBe(2);
  expect(s.history.length).toBe(1);
  expect(s.fencer.fences).toBe(1);
});

test("a failed stop is recorded once and left to the watchdog", async () => {
  const s = setup({ stop: async () => Promise.reject(new Error("pg_ctl: could not send stop signal")) });
  s.fencer.arm(8, performance.now() + 5000);
  await s.fencer.fence("lost leadership");
  expect(s.history).toEqual([expect.stringContaining("stop failed (pg_ctl: could not send stop signal); left to the watchdog")]);
});

test("the watchdog check runs on its own timer until stop()", async () => {
  const s = setup();
  s.fencer.start();
  expect(s.clock.pending).toBe(1);
  await s.clock.advance(3000);
  expect(s.clock.pending).toBe(1); // re-armed after each check
  expect(s.file().agentPid).toBe(process.pid); // the first check announced this agent
  s.fencer.stop();
  expect(s.clock.pending).toBe(0);
});

// Review finding (fencing watchdog, 1): arm() counted the lease as held before its write, so a
// state_dir that could not be written (full, read-only) left a primary the watchdog did not guard.
test("a lease the file could not take is no lease: arm says so, the primary is fenced, none starts until a write succeeds", async () => {
  const s = setup();
  const blocker = join(s.dir, "lease.tmp");
  mkdirSync(blocker); // the write fails as ENOSPC or EROFS would (root writes a read-only directory anyway)
  expect(s.fencer.arm(5, performance.now() + 5000)).toBe(false);
  expect(s.fencer.holds()).toBe(false);
  await settle();
  expect(s.stops.length).toBe(1); // the running primary was stopped
  await expect(s.fencer.asPrimary("start as primary", async () => {})).rejects.toBeInstanceOf(NoLease);
  rmdirSync(blocker);
  expect(s.fencer.arm(5, performance.now() + 5000)).toBe(true);
  expect(s.fencer.holds()).toBe(true);
  expect(s.file()).toMatchObject({ term: 5 });
  // An extension whose write fails while the written lease still runs: tried again, nothing fenced
  // (one failed write of a heartbeat must not stop a healthy primary); the lease held is the one written.
  mkdirSync(blocker);
  const written = s.file().deadline;
  expect(s.fencer.arm(5, performance.now() + 9000)).toBe(true);
  expect(s.stops.length).toBe(1);
  expect(s.file().deadline).toBe(written);
  // A shorter lease end the file cannot take: the watchdog would guard the longer one, so fenced and given up.
  expect(s.fencer.arm(5, performance.now() + 1000)).toBe(false);
  await settle();
  expect(s.fencer.holds()).toBe(false);
  rmdirSync(blocker);
});

// Review (host suspend): the lease file's deadline for a lease counted before a suspend has passed on
// the host clock, while the agent's performance.now() says it still runs.
test("a lease end already past on the host clock (a host suspend since it was counted) is no lease: arm says so, the primary is fenced, none starts", async () => {
  // The local clock ahead of performance.now(), which holds() compares the lease end with (a fixed
  // 10 s start failed once the test process had run that long).
  let local = performance.now() + 10_000;
  let host = 50_000;
  const s = setup({ hostClock: new HostClock(1000, () => host, () => local, 1500) });
  expect(s.fencer.arm(3, local + 1000)).toBe(true);
  local += 900;
  host += 900;
  const until = local + 1000; // the last heartbeat before the suspend that a majority acknowledged
  expect(s.fencer.arm(3, until)).toBe(true);
  host += 10_000; // suspended 10 s
  local += 150;
  host += 150; // the next heartbeat tick: the core's lease still runs on performance.now()
  expect(s.fencer.arm(3, until)).toBe(false);
  expect(s.fencer.holds()).toBe(false);
  await settle();
  expect(s.stops.length).toBe(1);
  expect(s.history).toEqual([expect.stringContaining("had ended on the host clock")]);
  await expect(s.fencer.asPrimary("start as primary", async () => {})).rejects.toBeInstanceOf(NoLease);
  // A lease counted after the resume is one.
  expect(s.fencer.arm(4, local + 1500)).toBe(true);
  expect(s.fencer.holds()).toBe(true);
});

// Review finding (fencing watchdog, 8): a disarm whose write failed threw out of every monitoring round.
test("a disarm whose write fails is logged and tried again by the next round, never thrown", () => {
  const s = setup({ primary: false, running: false });
  s.fencer.arm(6, performance.now() + 5000);
  const blocker = join(s.dir, "lease.tmp");
  mkdirSync(blocker);
  expect(() => s.fencer.settle(6, { leading: false, acquiringLease: false, primaryRunning: false })).not.toThrow();
  expect(s.file().deadline).not.toBeNull(); // still the armed record
  rmdirSync(blocker);
  s.fencer.settle(6, { leading: false, acquiringLease: false, primaryRunning: false });
  expect(s.file().deadline).toBeNull();
});

test("a fence right after a task that made a primary stops it, before any round observed it", async () => {
  // The last round saw no primary (a standby being promoted); the promotion then succeeded.
  const s = setup({ primary: false, running: true });
  s.fencer.arm(3, performance.now() + 5000);
  await s.fencer.asPrimary("promote", async () => undefined);
  await s.fencer.fence("resigned: switchover");
  expect(s.stops.length).toBe(1);
  expect(s.history).toEqual([expect.stringContaining("resigned: switchover: primary stopped in")]);
});
