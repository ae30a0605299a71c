// Voters by approval on a real election driver and store (a one-voter cluster, so it leads by
// itself): the membership keeper adds only approved nodes, after suspending failover; approvals are
// stored in election.json through the leader; bad ids never reach the state file, which stays loadable.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemberActions } from "../../src/agent/approvals.ts";
import { ElectionDriver } from "../../src/agent/election-driver.ts";
import type { HistoryEntry } from "../../src/agent/history.ts";
import { MembershipKeeper } from "../../src/agent/membership.ts";
import { PeerTable } from "../../src/agent/peers.ts";
import { parseConfig } from "../../src/config/load.ts";
import { Election } from "../../src/core/election.ts";
import { memoryLogger } from "../../src/log.ts";
import { StoreError } from "../../src/store/durable.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { waitFor } from "../helpers/proc.ts";

const [A, D, E] = ["aaaaaaaaaaaaaaaa", "dddddddddddddddd", "eeeeeeeeeeeeeeee"];
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const stops: (() => void)[] = [];
afterEach(() => { for (const s of stops.splice(0)) s(); });

function setup(o: { autoJoin?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-members-"));
  dirs.push(dir);
  const cfg = parseConfig(`cluster = "t"\nsecret = "${"k".repeat(48)}"\nnode_name = "n1"\n[election]\nauto_join = ${o.autoJoin === true}\n`, "test");
  const store = new ElectionStore(dir);
  store.saveElection({ term: 0, votedFor: null, membership: { term: 0, index: 1, voters: [A] } });
  const log = memoryLogger();
  const election = new Election({ id: A, canLead: true, heartbeatMs: 10, leaseMs: 40, timeoutMs: 60, jitterMs: 0, fenceMs: 0, random: Math.random, detachBeforeVote: false }, store.get(), performance.now());
  const names = new Map([[A, "n1"], [D, "n4"], [E, "n5"]]);
  const nameOf = (id: string) => names.get(id) ?? id;
  // Peers in `acking` answer the leader's heartbeats as a follower would (a voter that keeps its lease).
  const acking = new Set<string>();
  const driver: ElectionDriver = new ElectionDriver(election, store, {
    send: (to, msg) => {
      if (msg.t === "hb" && acking.has(to)) {
        const g = msg.guard && msg.guard.term === msg.term ? { guardSeq: msg.guard.seq } : {};
        queueMicrotask(() => driver.receive(to, { t: "hb-resp", term: msg.term, seq: msg.seq, ok: true, cfg: { term: msg.membership.term, index: msg.membership.index }, ...g }));
      }
    },
    leaseHeld: () => {}, leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m) => log.error(m),
  }, log, nameOf);
  driver.start();
  stops.push(() => driver.stop());
  const peers = new PeerTable(60_000);
  let degraded = 0;
  let writable = true;
  const config = { asked: [] as string[][], missing: null as string | null, missingFor: null as ((voters: string[]) => string | null) | null };
  const blockers = new Map<string, string>(); // why a node may not join yet (core/cluster-facts.ts joinBlocker)
  const keeper = new MembershipKeeper({
    cfg, log, nodeId: A, store, consensus: driver, peers, durability: () => "quorum",
    markDegraded: () => degraded++, announce: () => {}, nameOf, primaryWritable: () => writable,
    configMissing: (v) => (config.asked.push([...v]), config.missingFor ? config.missingFor([...v]) : config.missing),
    joinBlocker: (id) => blockers.get(id) ?? null,
  });
  const history: Omit<HistoryEntry, "id" | "at">[] = [];
  const actions = new MemberActions({
    nodeId: A, nodeName: "n1", consensus: driver, keeper, peers: () => peers.list(), nameOf, joinBlocker: (id) => blockers.get(id) ?? null,
    record: (e) => history.push(e), sleep: (ms) => Bun.sleep(ms), waitMs: 2000,
  });
  const connect = (id: string, name: string) => {
    peers.seen({ id, name, role: "database", mesh: "", address: "", vote: null, member: false });
    peers.connected(id, true);
  };
  const stepFor = async (ms: number) => {
    for (const end = performance.now() + ms; performance.now() < end;) {
      keeper.step();
      await Bun.sleep(10);
    }
  };
  return { dir, store, driver, keeper, actions, peers, log, history, connect, stepFor, config, acking, blockers, degraded: () => degraded, setWritable: (w: boolean) => { writable = w; } };
}

