// The monitoring round's timer: a round every period, kick() runs one now (after the task ahead),
// kicks during a round give exactly one more, and stop() leaves no timer behind.
import { expect, test } from "bun:test";
import { SerialExecutor } from "../../src/agent/pg/executor.ts";
import { RoundScheduler } from "../../src/agent/pg/scheduler.ts";
import { deferred, FakeClock, settle } from "./_clock.ts";

function setup(roundMs = 0) {
  const clock = new FakeClock();
  const exec = new SerialExecutor(clock);
  const starts: number[] = [];
  const s = new RoundScheduler(exec, clock, 500, async () => {
    starts.push(clock.now());
    if (roundMs > 0) await clock.sleep(roundMs);
  });
  return { clock, exec, starts, s };
}

test("a round every period, counted from the start of the previous one", async () => {
  const { clock, starts, s } = setup(100);
  s.start();
  await clock.advance(1600);
  expect(starts).toEqual([0, 500, 1000, 1500]);
  s.stop();
});

test("kick runs a round at once instead of at the next tick", async () => {
  const { clock, starts, s } = setup();
  s.start();
  await clock.advance(120);
  s.kick();
  await clock.advance(0);
  expect(starts).toEqual([0, 120]);
  await clock.advance(500);
  expect(starts).toEqual([0, 120, 620]);
  s.stop();
});

test("kicks during a round give one more round right after it, not one per kick", async () => {
  const { clock, starts, s } = setup(200);
  s.start();
  await clock.advance(50);
  s.kick();
  s.kick();
  s.kick();
  await clock.advance(150); // the first round ends at 200
  expect(starts).toEqual([0, 200]);
  await clock.advance(600);
  expect(starts).toEqual([0, 200, 700]); // back to the period, counted from the kicked round's start
  s.stop();
});

test("a kick just before a round ends is not lost to the period timer", async () => {
  const clock = new FakeClock();
  const exec = new SerialExecutor(clock);
  const starts: number[] = [];
  const s = new RoundScheduler(exec, clock, 500, async () => {
    starts.push(clock.now());
    if (starts.length === 1) s.kick(); // leadership changed while the round finished
  });
  s.start();
  await clock.advance(100);
  expect(starts).toEqual([0, 0]);
  s.stop();
});

test("a round waits behind another task of the executor (detach, clone) and runs after it", async () => {
  const { clock, exec, starts, s } = setup();
  const clone = deferred();
  void exec.run("clone", () => clone.promise);
  s.start();
  await clock.advance(5000);
  expect(starts).toEqual([]);
  clone.resolve();
  await settle();
  expect(starts).toEqual([5000]);
  s.stop();
});

test("stop leaves no timer and no later round", async () => {
  const { clock, starts, s } = setup();
  s.start();
  await clock.advance(10);
  s.stop();
  expect(clock.pending).toBe(0);
  s.kick();
  await clock.advance(5000);
  expect(starts).toEqual([0]);
});
