// Detach before a vote: the confirmation rule (conninfo empty, no walreceiver, position still),
// its bound below the agent's 3 s hold, and "nothing to detach" only when the server, looked at
// afresh, verifiably does not run or answers as a primary.
import { expect, test } from "bun:test";
import type { Position } from "../../src/core/position.ts";
import { confirmDetached, DETACH_BOUND_MS, DETACH_HOLD_MS, DetachHold, detachFor, type DetachRead, type DetachTarget } from "../../src/agent/pg/detach.ts";
import { SerialExecutor } from "../../src/agent/pg/executor.ts";
import { deferred, FakeClock } from "./_clock.ts";

const standby = (o: Partial<DetachRead>): DetachRead => ({ running: true, up: true, inRecovery: true, conninfo: "", walReceiver: false, timeline: 3, lsn: "0/5000000", ...o });

/** A server double that answers the scripted reads in order, then repeats the last one. */
function server(reads: DetachRead[]) {
  let i = 0;
  const seen: DetachRead[] = [];
  return {
    seen,
    read: async () => {
      const r = reads[Math.min(i++, reads.length - 1)]!;
      seen.push(r);
      return r;
    },
  };
}

async function run(reads: DetachRead[], bound = DETACH_BOUND_MS) {
  const clock = new FakeClock();
  const s = server(reads);
  const p = confirmDetached(s.read, clock, clock.now() + bound);
  await clock.advance(bound + 100);
  return { result: await p, reads: s.seen.length, clock };
}

test("the bound leaves the agent's 3 s vote hold time to send the vote", () => {
  expect(DETACH_BOUND_MS).toBeLessThan(3000);
});

test("confirmed once the reload is in force, the walreceiver is gone and the position stands still", async () => {
  const { result } = await run([
    standby({ conninfo: "host=10.0.0.1 port=5432", walReceiver: true, lsn: "0/5000000" }),
    standby({ conninfo: "", walReceiver: true, lsn: "0/5000100" }),
    standby({ walReceiver: false, lsn: "0/5000200" }),
    standby({ walReceiver: false, lsn: "0/5000200" }),
  ]);
  expect(result).toEqual({ kind: "confirmed", last: standby({ lsn: "0/5000200" }) });
});

test("one quiet read is not enough: the position must be seen still twice", async () => {
  const { result, reads } = await run([standby({ lsn: "0/6000000" }), standby({ lsn: "0/6000000" })]);
  expect(result.kind).toBe("confirmed");
  expect(reads).toBe(2);
});

for (const [what, stuck] of [
  ["a walreceiver that stays", standby({ walReceiver: true })],
  ["a primary_conninfo still in force", standby({ conninfo: "host=10.0.0.1" })],
  ["a primary_conninfo that cannot be read", standby({ conninfo: null })],
] as const) {
  test(`unconfirmed within the bound with ${what}`, async () => {
    const clock = new FakeClock();
    const s = server([stuck]);
    let done: unknown = null;
    void confirmDetached(s.read, clock, clock.now() + DETACH_BOUND_MS).then((r) => (done = r));
    await clock.advance(DETACH_BOUND_MS - 40);
    expect(done).toBeNull();
    await clock.advance(40);
    expect(done).toEqual({ kind: "unconfirmed", last: stuck });
  });
}

test("a position still moving is not detached", async () => {
  let lsn = 0x7000000;
  const clock = new FakeClock();
  const read = async () => standby({ lsn: `0/${(lsn += 0x100).toString(16).toUpperCase()}` });
  const p = confirmDetached(read, clock, clock.now() + 1000);
  await clock.advance(1100);
  expect((await p).kind).toBe("unconfirmed");
});

test("a server that stopped, or answers as a primary, has nothing to detach", async () => {
  expect((await run([standby({ running: false, up: false })])).result).toEqual({ kind: "nothing", stopped: true });
  expect((await run([standby({ inRecovery: false })])).result).toEqual({ kind: "nothing", stopped: false });
  expect((await run([standby({ walReceiver: true }), standby({ running: false, up: false })])).result).toEqual({ kind: "nothing", stopped: true });
});

