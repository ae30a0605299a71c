// The agent's switchable Consensus (src/agent/migrate-consensus.ts) around the real built-in
// election: during a migration's hold this node neither answers nor sends a prevote or vote, and
// afterwards it answers again; a replaced backend's lease callbacks are dropped; the fencing deadline
// is capped while the leader migrates to etcd.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publishGuard, type DriverHooks } from "../../src/agent/election-driver.ts";
import { type MakeBackend, SwitchableConsensus } from "../../src/agent/migrate-consensus.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createConsensus } from "../../src/consensus/create.ts";
import type { ElectionMsg } from "../../src/core/messages.ts";
import { ZERO_POSITION } from "../../src/core/position.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { waitFor } from "../helpers/proc.ts";

const [A, B, C] = ["aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2", "ccccccccccccccc3"];
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function node(voters: string[]) {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-switch-"));
  dirs.push(dir);
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${dir}"\n[election]\ntimeout_ms = 300\nlease_ms = 150\nheartbeat_ms = 50\njitter_ms = 50\nfence_ms = 100\n`, "pgherd.toml");
  const store = new ElectionStore(dir);
  store.saveElection({ term: 5, votedFor: null, membership: { term: 1, index: 1, voters } });
  const sent: { to: string; msg: ElectionMsg }[] = [];
  const held: number[] = [];
  const hooks: DriverHooks = {
    send: (to, msg) => void sent.push({ to, msg }), leaseHeld: (_t, until) => void held.push(until),
    leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m) => { throw new Error(m); },
  };
  const clock = { now: 0 };
  const sw = new SwitchableConsensus((b, h) => createConsensus({ cfg, nodeId: A, store, hooks: h, log: memoryLogger(), nameOf: (x) => x }, b), "builtin", hooks, () => clock.now);
  return { sw, sent, held, clock };
}

test("during the hold no prevote or vote is answered; after it the built-in rules answer again", async () => {
  const { sw, sent, clock } = node([A, B, C]);
  sw.start();
  sw.replace("builtin", 1000);
  const vote: ElectionMsg = { t: "vote", term: 6, cfg: { term: 1, index: 1 }, pos: ZERO_POSITION };
  sw.receive(B, vote);
  sw.receive(B, { ...vote, t: "prevote" });
  await Bun.sleep(50);
  expect(sent.filter((s) => s.to === B)).toEqual([]);
  expect(sw.holding()).toBe(1000);
  clock.now = 1000;
  expect(sw.holding()).toBe(-Infinity);
  sw.receive(B, vote);
  await waitFor(() => sent.some((s) => s.to === B && s.msg.t === "vote-resp"), { timeoutMs: 2000, what: "an answer to the vote" });
  sw.stop();
});

test("a lone voter leads; its fencing deadline is capped while migrating; a replaced backend's callbacks are dropped", async () => {
  const { sw, held, sent } = node([A]);
  sw.start();
  void sw.setPosition(ZERO_POSITION); // the agent's first monitoring round
  await waitFor(() => sw.lease() !== null && held.length > 0, { timeoutMs: 3000, what: "the lone voter to lead" });
  const cap = performance.now() + 20;
  sw.setCap(cap);
  const n = held.length;
  await waitFor(() => held.length > n + 2, { timeoutMs: 2000, what: "renewals" });
  expect(held.slice(n + 1).every((u) => u <= cap)).toBe(true);
  sw.setCap(null);
  sw.stopInner();
  expect(sw.innerStopped()).toBe(true);
  const frozen = held.length;
  const sends = sent.length;
  await Bun.sleep(300);
  expect(held.length).toBe(frozen);
  expect(sent.length).toBe(sends);
  sw.replace("builtin", -Infinity); // resumes the led term from its store: a lease again
  await waitFor(() => held.length > frozen, { timeoutMs: 3000, what: "the replaced backend to lead" });
  expect(sw.counters.leadershipsWon).toBeGreaterThanOrEqual(2);
  sw.stop();
});

test("a stopped backend's lease ends at its deadline: not reported held while the migration stays between backends (review)", async () => {
  const { sw, clock } = node([A]);
  sw.start();
  void sw.setPosition(ZERO_POSITION);
  await waitFor(() => sw.lease() !== null, { timeoutMs: 3000, what: "the lone voter to lead" });
  sw.stopInner();
  const l = sw.lease()!;
  clock.now = l.until - 1;
  expect(sw.lease()).toEqual(l); // held until its deadline: the watchdog fences then
  clock.now = l.until;
  expect(sw.lease()).toBeNull(); // before: { term, until } for ever
  sw.stop();
});

test("a backend that cannot be built (etcd without endpoints here) leaves the old one stopped, its lease ending at its deadline (review)", async () => {
  const { sw, clock } = node([A]);
  sw.start();
  void sw.setPosition(ZERO_POSITION);
  await waitFor(() => sw.lease() !== null, { timeoutMs: 3000, what: "the lone voter to lead" });
  expect(() => sw.replace("etcd", -Infinity)).toThrow("no etcd endpoints");
  expect(sw.innerStopped()).toBe(true); // a migration's abort builds the backend in force again
  clock.now = sw.lease()!.until;
  expect(sw.lease()).toBeNull();
  sw.stop();
});

