// The flags' copy in a shared store (etcd), against an in-memory slot (the StateSlot interface is the
// seam; the real store's CAS is tested in test/consensus): a write that failed without an answer.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CasOutcome, StateSlot, Stored } from "../../src/agent/cluster-state.ts";
import { FlagsStore, type SharedFlags } from "../../src/agent/flags.ts";
import { memoryLogger } from "../../src/log.ts";

class MemSlot implements StateSlot<SharedFlags> {
  stored: Stored<SharedFlags> | null = null;
  last: Stored<SharedFlags> | null | undefined = undefined;
  /** The next writes throw (etcd timed out: the write may or may not have landed; here it did not). */
  failWrites = 0;
  /** The next writes land, then throw (the answer lost). */
  landThenThrow = 0;
  /** Set: the next write waits until failed by hand. */
  hang: ((e: Error) => void) | null | "next" = null;
  cbs: ((v: Stored<SharedFlags>) => void)[] = [];
  current() { return this.last; }
  revision() { return this.last?.mod ?? 0; }
  async read() {
    const before = this.last?.mod;
    this.last = this.stored;
    if (this.stored && this.stored.mod !== before) for (const cb of this.cbs) cb(this.stored);
    return this.stored;
  }
  async write(value: SharedFlags, base: number): Promise<CasOutcome> {
    if (this.hang === "next") return new Promise((_resolve, reject) => { this.hang = reject; });
    if (this.failWrites > 0) {
      this.failWrites--;
      throw new Error("request timed out");
    }
    if ((this.stored?.mod ?? 0) !== base) return { ok: false, why: "moved", current: this.stored?.mod ?? 0 };
    if (this.landThenThrow > 0) {
      this.landThenThrow--;
      this.stored = { value, mod: base + 1 };
      throw new Error("request timed out");
    }
    this.stored = { value, mod: base + 1 };
    this.last = this.stored;
    return { ok: true, mod: this.stored.mod };
  }
  onChange(cb: (v: Stored<SharedFlags>) => void) { this.cbs.push(cb); }
}

const SCHEDULE = { at: "2026-12-01T12:30:00.000Z", to: null, requestedAt: "2026-12-01T12:00:00.000Z", force: false };

/** A leader's flags over a MemSlot in a scratch state dir, removed after `body`. */
async function withFlags(body: (flags: FlagsStore, slot: MemSlot) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-flags-"));
  try {
    const slot = new MemSlot();
    const flags = new FlagsStore(dir);
    flags.share(slot, () => 3, memoryLogger());
    await body(flags, slot);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A pause whose write failed (`failing` set up on the slot first), then the store's re-read held until a cancel is made meanwhile. */
async function cancelDuringReRead(flags: FlagsStore, slot: MemSlot, failing: () => void): Promise<void> {
  flags.set({ paused: false, scheduled: SCHEDULE });
  await flags.flush();
  failing();
  flags.set({ paused: true }); // without an answer: unsure
  expect((await flags.flush())?.status).toBe(503);
  let release = () => {};
  const read = slot.read.bind(slot);
  slot.read = () => new Promise((r) => { release = () => r(read()); }); // the re-read, slow
  flags.sync();
  await Bun.sleep(1);
  flags.set({ scheduled: null }); // the operator's cancel, while the read is out
  release();
  expect(await flags.flush()).toBeNull();
}

test("a clear that failed without an answer: the leader takes the store's copy again at its next housekeeping (review: the schedule stayed in etcd, unseen, and the next leader ran it)", () => withFlags(async (flags, slot) => {
  flags.set({ scheduled: SCHEDULE });
  expect(await flags.flush()).toBeNull();
  expect(slot.stored?.value.scheduled).toEqual(SCHEDULE);
  slot.failWrites = 1;
  flags.set({ scheduled: null });
  expect((await flags.flush())?.status).toBe(503);
  expect(flags.get().scheduled).toBeNull(); // the local copy: cleared; the store: still holds it
  expect(slot.stored?.value.scheduled).toEqual(SCHEDULE);
  flags.sync();
  await flags.flush();
  expect(flags.get().scheduled).toEqual(SCHEDULE); // shown again, and run or dropped by the leader's next tick
}));

test("a change made while that re-read is out is not undone by it: its write follows, and the store holds it (re-review: a pause answered \"paused\" was lost)", () => withFlags(async (flags, slot) => {
  await cancelDuringReRead(flags, slot, () => (slot.failWrites = 1));
  expect(flags.get().scheduled).toBeNull();
  expect(slot.stored?.value.scheduled).toBeNull();
}));

test("a write that landed without an answer, read back while a later change is on its way: the later change stands (re-review: the store's listener put the cancelled schedule back)", () => withFlags(async (flags, slot) => {
  await cancelDuringReRead(flags, slot, () => (slot.landThenThrow = 1));
  expect(flags.get()).toEqual({ paused: true, scheduled: null });
  expect(slot.stored?.value).toEqual({ paused: true, scheduled: null });
}));

test("a leader that lost the key while its write was on its way takes the new leader's flags once the write ended (re-review: its listener had skipped them, later polls saw no change)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-flags-"));
  try {
    const slot = new MemSlot();
    const flags = new FlagsStore(dir);
    let term: number | null = 3;
    flags.share(slot, () => term, memoryLogger());
    slot.hang = "next";
    flags.set({ scheduled: SCHEDULE }); // its write hangs
    await Bun.sleep(1);
    term = null; // the key lost meanwhile
    slot.stored = { value: { paused: true, scheduled: null }, mod: 7 }; // the next leader's pause
    await slot.read(); // a poll: the listener skips it, a write being on its way
    (slot.hang as unknown as (e: Error) => void)(new Error("request timed out"));
    await flags.flush();
    expect(flags.get()).toEqual({ paused: true, scheduled: null });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});


test("a pause the store refuses is not recorded in the history as done (review: the answer, turned into the refusal by the agent's flagsStored, said one thing, the history another)", () => withFlags(async (flags, slot) => {
  const { AgentActionHost } = await import("../../src/agent/action-host.ts");
  const { ActionRunner } = await import("../../src/agent/actions.ts");
  const history: unknown[] = [];
  const deps = {
    cfg: { node_name: "n1" }, nodeId: "L", flags, flagsChanged: () => {}, record: (e: unknown) => history.push(e),
    consensus: { status: () => ({ role: "leader", term: 3, leader: "L", membership: null }), lease: () => ({ term: 3 }) },
  };
  const runner = new ActionRunner(new AgentActionHost(deps as never), memoryLogger());
  // As Agent.action answers (cluster-state-wiring.ts flagsStored): the store's refusal wins over an ok.
  const action = async (req: { kind: "pause" }) => {
    const r = await runner.run(req);
    const refused = await flags.flush();
    return refused && r.ok ? { ok: false, ...refused } : r;
  };
  slot.stored = { value: { paused: false, scheduled: null }, mod: 7 }; // another leader's write, not read here yet
  const r = await action({ kind: "pause" });
  expect(r).toMatchObject({ ok: false, status: 409 });
  expect(flags.get().paused).toBe(false); // the store's copy, which every node follows
  expect(history).toEqual([]);
  const again = await action({ kind: "pause" }); // the store's copy read now: stored on top of it
  expect(again).toMatchObject({ ok: true, message: expect.stringContaining("cluster paused") });
  expect(slot.stored.value.paused).toBe(true);
  expect(history).toHaveLength(1);
}));