test("a server that runs but does not answer (starting up, hung) may be streaming: never confirmed, never 'nothing'", async () => {
  // Failed before: a probe that did not answer counted as "not up": nothing to detach, the vote granted.
  const silent = standby({ up: false, inRecovery: false, conninfo: null, lsn: null });
  expect((await run([silent])).result).toEqual({ kind: "unconfirmed", last: silent });
  // two quiet reads are needed from a server that answered: a silent one in between does not count
  const { result } = await run([standby({}), silent, standby({}), standby({})]);
  expect(result).toEqual({ kind: "confirmed", last: standby({}) });
});

test("after a detach the round follows no leader of an older term until the term moves on or the hold ends", () => {
  const h = new DetachHold();
  expect(h.holds(4, 0)).toBe(false);
  h.hold(5, 1000);
  expect(h.holds(4, 1000)).toBe(true); // the vote is not yet fed: term 4's leader is the old primary
  expect(h.holds(5, 1001)).toBe(false); // voted in term 5: its leader is the one to follow
  expect(h.holds(4, 1000 + DETACH_HOLD_MS - 1)).toBe(true);
  expect(h.holds(4, 1000 + DETACH_HOLD_MS)).toBe(false); // bounded even if the term never moved
  h.hold(6, 2000);
  h.release(); // unconfirmed: no vote follows
  expect(h.holds(4, 2000)).toBe(false);
});

// ---------------------------------------------------------------- detach through the executor

/** A standby double: `reads` scripted as above; records whether streaming was stopped. */
function target(o: { running?: boolean; reads?: DetachRead[]; stopFails?: boolean; atRest?: Position | null } = {}) {
  const s = server(o.reads ?? [standby({})]);
  const calls: string[] = [];
  const t: DetachTarget = {
    restingPosition: async () => {
      calls.push("position at rest");
      return o.atRest === undefined ? { timeline: 3, lsn: "0/6000000" } : o.atRest;
    },
    running: async () => o.running ?? true,
    stopStreaming: async () => {
      calls.push("stop streaming");
      if (o.stopFails) throw new Error("pg_ctl reload failed");
    },
    read: s.read,
    position: (last) => (last.lsn ? { timeline: last.timeline, lsn: last.lsn } : null),
  };
  return { t, calls };
}

async function detachNow(t: DetachTarget, exec?: (clock: FakeClock) => SerialExecutor) {
  const clock = new FakeClock();
  const ex = exec ? exec(clock) : new SerialExecutor(clock);
  const hold = new DetachHold();
  let result: unknown = null;
  let at = -1;
  void detachFor(5, t, ex, hold, clock).then((r) => {
    result = r;
    at = clock.now();
  });
  await clock.advance(5000);
  return { result, at, hold, clock };
}

test("detach: confirmed gives ok with the final position, and holds following the old leader", async () => {
  const { t, calls } = target();
  const { result, hold, at } = await detachNow(t);
  expect(result).toEqual({ ok: true, position: { timeline: 3, lsn: "0/5000000" } });
  expect(calls).toEqual(["stop streaming"]);
  expect(at).toBeLessThan(100);
  expect(hold.holds(4, at)).toBe(true);
});

test("detach: a server verifiably not running votes with what its data holds at rest (the end of its WAL), and touches nothing", async () => {
  // Found by review: it was ok with no position, so a fenced primary's agent voted (and published,
  // on etcd) with its last round's position, up to a round behind the commits it acknowledged.
  const { t, calls } = target({ running: false });
  const { result, hold } = await detachNow(t);
  expect(result).toEqual({ ok: true, position: { timeline: 3, lsn: "0/6000000" } });
  expect(calls).toEqual(["position at rest"]);
  expect(hold.holds(4, 0)).toBe(false);
  // Not known in time: no vote (ok=false), never a vote with the stale position.
  const late = target({ running: false, atRest: null });
  expect((await detachNow(late.t)).result).toMatchObject({ ok: false, position: null, error: expect.stringContaining("not known") });
  // A server that stops while it is detached: the same.
  const stopping = target({ reads: [standby({ walReceiver: true }), standby({ running: false, up: false })] });
  expect((await detachNow(stopping.t)).result).toEqual({ ok: true, position: { timeline: 3, lsn: "0/6000000" } });
});