describe("membership keeper and member actions", () => {
  test("a connected node that is not approved never becomes a voter; an id that is not a node id is never one either", async () => {
    const s = setup();
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.connect(D, "n4");
    s.peers.connected("evil node", true, "evil"); // what a mesh hello with a bad id used to leave behind
    await s.stepFor(300);
    expect(s.store.get().membership!.voters).toEqual([A]);
    expect(s.degraded()).toBe(0);
    expect(s.log.lines.filter((l) => l.includes("not a node id"))).toHaveLength(1);
  });

  test("with auto_join a connected node id joins (failover suspended first); a bad id still does not", async () => {
    const s = setup({ autoJoin: true });
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.peers.connected("evil node", true, "evil");
    await s.stepFor(200);
    expect(s.store.get().membership!.voters).toEqual([A]);
    s.connect(D, "n4");
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 added" });
    expect(s.degraded()).toBeGreaterThan(0);
    expect(s.store.get().guard?.block).toBe(true);
  });

  test("a voter change waits until every majority of the new voter set includes a holder of the cluster-wide configuration (S28), failover not suspended meanwhile", async () => {
    const s = setup({ autoJoin: true });
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.config.missing = "version 3 held by n1 of 3, 2 needed";
    s.connect(D, "n4");
    await s.stepFor(300);
    expect(s.store.get().membership!.voters).toEqual([A]);
    expect(s.config.asked.at(-1)).toEqual([A, D]); // the new voter set
    expect(s.store.get().guard?.block ?? false).toBe(false);
    expect(s.degraded()).toBe(0);
    expect(s.log.lines.filter((l) => l.includes("before the voter change (add n4): waiting until every majority of the new voter set includes a node holding the cluster-wide configuration (version 3 held by n1 of 3, 2 needed)"))).toHaveLength(1);
    s.config.missing = null; // n4 fetched it
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 added once it holds the configuration" });
  });

  test("a removal the configuration holds back waits too (re-review: it went ahead)", async () => {
    const s = setup({ autoJoin: true });
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.acking.add(D); // n4 answers heartbeats once a voter: the leader keeps its lease with two voters
    s.connect(D, "n4");
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 added" });
    s.config.missingFor = (v) => (v.includes(D) ? null : "version 8 held by n4 of 1, 1 needed");
    s.keeper.requestRemoval(D);
    await s.stepFor(300);
    expect(s.store.get().membership!.voters).toContain(D);
    expect(s.keeper.changePending()).toBe(false);
    expect(s.log.lines.filter((l) => l.includes("before the voter change (remove n4)"))).toHaveLength(1);
    s.config.missingFor = null;
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return !s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 removed once the configuration allows it" });
  });

  test("a node whose data it could not vote with (another cluster's, unreadable, not reported) is not added, approved or auto_join, and does not hold up the next joiner (review)", async () => {
    const s = setup({ autoJoin: true });
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.acking.add(D);
    s.acking.add(E); // voters that answer heartbeats: the leader keeps its lease
    s.blockers.set(D, "its data directory holds another cluster (system identifier 9, this cluster's is 7): empty it");
    s.connect(D, "n4"); // the lower id: the first choice
    s.connect(E, "n5");
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(E); }, { timeoutMs: 3000, what: "n5 added although n4 waits" });
    await s.stepFor(200);
    expect(s.store.get().membership!.voters).not.toContain(D);
    expect(s.log.lines.filter((l) => l.includes("not adding n4 (dddddddddddddddd) as a voter yet: its data directory holds another cluster"))).toHaveLength(1);
    s.blockers.delete(D); // emptied: it clones once a voter
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 added once its data is empty" });
  });

  test("a joiner that cannot be added for the configuration (it holds a document of its own) does not hold up the next joiner (re-review)", async () => {
    const s = setup({ autoJoin: true });
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.config.missingFor = (v) => (v.includes(D) ? "n4 holds cluster configuration version 5 (term 1), newer than this cluster's version 1" : null);
    s.connect(D, "n4"); // the lower id: nextVoterChange's first choice
    s.connect(E, "n5");
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(E); }, { timeoutMs: 3000, what: "n5 added although n4 waits" });
    expect(s.store.get().membership!.voters).not.toContain(D);
    expect(s.log.lines.filter((l) => l.includes("before the voter change (add n4)") && l.includes("version 5"))).toHaveLength(1);
  });

  test("a leader whose own primary is not writable yet (not promoted) neither blocks failover nor changes voters", async () => {
    const s = setup({ autoJoin: true });
    s.setWritable(false);
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.connect(D, "n4");
    await s.stepFor(300);
    expect(s.store.get().membership!.voters).toEqual([A]);
    expect(s.store.get().guard?.block ?? false).toBe(false);
    expect(s.degraded()).toBe(0);
    s.setWritable(true);
    await waitFor(async () => { s.keeper.step(); await Bun.sleep(10); return s.store.get().membership!.voters.includes(D); }, { timeoutMs: 3000, what: "n4 added once the primary runs" });
    expect(s.store.get().guard?.block).toBe(true);
  });

  test("approve stores the approval in election.json through the leader; the keeper then adds the node, failover suspended first", async () => {
    const s = setup();
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.connect(D, "n4");
    expect(await s.actions.run({ kind: "member-approve", node: "nobody" })).toMatchObject({ status: 404, ok: false });
    const stepping = setInterval(() => s.keeper.step(), 10);
    stops.push(() => clearInterval(stepping));
    const r = await s.actions.run({ kind: "member-approve", node: "n4" });
    expect(r.ok).toBe(true);
    const onDisk = JSON.parse(readFileSync(join(s.dir, "election.json"), "utf8"));
    expect(onDisk.membership.voters).toEqual([A, D]); // added: the approval was consumed
    expect(onDisk.membership.approved).toBeUndefined();
    expect(s.degraded()).toBeGreaterThan(0);
    expect(s.log.lines.some((l) => l.includes("about to add voter n4: suspending automatic failover"))).toBe(true);
    expect(s.history.map((h) => h.reason)).toContain(`member n4 (${D}) approved as a voter`);
  }, 20_000);

  test("approving a node whose data it could not vote with stores the approval and says why it is not a voter yet (review)", async () => {
    const s = setup();
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    s.blockers.set(D, "its data directory holds files but no pg_control it can read (it could not vote): empty it");
    s.connect(D, "n4");
    const stepping = setInterval(() => s.keeper.step(), 10);
    stops.push(() => clearInterval(stepping));
    const r = await s.actions.run({ kind: "member-approve", node: "n4" });
    expect(r).toMatchObject({ status: 202, ok: true, message: "n4 approved, not a voter yet: its data directory holds files but no pg_control it can read (it could not vote): empty it; the leader adds it once that changes" });
    await Bun.sleep(200);
    expect(s.store.get().membership).toMatchObject({ voters: [A], approved: [D] });
  });

  test("approving a node not connected keeps the approval; remove withdraws it; the leader cannot remove itself", async () => {
    const s = setup();
    await waitFor(() => s.driver.lease() !== null, { timeoutMs: 3000, what: "the one voter to lead" });
    const r = await s.actions.run({ kind: "member-approve", node: E });
    expect(r).toMatchObject({ status: 202, ok: true });
    expect(s.store.get().membership).toMatchObject({ voters: [A], approved: [E] });
    await s.stepFor(200);
    expect(s.store.get().membership!.voters).toEqual([A]); // not connected: not added
    expect(await s.actions.run({ kind: "member-remove", node: E })).toMatchObject({ status: 200, ok: true });
    expect(s.store.get().membership!.approved).toBeUndefined();
    expect(await s.actions.run({ kind: "member-remove", node: "n1" })).toMatchObject({ status: 409, ok: false });
    expect(await s.actions.run({ kind: "member-remove", node: D })).toMatchObject({ status: 404, ok: false });
  });
});

