// The migration driver's periodic etcd checks (src/agent/migrate-checks.ts, run by
// src/agent/migrate-driver.ts step(): a new node's join read, the settling of an aborted open)
// against an etcd endpoint that accepts and never answers (a real HTTP listener on loopback: each
// request runs into request_timeout_ms). Time for the driver is a variable; step() runs every 2 s
// of it while a check is still in flight: no second check of a kind is queued behind it, and a
// warning that repeats is logged once. Also the leader's start check (migrate-leader.ts start, core
// checkStart) with a config file that says backend = "builtin" and names etcd endpoints: a file that
// could not run etcd (its lease margins, checked at load only with backend = "etcd") is refused
// before anything changes, since every node that stored etcd with it would refuse to start.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Consensus, DriverHooks } from "../../src/agent/election-driver.ts";
import { SwitchableConsensus } from "../../src/agent/migrate-consensus.ts";
import { MigrateDriver } from "../../src/agent/migrate-driver.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createConsensus } from "../../src/consensus/create.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { backendKey } from "../../src/consensus/migrate-etcd.ts";
import { startingBackend } from "../../src/consensus/migrate-state.ts";
import { MigrateAckSchema } from "../../src/consensus/migrate-msgs.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { FakeEtcd } from "../helpers/fake-etcd.ts";
import { waitFor } from "../helpers/proc.ts";

