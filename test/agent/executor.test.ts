// The serial PostgreSQL executor: one task at a time in call order, bounded waits, no task lost.
import { expect, test } from "bun:test";
import { ExecutorClosed, QueueTimeout, SerialExecutor } from "../../src/agent/pg/executor.ts";
import { deferred, FakeClock, settle } from "./_clock.ts";

test("tasks run one at a time, in call order", async () => {
  const ex = new SerialExecutor(new FakeClock());
  const log: string[] = [];
  const gates = [deferred(), deferred(), deferred()];
  const runs = gates.map((g, i) => ex.run(`t${i}`, async () => {
    log.push(`start ${i}`);
    await g.promise;
    log.push(`end ${i}`);
    return i;
  }));
  await settle();
  expect(log).toEqual(["start 0"]);
  expect(ex.running).toBe("t0");
  expect(ex.waiting).toEqual(["t1", "t2"]);
  gates[2]!.resolve(); // the last one may be ready first: it still waits its turn
  gates[0]!.resolve();
  await settle();
  expect(log).toEqual(["start 0", "end 0", "start 1"]);
  gates[1]!.resolve();
  expect(await Promise.all(runs)).toEqual([0, 1, 2]);
  expect(log).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]);
  expect(ex.running).toBeNull();
});

test("a task that cannot start within maxWaitMs fails with QueueTimeout and never runs", async () => {
  const clock = new FakeClock();
  const ex = new SerialExecutor(clock);
  const long = deferred();
  void ex.run("clone", () => long.promise);
  let ran = false;
  const detach = ex.run("detach", async () => {
    ran = true;
  }, { maxWaitMs: 2500 });
  let outcome: unknown = "pending";
  detach.then((v) => (outcome = v), (e) => (outcome = e));
  await clock.advance(2499);
  expect(outcome).toBe("pending");
  await clock.advance(1);
  expect(outcome).toBeInstanceOf(QueueTimeout);
  expect((outcome as Error).message).toContain("busy with clone");
  long.resolve();
  await settle();
  expect(ran).toBe(false);
  expect(ex.waiting).toEqual([]);
});

test("a task that starts in time is not cancelled by its wait bound later", async () => {
  const clock = new FakeClock();
  const ex = new SerialExecutor(clock);
  const first = deferred();
  void ex.run("round", () => first.promise);
  const second = ex.run("catch-up", async () => {
    await clock.sleep(5000);
    return "done";
  }, { maxWaitMs: 1000 });
  await clock.advance(500);
  first.resolve();
  await clock.advance(6000);
  expect(await second).toBe("done");
  expect(clock.pending).toBe(0); // the wait timer was cancelled when it started
});

test("a failing task does not block the ones behind it", async () => {
  const ex = new SerialExecutor(new FakeClock());
  const a = ex.run("a", async () => {
    throw new Error("boom");
  });
  const b = ex.run("b", async () => "b ran");
  await expect(a).rejects.toThrow("boom");
  expect(await b).toBe("b ran");
});

test("close drops the waiting tasks and refuses new ones; the running one finishes", async () => {
  const ex = new SerialExecutor(new FakeClock());
  const gate = deferred();
  const running = ex.run("round", async () => {
    await gate.promise;
    return "finished";
  });
  const waiting = ex.run("rejoin", async () => "never");
  await settle();
  ex.close();
  await expect(waiting).rejects.toBeInstanceOf(ExecutorClosed);
  await expect(ex.run("late", async () => 1)).rejects.toBeInstanceOf(ExecutorClosed);
  gate.resolve();
  expect(await running).toBe("finished");
});