describe("election.json never takes a bad node id", () => {
  test("a state with a bad id is refused before writing; the file keeps its last good state and loads", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgherd-members-"));
    dirs.push(dir);
    const store = new ElectionStore(dir);
    store.saveElection({ term: 1, votedFor: A, membership: { term: 1, index: 2, voters: [A, D] } });
    const before = readFileSync(join(dir, "election.json"), "utf8");
    expect(() => store.saveElection({ term: 1, votedFor: A, membership: { term: 1, index: 3, voters: [A, D, "evil node"] } })).toThrow(StoreError);
    expect(() => store.saveElection({ term: 2, votedFor: "fuzz1", membership: { term: 1, index: 2, voters: [A, D] } })).toThrow(StoreError);
    expect(() => store.saveBootstrapVote([A, "evil node"])).toThrow(StoreError);
    expect(readFileSync(join(dir, "election.json"), "utf8")).toBe(before);
    expect(new ElectionStore(dir).get().membership!.voters).toEqual([A, D]);
  });
});

test("bootstrap: a beacon's step forms and announces once; while the backend does not show the membership yet, later beacons do nothing and housekeeping hands it over again quietly (no beacon storm)", () => {
  const [B, C] = ["bbbbbbbbbbbbbbbb", "cccccccccccccccc"];
  const dir = mkdtempSync(join(tmpdir(), "pgherd-members-"));
  dirs.push(dir);
  const cfg = parseConfig(`cluster = "t"\nsecret = "${"k".repeat(48)}"\nnode_name = "n1"\n`, "test");
  const store = new ElectionStore(dir);
  store.saveBootstrapVote([A, B, C]);
  const peers = new PeerTable(60_000);
  for (const id of [B, C]) peers.seen({ id, name: id, role: "database", mesh: "", address: "", vote: [A, B, C], member: false });
  let announced = 0;
  let handed = 0;
  const log = memoryLogger();
  // A backend that has not shown the membership yet (etcd not read, a save under way).
  const consensus = { status: () => ({ membership: null }), bootstrap: () => (handed++, Promise.resolve()) };
  const keeper = new MembershipKeeper({
    cfg, log, nodeId: A, store, consensus: consensus as never, peers, durability: () => "quorum",
    markDegraded: () => {}, announce: () => announced++, nameOf: (id) => id, primaryWritable: () => true, configMissing: () => null, joinBlocker: () => null,
  });
  for (let i = 0; i < 50; i++) keeper.step(true);
  expect({ announced, handed }).toEqual({ announced: 1, handed: 1 });
  keeper.step();
  keeper.step();
  expect({ announced, handed }).toEqual({ announced: 1, handed: 3 });
  expect(log.lines.filter((l) => l.includes("membership formed"))).toHaveLength(1);
});