test("S2: a hold set at start (holdAtLeast) keeps prevotes unanswered; S3: resigns are counted", async () => {
  const { sw, sent, clock } = node([A, B, C]);
  sw.holdAtLeast(500);
  sw.start();
  sw.receive(B, { t: "prevote", term: 6, cfg: { term: 1, index: 1 }, pos: ZERO_POSITION });
  await Bun.sleep(50);
  expect(sent.filter((s) => s.to === B)).toEqual([]);
  expect(sw.holding()).toBe(500);
  sw.holdAtLeast(100); // never shortens it
  expect(sw.holding()).toBe(500);
  clock.now = 500;
  expect(sw.holding()).toBe(-Infinity);
  const n = sw.resigns;
  await sw.resign("test");
  expect(sw.resigns).toBe(n + 1);
  sw.stop();
});

test("a replaced backend's in-flight detach does not stop streaming; C4: no membership proposal reaches the backend while migrating", async () => {
  let detaches = 0;
  let proposals = 0;
  const dir = mkdtempSync(join(tmpdir(), "pgherd-switch-"));
  dirs.push(dir);
  const captured: DriverHooks[] = [];
  const hooks: DriverHooks = {
    send: () => {}, leaseHeld: () => {}, leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m) => { throw new Error(m); },
    detach: async () => (detaches++, { ok: true, position: null }),
  };
  const fake = (_b: string, h: DriverHooks) => (captured.push(h), { stop() {}, start() {}, status: () => ({ guard: null, guardCommitted: 0 }), propose: async () => void proposals++, counters: { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0 } } as never);
  const sw = new SwitchableConsensus(fake, "builtin", hooks, () => 0);
  expect((await captured[0]!.detach!(3)).ok).toBe(true);
  sw.replace("builtin", -Infinity);
  expect(await captured[0]!.detach!(3)).toMatchObject({ ok: false });
  expect(detaches).toBe(1);
  sw.migration = () => ({ to: "etcd", phase: "switch" });
  await sw.propose("add", C);
  expect(proposals).toBe(0);
  sw.migration = () => null;
  await sw.propose("add", C);
  expect(proposals).toBe(1);
});

test("while the leader migrates to etcd no block is stored in builtin, and from the commit on no guard change at all", async () => {
  const { sw } = node([A]);
  sw.start();
  void sw.setPosition(ZERO_POSITION);
  await waitFor(() => sw.lease() !== null, { timeoutMs: 3000, what: "the lone voter to lead" });
  const stored = () => { const st = sw.status(); return { block: st.guard?.block ?? false, floor: st.guard?.floor ?? null, committed: st.guardCommitted >= (st.guard?.seq ?? 0) }; };
  const floor = { timeline: 1, lsn: "0/3000000" };
  let migration: { to: "etcd" | "builtin"; phase: "switch" | "committing" } | null = { to: "etcd", phase: "switch" };
  sw.migration = () => migration;
  await sw.setGuard(true, null);
  await Bun.sleep(50);
  expect(stored()).toEqual({ block: false, floor: null, committed: true }); // refused: the durability round stays synchronous
  await sw.setGuard(false, floor); // a floor: written at the commit with the rest of the built-in guard
  await waitFor(() => stored().floor !== null && stored().committed, { timeoutMs: 2000, what: "the floor stored" });
  migration = { to: "etcd", phase: "committing" };
  await sw.setGuard(false, { timeline: 1, lsn: "0/4000000" });
  await Bun.sleep(50);
  expect(stored().floor).toEqual(floor);
  migration = { to: "builtin", phase: "switch" }; // to builtin: the open reads etcd's guard, nothing to hold back here
  await sw.setGuard(true, null);
  await waitFor(() => stored().block && stored().committed, { timeoutMs: 2000, what: "the block stored" });
  sw.stop();
});

test("publishGuard on builtin: true once a majority stored the new guard; false when it was refused", async () => {
  const { sw } = node([A]);
  sw.start();
  void sw.setPosition(ZERO_POSITION);
  await waitFor(() => sw.lease() !== null, { timeoutMs: 3000, what: "the lone voter to lead" });
  const floor = { timeline: 1, lsn: "0/3000000" };
  expect(await publishGuard(sw, () => sw.setGuard(false, floor), 2000)).toBe(true);
  expect(sw.status().guard?.floor).toEqual(floor);
  sw.migration = () => ({ to: "etcd", phase: "committing" });
  expect(await publishGuard(sw, () => sw.setGuard(false, { timeline: 1, lsn: "0/4000000" }), 200)).toBe(false);
  sw.stop();
});

test("between backends the guard is the one shown at the stop: a block the stopped backend stores afterwards (a write in flight) does not count (review: the primary degraded behind it)", () => {
  const guard = (block: boolean) => ({ seq: block ? 8 : 7, block, holder: A, floor: null });
  let now = { guard: guard(false), guardCommitted: 7 };
  const fake = { start() {}, stop() {}, status: () => ({ role: "leader", term: 6, leader: A, membership: null, ...now }), lease: () => null } as unknown as ReturnType<MakeBackend>;
  const hooks = { send() {}, leaseHeld() {}, leaseLost: async () => true, leadershipChanged() {}, fatal() {} } as unknown as DriverHooks;
  const sw = new SwitchableConsensus(() => fake, "etcd", hooks, () => 0);
  sw.stopInner();
  now = { guard: guard(true), guardCommitted: 8 }; // the block's write, sent before the stop, applied and read back after it
  expect(sw.status()).toMatchObject({ guard: { block: false, seq: 7 }, guardCommitted: 7 });
  expect(sw.status().term).toBe(6); // the rest as the backend says
});