const A = "aaaaaaaaaaaaaaa1";
const B = "bbbbbbbbbbbbbbb2";
const dirs: string[] = [];
let requests = 0;
const blackhole = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: () => (requests++, new Promise<Response>(() => {})) });
afterAll(() => {
  void blackhole.stop(true);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function driver(membership: boolean, voters = [A], port = blackhole.port) {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-migrate-checks-"));
  dirs.push(dir);
  const cfg = parseConfig(
    `cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${dir}"\n[consensus]\nendpoints = ["http://127.0.0.1:${port}"]\nrequest_timeout_ms = 300\n`, "pgherd.toml");
  const store = new ElectionStore(dir);
  if (membership) store.saveElection({ term: 5, votedFor: null, membership: { term: 1, index: 1, voters } });
  const log = memoryLogger();
  const hooks: DriverHooks = { send: () => {}, leaseHeld: () => {}, leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m) => { throw new Error(m); } };
  const clock = { now: 0 };
  const consensus = new SwitchableConsensus((b, h) => createConsensus({ cfg, nodeId: A, store, hooks: h, log, nameOf: (x) => x }, b), "builtin", hooks, () => clock.now);
  const d = new MigrateDriver({
    cfg, self: A, log, consensus, store, send: () => {}, connected: () => [], fence: async () => true, nameOf: (x) => x, clock: () => clock.now,
  });
  const internals = d as unknown as { chain: Promise<void>; checks: { opening: number | null } };
  /** Until every queued check has run (each one's requests time out). */
  const drained = async () => {
    for (let c = internals.chain; ; c = internals.chain) {
      await c;
      if (c === internals.chain) return;
    }
  };
  const steps = (n: number) => {
    for (let i = 0; i < n; i++) {
      clock.now += 2000;
      d.step();
    }
  };
  return { d, log, internals, drained, steps, consensus };
}

test("a join read in flight: 2 s steps queue no second one; its warning is logged once", async () => {
  const n = driver(false);
  const before = requests;
  n.steps(6); // 12 s of driver time while the first read hangs
  await n.drained();
  expect(requests - before).toBe(1);
  n.steps(1);
  await n.drained();
  n.steps(1);
  await n.drained();
  expect(requests - before).toBe(3);
  expect(n.log.lines.filter((l) => l.includes("cannot read the record of this cluster's backend")).length).toBe(1);
});

test("settling an aborted open: one in flight at a time, and its repeated warning logged once", async () => {
  const n = driver(true); // a voter: no join read
  n.internals.checks.opening = 3; // a migration to etcd at epoch 3 aborted with its open possibly applied
  const before = requests;
  n.steps(6);
  await n.drained();
  expect(requests - before).toBe(1);
  for (let i = 0; i < 3; i++) {
    n.steps(1);
    await n.drained();
  }
  expect(requests - before).toBe(4);
  expect(n.internals.checks.opening).toBe(3);
  expect(n.log.lines.filter((l) => l.includes("settling the record of the aborted migration to etcd (epoch 3)")).length).toBe(1);
});

test("a voter's etcd epoch heard before etcd confirms the migration committed: the built-in election keeps running (review: a switch stored by a minority stopped it on every node)", async () => {
  const n = driver(true, [A, B]);
  n.consensus.start();
  const before = requests;
  n.d.receive(B, { t: "migrate-epoch", backend: "etcd", epoch: 3, term: 5 });
  await n.drained();
  expect(requests - before).toBeGreaterThanOrEqual(1); // it asked etcd
  expect(n.consensus.innerStopped()).toBe(false); // before: stopped, waiting for etcd to answer
  expect(n.log.lines.some((l) => l.includes("heard etcd (epoch 3) from a peer, but etcd does not answer"))).toBe(true);
  n.consensus.stop();
});

test("a new node whose adoption of etcd's record stopped short (etcd stopped answering) reads it again at the next check, not done (review)", async () => {
  // An etcd gateway that answers the first read (the record: etcd at epoch 3, its membership committed), then nothing.
  const keys = clusterKeys("/pgherd", "c");
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  let answered = 0;
  const etcd = Bun.serve({
    port: 0, hostname: "127.0.0.1", idleTimeout: 0,
    fetch: () => {
      if (answered++ > 0) return new Promise<Response>(() => {});
      const kv = (key: string, value: unknown) => ({ key: b64(key), value: b64(JSON.stringify(value)), create_revision: "2", mod_revision: "2", version: "1", lease: "0" });
      return Response.json({ header: { revision: "9" }, kvs: [kv(backendKey(keys), { backend: "etcd", epoch: 3 }), kv(keys.membership, { term: 1, index: 1, voters: [A] })] });
    },
  });
  try {
    const n = driver(false, [A], etcd.port);
    n.steps(1);
    await n.drained(); // read, adopted up to the check of its own leader key, which hangs
    expect(n.consensus.innerStopped()).toBe(true);
    const seen = answered;
    n.steps(1);
    await n.drained();
    expect(answered).toBeGreaterThan(seen); // read again (before: never, the node stayed stopped)
  } finally {
    void etcd.stop(true);
  }
});


test("epoch messages while etcd does not answer: one look at etcd at a time, the chain does not grow (re-review)", async () => {
  const n = driver(true, [A, B]);
  n.consensus.start();
  const before = requests;
  for (let i = 0; i < 20; i++) n.d.receive(B, { t: "migrate-epoch", backend: "etcd", epoch: 3, term: 5 });
  await n.drained();
  expect(requests - before).toBe(1); // before: 20 looks, each waiting request_timeout_ms in turn
  n.consensus.stop();
});

/** A voter leading on builtin with a valid lease (voters: A alone, or as given, all connected); its config file's [consensus] as given; time for the driver as `clock` says. */
function leader(section: string, o: { voters?: string[]; clock?: () => number; endpoints?: boolean; follows?: string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-migrate-checks-"));
  dirs.push(dir);
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${dir}"\n[consensus]\n${o.endpoints === false ? "" : `endpoints = ["http://127.0.0.1:${blackhole.port}"]\n`}${section}`, "pgherd.toml");
  const store = new ElectionStore(dir);
  const lead = o.follows ?? A;
  const clock = o.clock ?? (() => performance.now());
  const voters = o.voters ?? [A];
  const membership = { term: 1, index: 1, voters };
  store.saveElection({ term: 1, votedFor: A, membership });
  const stub = {
    counters: { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0 },
    start() {}, stop() {}, receive() {}, note: () => "", settled: () => true,
    status: () => ({ id: A, role: lead === A ? "leader" : "follower", term: 1, votedFor: lead, leader: lead, membership, membershipCommitted: true, leaseUntil: clock() + 60_000, lastLeaderContact: null, position: { timeline: 1, lsn: "0/1000000" }, positionKnown: true, guard: null, prevVoters: null, guardCommitted: 0, timelineCommitted: 0, pendingVote: null }),
    lease: () => (lead === A ? { term: 1, until: clock() + 60_000 } : null),
    setPosition: async () => {}, campaign: async () => {}, resign: async () => {}, setGuard: async () => true, reserveTimeline: async () => true, propose: async () => {}, bootstrap: async () => {},
  } as unknown as Consensus;
  const hooks: DriverHooks = { send: () => {}, leaseHeld: () => {}, leaseLost: async () => true, leadershipChanged: () => {}, fatal: (m) => { throw new Error(m); } };
  const consensus = new SwitchableConsensus(() => stub, "builtin", hooks, clock);
  const fences: string[] = [];
  const sent: unknown[] = [];
  const d = new MigrateDriver({
    cfg, self: A, log: memoryLogger(), consensus, store, send: (_to, msg) => void sent.push(msg), connected: () => voters.filter((v) => v !== A),
    fence: async (why) => (fences.push(why), true), nameOf: (x) => x, clock,
  });
  return { d, cfg, fences, sent };
}

test("a migration to etcd is refused on a leader whose [consensus] could not run etcd (ttl_s below the lease margins): nothing is sent to etcd (review: the nodes that stored etcd then refused to start)", async () => {
  const { d, cfg } = leader("ttl_s = 2\nrequest_timeout_ms = 1000\n");
  const before = requests;
  const r = await d.start("etcd");
  d.stop();
  expect(r.status).toBe(409);
  expect(r.message).toContain("consensus.ttl_s");
  expect(requests).toBe(before);
  expect(startingBackend(cfg)).toEqual({ backend: "builtin", epoch: 0 }); // nothing stored
});

test("with margins that fit, the start check lets it run (it then aborts here: etcd does not answer)", async () => {
  const { d } = leader("request_timeout_ms = 200\n");
  const before = requests;
  const r = await d.start("etcd");
  d.stop();
  expect(r.status).toBe(503);
  expect(requests).toBeGreaterThan(before);
});

test("a migration to etcd that no majority acknowledges is given up after its time limit, not left running for good (review: voters of an earlier version drop the switch)", async () => {
  const t = { skew: 0 };
  const { d, cfg, fences } = leader("", { voters: [A, B], clock: () => performance.now() + t.skew });
  const etcd = new FakeEtcd();
  (d as unknown as { etcdConn: unknown }).etcdConn = { client: etcd.client(), keys: clusterKeys(cfg.consensus.prefix, cfg.cluster) };
  const answer = d.start("etcd"); // B never answers the switch
  await waitFor(() => etcd.value(clusterKeys(cfg.consensus.prefix, cfg.cluster).leader) === A, { timeoutMs: 2000, what: "the open" });
  t.skew = 20_000; // the leases are still renewed: only the time limit can end it
  const r = await answer;
  d.stop();
  expect(r.status).toBe(503);
  expect(r.message).toContain("no majority of voters stored etcd in time");
  expect(fences.length).toBe(1);
  expect(etcd.value(clusterKeys(cfg.consensus.prefix, cfg.cluster).leader)).toBeUndefined(); // the key given back
  expect(JSON.parse(etcd.value(backendKey(clusterKeys(cfg.consensus.prefix, cfg.cluster)))!)).toEqual({ backend: "builtin", epoch: 2 }); // rolled back
  expect(startingBackend(cfg)).toEqual({ backend: "builtin", epoch: 2 });
}, 5_000);

test("a member whose [consensus] cannot run etcd refuses the switch to it, storing nothing (review: it stored etcd, was left without a backend, and its agent refused to start)", async () => {
  for (const o of [{ endpoints: false, section: "", why: "consensus.endpoints: is empty" }, { endpoints: true, section: "ttl_s = 2\nrequest_timeout_ms = 1000\n", why: "consensus.ttl_s" }]) {
    const { d, cfg, sent } = leader(o.section, { voters: [A, B], follows: B, endpoints: o.endpoints });
    d.receive(B, { t: "migrate-switch", to: "etcd", epoch: 1, leader: B, leaderTerm: 1 });
    await waitFor(() => sent.length > 0, { timeoutMs: 2000, what: "the answer" });
    d.stop();
    expect(sent[0]).toMatchObject({ t: "migrate-ack", epoch: 1, ok: false });
    expect((sent[0] as { reason: string }).reason).toContain(o.why);
    expect(MigrateAckSchema.safeParse(sent[0]).success).toBe(true); // the leader's receipt check takes it
    expect(startingBackend(cfg)).toEqual({ backend: "builtin", epoch: 0 });
  }
});