test("withdrawing an approval while the keeper's add of that node commits first: the answer says it is a voter, not withdrawn (review)", async () => {
  const history: unknown[] = [];
  const approved = { term: 3, index: 4, voters: [A], approved: [E] };
  let status = { role: "leader", term: 3, membership: approved as { term: number; index: number; voters: string[]; approved?: string[] }, membershipCommitted: true };
  const consensus = {
    status: () => status,
    // The withdrawal's proposal loses to the keeper's add, queued first: E becomes a voter, committed a moment later.
    propose: async () => {
      status = { ...status, membership: { term: 3, index: 5, voters: [A, E] }, membershipCommitted: false };
      setTimeout(() => (status = { ...status, membershipCommitted: true }), 20);
    },
  };
  const actions = new MemberActions({
    nodeId: A, nodeName: "n1", consensus: consensus as never, keeper: { requestRemoval() {}, clearRemoval() {} }, peers: () => [], nameOf: (id) => (id === E ? "n5" : "n1"),
    record: (e) => history.push(e), sleep: (ms) => Bun.sleep(ms), waitMs: 2000,
  });
  const r = await actions.run({ kind: "member-remove", node: E });
  expect(r).toMatchObject({ ok: false, status: 409, message: expect.stringContaining("n5 became a voter") });
  expect(history).toEqual([]);
});