test("detach: a server that answers as a primary streams from nobody: ok with no position, nothing stopped", async () => {
  const { t, calls } = target({ reads: [standby({ inRecovery: false })] });
  expect((await detachNow(t)).result).toEqual({ ok: true, position: null });
  expect(calls).toEqual([]);
});

test("detach: a running standby is stopped and confirmed whatever the last monitoring round saw (no round yet, a probe timeout)", async () => {
  // Failed before: the target said only what the last round saw (standbyUp(): no answering standby
  // yet), and the detach reported ok without stopping, so this standby voted while still streaming.
  const { t, calls } = target({ reads: [standby({ conninfo: "host=10.0.0.1", walReceiver: true }), standby({ lsn: "0/5000100" }), standby({ lsn: "0/5000100" })] });
  const { result, hold, at } = await detachNow(t);
  expect(calls).toEqual(["stop streaming"]);
  expect(result).toEqual({ ok: true, position: { timeline: 3, lsn: "0/5000100" } });
  expect(hold.holds(4, at)).toBe(true);
});

test("detach: a running server that does not answer is told to stop streaming and, unconfirmed, refuses the vote (ok=false)", async () => {
  const silent = standby({ up: false, inRecovery: false, conninfo: null, lsn: null });
  const { t, calls } = target({ reads: [silent] });
  const { result, at } = await detachNow(t);
  expect(calls).toEqual(["stop streaming"]); // the target writes it only where the files say standby mode (detach-target.ts)
  expect(result).toMatchObject({ ok: false, error: expect.stringContaining("could not confirm") });
  expect(at).toBeLessThanOrEqual(DETACH_BOUND_MS);
});

test("detach: not confirmed within the bound is ok=false (never 'voting anyway'), and releases the hold", async () => {
  const { t } = target({ reads: [standby({ walReceiver: true })] });
  const { result, at, hold } = await detachNow(t);
  expect(result).toMatchObject({ ok: false, position: { timeline: 3, lsn: "0/5000000" }, error: expect.stringContaining("could not confirm") });
  expect(at).toBeLessThanOrEqual(DETACH_BOUND_MS);
  expect(hold.holds(4, at)).toBe(false);
});

test("detach: behind a long task it gives up within the bound, never waits for it", async () => {
  const { t, calls } = target();
  const clone = deferred();
  const { result, at } = await detachNow(t, (clock) => {
    const ex = new SerialExecutor(clock);
    void ex.run("clone", () => clone.promise);
    return ex;
  });
  expect(result).toMatchObject({ ok: false, position: null, error: expect.stringContaining("busy with clone") });
  expect(at).toBe(DETACH_BOUND_MS);
  expect(calls).toEqual([]);
  clone.resolve();
});

test("detach: the bound counts the wait in the queue too", async () => {
  // A round ahead of it for 2 s leaves 0.5 s to confirm: a walreceiver that stays is reported at the bound, not 2.5 s later.
  const { t } = target({ reads: [standby({ walReceiver: true })] });
  const { result, at } = await detachNow(t, (clock) => {
    const ex = new SerialExecutor(clock);
    void ex.run("round", () => clock.sleep(2000));
    return ex;
  });
  expect(result).toMatchObject({ ok: false });
  expect(at).toBeLessThanOrEqual(DETACH_BOUND_MS);
});

test("detach: a failure to stop streaming is ok=false with the reason", async () => {
  const { t } = target({ stopFails: true });
  const { result, hold } = await detachNow(t);
  expect(result).toEqual({ ok: false, position: null, error: "detach for term 5: pg_ctl reload failed" });
  expect(hold.holds(4, 0)).toBe(false);
});
