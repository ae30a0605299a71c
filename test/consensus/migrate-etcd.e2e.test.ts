// The etcd steps of a migration (src/consensus/migrate-etcd.ts) against a real three-member etcd on
// loopback and the real etcd backend (no PostgreSQL), checking what the plan
// (src/core/consensus-migrate.ts) relies on: the key a built-in leader takes is resumed by its own
// etcd backend while the others follow without detaching; after the close no etcd candidate ever
// takes the key (and without it one does), and its former holder stops leading at once and never
// resumes its key there, nor past the members' hold when the close applies while the read that showed
// etcd open is answered; a stale own key is dropped, nobody else's.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { EtcdClient, OutcomeUnknown } from "../../src/consensus/etcd/client.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { backendKey, closeEtcd, commitEtcd, commitState, dropOwnKey, type Opened, openEtcd, readRecord, releaseEtcd, rollBack, rollBackPending } from "../../src/consensus/migrate-etcd.ts";
import { MigrateDriver, type MigrateDeps } from "../../src/agent/migrate-driver.ts";
import { type LeaderEtcdCtx, settleClose, settleOpen } from "../../src/agent/migrate-leader-etcd.ts";
import { SwitchableConsensus } from "../../src/agent/migrate-consensus.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createConsensus } from "../../src/consensus/create.ts";
import { leaveHoldMs } from "../../src/core/consensus-migrate.ts";
import type { Membership } from "../../src/core/messages.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { EtcdCluster, etcdSkipReason } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const TTL_S = 2;
const [A, B, C] = ["aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2", "ccccccccccccccc3"];
const MEMBERSHIP: Membership = { term: 5, index: 3, voters: [A, B, C] };

/** One agent's etcd backend with counting hooks; its store already holds the built-in membership. */
class Member {
  held = 0;
  lost = 0;
  detached = 0;
  running = false;
  readonly c: EtcdConsensus;
  readonly store: ElectionStore;

  constructor(readonly id: string, cluster: string, endpoints: string[], dir: string, client = new EtcdClient({ endpoints, requestTimeoutMs: 300 })) {
    const store = new ElectionStore(mkdtempSync(join(dir, `${id}-`)));
    this.store = store;
    store.saveElection({ term: 5, votedFor: A, membership: MEMBERSHIP });
    this.c = new EtcdConsensus({
      client, keys: clusterKeys("/pgherd", cluster),
      self: { id, name: id.slice(0, 1), role: "database", canLead: true, priority: 100 },
      ttlS: TTL_S, pollMs: 100, maxDrift: 0.02, fenceMs: 200, deferMs: 500, store, log: memoryLogger(),
      hooks: {
        send: () => {}, leadershipChanged: () => {}, leaseLost: async () => void this.lost++,
        leaseHeld: () => void this.held++,
        detach: async () => (this.detached++, { ok: true, position: null }),
        fatal: (m) => { throw new Error(m); },
      },
    });
    void this.c.setPosition({ timeline: 1, lsn: "0/300" });
  }

  start(): this {
    this.running = true;
    this.c.start();
    return this;
  }
  stop(): void {
    this.running = false;
    this.c.stop();
  }
  leads(): boolean { return this.running && this.c.lease() !== null; }
}

/** A built-in node's migration driver (no consensus.json), its store holding a membership or none, on cluster `cluster` in etcd. */
function joiner(id: string, cluster: string, endpoints: string[], dir: string, membership: Membership | null) {
  const stateDir = mkdtempSync(join(dir, `${id}-join-`));
  const cfg = parseConfig(`cluster = "${cluster}"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${stateDir}"\n[election]\ntimeout_ms = 300\nlease_ms = 150\nheartbeat_ms = 50\njitter_ms = 50\nfence_ms = 100\n[consensus]\nendpoints = ${JSON.stringify(endpoints)}\nttl_s = 2\npoll_ms = 100\nrequest_timeout_ms = 300\n`, "pgherd.toml");
  const store = new ElectionStore(stateDir);
  if (membership) store.saveElection({ term: 5, votedFor: null, membership });
  const log = memoryLogger();
  const hooks = { send: () => {}, leaseHeld: () => {}, leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m: string) => { throw new Error(m); } };
  const sw = new SwitchableConsensus((b, h) => createConsensus({ cfg, nodeId: id, store, hooks: h, log, nameOf: (x) => x }, b), "builtin", hooks);
  const now = { t: 0 };
  const driver = new MigrateDriver({ cfg, self: id, log, consensus: sw, store, send: () => {}, connected: () => [], fence: async () => true, nameOf: (x) => x, clock: () => now.t });
  return { driver, sw, log, now, stop: () => (driver.stop(), sw.stop()) };
}

requireReal("etcd migration steps", etcdSkipReason());
describe("migration steps on a real etcd", () => {
  let etcd: EtcdCluster;
  let tmp: string;
  let client: EtcdClient;
  const all: Member[] = [];
  const trio = (cluster: string) => {
    const m = [A, B, C].map((id) => new Member(id, cluster, etcd.endpoints(), tmp));
    all.push(...m);
    return m as [Member, Member, Member];
  };
  const open = (cluster: string, self = A, epoch = 1) =>
    openEtcd(client, clusterKeys("/pgherd", cluster), { self, ttlS: TTL_S, membership: MEMBERSHIP, guard: null, epoch, now: () => performance.now() }) as Promise<Opened | null>;

  /** The migrating leader's etcd side (migrate-leader-etcd.ts) as node A on `cluster`. */
  const leaderCtx = (cluster: string): LeaderEtcdCtx => {
    const log = memoryLogger();
    return {
      d: { self: A, log } as unknown as MigrateDeps, etcd: () => ({ client, keys: clusterKeys("/pgherd", cluster) }),
      timers: { timeoutMs: 1000, ttlMs: TTL_S * 1000, maxDrift: 0.02, fenceMs: 200 }, clock: () => performance.now(), persist: () => {}, note: (m) => log.warn(m),
    };
  };

  beforeAll(async () => {
    tmp = mkdtempSync("/tmp/pgherd-migrate-etcd-");
    etcd = await EtcdCluster.start({ dir: join(tmp, "etcd") });
    client = new EtcdClient({ endpoints: etcd.endpoints(), requestTimeoutMs: 1000 });
  }, 60_000);

  afterAll(async () => {
    for (const m of all) m.stop();
    await etcd?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test("to etcd, then close: the leader's key is resumed, the others follow; after the close nobody takes the key", async () => {
    const [a, b, c] = trio("m1");
    const opened = (await open("m1"))!;
    expect(opened.term).toBeGreaterThan(0);
    const k1 = clusterKeys("/pgherd", "m1");
    expect(await commitState(client, k1, { epoch: 1, leader: A, membership: MEMBERSHIP })).toBe("pending");
    expect(await commitEtcd(client, k1, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    expect(await commitState(client, k1, { epoch: 1, leader: A, membership: MEMBERSHIP })).toBe("committed");
    a.store.saveEtcdKey(opened.term); // as the migrating leader records it (src/agent/migrate-leader-etcd.ts openEtcd)
    const t0 = performance.now();
    a.start();
    await waitFor(() => a.leads(), { timeoutMs: 5_000, what: "a to resume the key it took" });
    console.log(`a resumed the key of term ${opened.term} ${Math.round(performance.now() - t0)} ms after its etcd backend started`);
    expect(a.c.lease()!.term).toBe(opened.term);
    b.start();
    c.start();
    await waitFor(() => b.c.status().leader === A && c.c.status().leader === A, { timeoutMs: 5_000, what: "b and c to follow a" });
    // Longer than the TTL: a renews the lease it took the key on; b and c never stop streaming.
    await Bun.sleep(TTL_S * 1000 + 500);
    expect(a.leads()).toBe(true);
    expect([b.held, c.held, b.detached, c.detached]).toEqual([0, 0, 0, 0]);

    // To builtin: a stops renewing, closes etcd, releases its key.
    a.stop();
    // The close requires etcd's record to be the decision in force ({etcd, 1}).
    expect(await closeEtcd(client, clusterKeys("/pgherd", "m1"), { term: opened.term, from: { backend: "etcd", epoch: 3 }, epoch: 4, builtinTerm: 6, leader: A })).toBe(false);
    expect(await closeEtcd(client, clusterKeys("/pgherd", "m1"), { term: opened.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A })).toBe(true);
    await releaseEtcd(client, clusterKeys("/pgherd", "m1"), { term: opened.term, leaseId: opened.leaseId });
    const record = (await client.range(backendKey(clusterKeys("/pgherd", "m1")))).kvs[0]!.value;
    expect(JSON.parse(record)).toEqual({ backend: "builtin", epoch: 2, term: 6, leader: A });
    await waitFor(() => b.detached > 0 && c.detached > 0, { timeoutMs: 5_000, what: "b and c to see the key gone" });
    await Bun.sleep(TTL_S * 1000 * 2);
    expect([b.held, c.held]).toEqual([0, 0]);
    expect(b.c.status().leader).toBeNull();
    expect(b.c.status().membership).toBeNull();
    expect(await closeEtcd(client, clusterKeys("/pgherd", "m1"), { term: opened.term, from: { backend: "builtin", epoch: 2 }, epoch: 3, builtinTerm: 7, leader: A })).toBe(false);
  }, 40_000);

  test("before the commit nobody else takes a released key (pending membership); with the membership written the same release lets another node take it (the check can fail)", async () => {
    const [, b, c] = trio("m2");
    const keys = clusterKeys("/pgherd", "m2");
    const opened = (await open("m2"))!;
    b.start();
    c.start();
    // The migration aborted before the commit: the key given back, the membership still pending.
    expect(await rollBackPending(client, keys)).toBe(false); // its key is still there
    await releaseEtcd(client, keys, { term: opened.term, leaseId: opened.leaseId });
    await Bun.sleep(TTL_S * 1000 * 2);
    expect([b.held, c.held, b.leads(), c.leads()]).toEqual([0, 0, false, false]);
    expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(false); // the key is gone: no commit
    // Its leader gone, the pending migration is rolled back by whichever node gets there first, once.
    expect(await rollBackPending(client, keys)).toBe(true);
    expect(await readRecord(client, keys)).toEqual({ backend: "builtin", epoch: 2 });
    expect(await rollBackPending(client, keys)).toBe(false);
    // The control: with the membership written and etcd's record naming etcd (a record naming builtin
    // closes etcd: nobody leads there), one of them takes the key.
    await client.txn([], [{ put: { key: keys.membership, value: JSON.stringify(MEMBERSHIP) } }, { put: { key: backendKey(keys), value: JSON.stringify({ backend: "etcd", epoch: 3 }) } }]);
    await waitFor(() => b.leads() || c.leads(), { timeoutMs: 10_000, what: "b or c to take the key" });
  }, 30_000);

  test("an epoch is used once: the leader's roll-back is written to etcd's record first, and an open at or below the record's epoch changes nothing", async () => {
    const keys = clusterKeys("/pgherd", "m4");
    const opened = (await open("m4", A, 5))!;
    // Aborted after switches went out: the key given back, then the record rolled back to {builtin, 6}.
    await releaseEtcd(client, keys, { term: opened.term, leaseId: opened.leaseId });
    expect(await rollBack(client, keys, { from: { backend: "etcd", epoch: 5 }, to: { backend: "builtin", epoch: 6 }, leader: B })).toBe(false); // not B's migration
    expect(await rollBack(client, keys, { from: { backend: "etcd", epoch: 5 }, to: { backend: "builtin", epoch: 6 }, leader: A })).toBe(true);
    expect(await rollBack(client, keys, { from: { backend: "etcd", epoch: 5 }, to: { backend: "builtin", epoch: 6 }, leader: A })).toBe(false); // once
    expect(await rollBackPending(client, keys)).toBe(false);
    expect(await readRecord(client, keys)).toEqual({ backend: "builtin", epoch: 6 });
    // A second migration by a leader that had not heard of epoch 6: refused, nothing written, the epoch learnt.
    const before = (await client.range(keys.leader)).kvs.length;
    expect(await openEtcd(client, keys, { self: B, ttlS: TTL_S, membership: MEMBERSHIP, guard: null, epoch: 6, now: () => performance.now() })).toEqual({ higher: 6 });
    expect([(await client.range(keys.leader)).kvs.length, before]).toEqual([0, 0]);
    expect(await readRecord(client, keys)).toEqual({ backend: "builtin", epoch: 6 });
    const next = (await open("m4", B, 7))!;
    expect(await readRecord(client, keys)).toEqual({ backend: "etcd", epoch: 7 });
    await releaseEtcd(client, keys, { term: next.term, leaseId: next.leaseId });
  }, 20_000);

  test("a closed etcd: its leader stops leading at once, and a new etcd backend of that node (an abort after an unanswered close, a restart) never resumes its key", async () => {
    const keys = clusterKeys("/pgherd", "m5");
    const opened = (await open("m5"))!;
    expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    const [a1] = trio("m5");
    a1.store.saveEtcdKey(opened.term);
    a1.start();
    await waitFor(() => a1.leads(), { timeoutMs: 5_000, what: "a to resume the key it took" });
    // The close applies while a's backend still runs (as if its stop and the close crossed): the
    // members that read it adopt builtin and hold this long from now.
    expect(await closeEtcd(client, keys, { term: opened.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A })).toBe(true);
    const closedAt = performance.now();
    const holdMs = leaveHoldMs("etcd", { timeoutMs: 1000, ttlMs: TTL_S * 1000, maxDrift: 0.02, fenceMs: 200 });
    await waitFor(() => !a1.leads(), { timeoutMs: holdMs, what: "a to stop leading on the closed etcd before the members' hold ends" });
    console.log(`a stopped leading ${Math.round(performance.now() - closedAt)} ms after the close (the members hold ${holdMs} ms)`);
    // Its key is still there, bound to a's live lease: a new backend of a's reads etcd and stays out.
    a1.stop();
    const a2 = new Member(A, "m5", etcd.endpoints(), tmp);
    all.push(a2);
    a2.start();
    await waitFor(() => a2.c.settled(), { timeoutMs: 5_000, what: "a's new etcd backend to read etcd" });
    expect((await client.range(keys.leader)).kvs[0]?.value).toBe(A);
    await Bun.sleep(500); // a few polls more
    expect([a2.held, a2.leads(), a2.c.status().membership]).toEqual([0, false, null]);
    a2.stop();
  }, 20_000);

  test("a restarted former holder whose read showed etcd open while the close applied takes back only the lease and never leads on it", async () => {
    const keys = clusterKeys("/pgherd", "m6");
    const opened = (await open("m6"))!;
    expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    // a's new backend: its first prefix read (etcd open) is answered 900 ms late, and the close (sent
    // before the restart, still in flight) applies meanwhile; the next reads fail while keepalives
    // pass, then etcd answers again.
    let closedAt = 0, reads = 0;
    class LateRead extends EtcdClient {
      override async range(key: string, opts: { prefix?: boolean } = {}) {
        if (opts.prefix && reads++ === 0) {
          const r = await super.range(key, opts);
          expect(await closeEtcd(client, keys, { term: opened.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A })).toBe(true);
          closedAt = performance.now();
          await Bun.sleep(900);
          return r;
        }
        if (opts.prefix && reads <= 4) throw new Error("simulated: read timed out");
        return super.range(key, opts);
      }
    }
    const a = new Member(A, "m6", etcd.endpoints(), tmp, new LateRead({ endpoints: etcd.endpoints(), requestTimeoutMs: 1000 }));
    a.store.saveEtcdKey(opened.term); // the former holder's state directory
    all.push(a);
    a.start();
    // The key is won only on a read sent after the keepalive that took its lease back: that read shows the close.
    await waitFor(() => a.c.settled(), { timeoutMs: 10_000, what: "a to read etcd after taking its lease back" });
    console.log(`a read etcd again ${Math.round(performance.now() - closedAt)} ms after the close, after ${reads} prefix reads; held ${a.held} times`);
    expect(reads).toBeGreaterThan(4);
    expect(a.held).toBe(0);
    expect(a.c.lease()).toBeNull();
    a.stop();
  }, 20_000);

  test("a leader whose every etcd request is answered 600 ms late keeps its lease: a poll's renewal and read go out together", async () => {
    // request_timeout_ms 700 with ttl 2, fence 200, poll 100: the config check's smallest margin
    // (usable 1722 ms >= two rounds of 800 ms). Renewal then read one after the other would extend
    // 2 x 600 + 100 + 600 ms after the last renewal was sent: past the usable lease.
    class Slow extends EtcdClient {
      delay = 0;
      keepalives = 0;
      override async range(key: string, opts: { prefix?: boolean } = {}) {
        await Bun.sleep(this.delay);
        return super.range(key, opts);
      }
      override async leaseKeepAlive(id: string) {
        await Bun.sleep(this.delay);
        this.keepalives++;
        return super.leaseKeepAlive(id);
      }
    }
    const keys = clusterKeys("/pgherd", "m7");
    const opened = (await open("m7"))!;
    expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    const slow = new Slow({ endpoints: etcd.endpoints(), requestTimeoutMs: 700 });
    const a = new Member(A, "m7", etcd.endpoints(), tmp, slow);
    a.store.saveEtcdKey(opened.term);
    all.push(a);
    a.start();
    await waitFor(() => a.leads(), { timeoutMs: 5_000, what: "a to resume its key" });
    slow.delay = 600;
    const before = slow.keepalives;
    await waitFor(() => slow.keepalives >= before + 4 || a.lost > 0, { timeoutMs: 10_000, what: "four slow renewals" });
    expect([a.lost, a.leads()]).toEqual([0, true]);
    a.stop();
  }, 20_000);

  test("the join check (MigrateDriver): a voter with a membership never reads etcd's record; a new node adopts {etcd, e} only once etcd's membership is committed", async () => {
    const keys = clusterKeys("/pgherd", "j1");
    // A migration to etcd whose open applied (its answer lost, say): {etcd, 1}, membership pending.
    const opened = (await open("j1"))!;
    const voter = joiner(B, "j1", etcd.endpoints(), tmp, MEMBERSHIP);
    const added = joiner(C, "j1", etcd.endpoints(), tmp, null);
    try {
      voter.driver.step();
      added.driver.step();
      await waitFor(() => added.log.lines.some((l) => l.includes("membership not committed")), { timeoutMs: 5_000, what: "the new node to read the pending record" });
      expect([voter.driver.inForce(), added.driver.inForce()]).toEqual([{ backend: "builtin", epoch: 0 }, { backend: "builtin", epoch: 0 }]);
      // Committed: the new node adopts it at its next read (every 2 s); the voter never reads etcd's record.
      expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
      for (const n of [voter, added]) (n.now.t += 2_000), n.driver.step();
      await waitFor(() => added.driver.inForce().backend === "etcd", { timeoutMs: 5_000, what: "the new node to adopt etcd's committed record" });
      expect(added.driver.inForce()).toEqual({ backend: "etcd", epoch: 1 });
      expect(voter.driver.inForce()).toEqual({ backend: "builtin", epoch: 0 });
      expect(voter.log.lines.filter((l) => l.includes("etcd's record"))).toEqual([]);
    } finally {
      voter.stop();
      added.stop();
      await releaseEtcd(client, keys, { term: opened.term, leaseId: opened.leaseId });
    }
  }, 20_000);

  test("settleClose: the record of the close decides; else the key is given back and then it is open for good", async () => {
    const ctx = leaderCtx("c1");
    const keys = clusterKeys("/pgherd", "c1");
    const opened = (await open("c1"))!;
    expect(await commitEtcd(client, keys, { term: opened.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    const closing = { epoch: 2, etcd: { leaseId: opened.leaseId, term: opened.term } };
    // The abort's fence could not stop PostgreSQL: the key stays until the watchdog has (review:
    // given back at once, the others took it while the old primary still wrote).
    const now = performance.now();
    expect(await settleClose({ ...ctx, clock: () => now }, { ...closing, notBefore: now + 1 })).toBe("unknown");
    expect((await client.range(keys.leader)).kvs).toHaveLength(1);
    // Not applied (yet), key still a's: given back (so the close can never apply), then "open".
    expect(await settleClose(ctx, { ...closing, notBefore: now + 1 })).toBe("unknown");
    expect((await client.range(keys.leader)).kvs).toEqual([]);
    expect(await settleClose(ctx, closing)).toBe("open");
    expect(await closeEtcd(client, keys, { term: opened.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A })).toBe(false);
    // Applied: the record names the close.
    const k2 = clusterKeys("/pgherd", "c2");
    const o2 = (await open("c2"))!;
    expect(await commitEtcd(client, k2, { term: o2.term, membership: MEMBERSHIP, guard: null })).toBe(true);
    expect(await closeEtcd(client, k2, { term: o2.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A })).toBe(true);
    expect(await settleClose(leaderCtx("c2"), { epoch: 2, etcd: { leaseId: o2.leaseId, term: o2.term } })).toMatchObject({ backend: "builtin", epoch: 2, leader: A });
    await releaseEtcd(client, k2, { term: o2.term, leaseId: o2.leaseId });
  }, 20_000);

  test("settleOpen: an applied open is rolled back through the record (key first); an open still in flight is voided and can never apply", async () => {
    const ctx = leaderCtx;
    // Applied: {etcd, 1} pending with a's key → key deleted, record {builtin, 2}; once settled, it stays.
    const s1 = clusterKeys("/pgherd", "s1");
    await open("s1");
    expect(await settleOpen(ctx("s1"), 1)).toEqual({ backend: "builtin", epoch: 2 });
    expect([(await client.range(s1.leader)).kvs.length, await readRecord(client, s1)]).toEqual([0, { backend: "builtin", epoch: 2 }]);
    expect(await settleOpen(ctx("s1"), 1)).toEqual({ backend: "builtin", epoch: 2 });
    // In flight: the open read the (absent) record, its transaction is held until the settle ran.
    const s2 = clusterKeys("/pgherd", "s2");
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    class Held extends EtcdClient {
      override async txn(...args: Parameters<EtcdClient["txn"]>) {
        await gate;
        return super.txn(...args);
      }
    }
    let sent = false;
    const late = openEtcd(new Held({ endpoints: etcd.endpoints(), requestTimeoutMs: 1000 }), s2, { self: A, ttlS: TTL_S, membership: MEMBERSHIP, guard: null, epoch: 1, now: () => performance.now(), sending: () => (sent = true) });
    await waitFor(() => sent, { timeoutMs: 5_000, what: "the open's transaction to be sent" });
    expect(await settleOpen(ctx("s2"), 1)).toEqual({ backend: "builtin", epoch: 1 });
    release();
    expect(await late).toBeNull(); // the record changed: refused, its lease revoked
    expect([(await client.range(s2.leader)).kvs.length, await readRecord(client, s2)]).toEqual([0, { backend: "builtin", epoch: 1 }]);
  }, 20_000);

  test("a close or an open whose answer is lost is not sent to the next member: OutcomeUnknown, and etcd shows it applied", async () => {
    // A proxy in front of member 1 forwards every request and answers reads, but holds back the
    // answer of every transaction past the client's deadline (the member applied it): the client
    // must not send it again to member 2, whose refusal (the first copy's effect fails the compare)
    // would read as "not applied" (closeEtcd false; openEtcd null with its key's lease revoked).
    const member1 = etcd.endpoints()[0]!;
    const proxy = Bun.serve({
      port: 0, hostname: "127.0.0.1",
      fetch: async (req) => {
        const path = new URL(req.url).pathname;
        const res = await fetch(member1 + path, { method: "POST", body: await req.text(), headers: { "content-type": "application/json" } });
        const text = await res.text();
        if (path === "/v3/kv/txn") await Bun.sleep(800);
        return new Response(text, { status: res.status });
      },
    });
    try {
      const lossy = () => new EtcdClient({ endpoints: [`http://127.0.0.1:${proxy.port}`, ...etcd.endpoints().slice(1)], requestTimeoutMs: 400 });
      // The open: applied (key, record {etcd, 1}, membership pending), never answered.
      const k1 = clusterKeys("/pgherd", "lost1");
      const opening = openEtcd(lossy(), k1, { self: A, ttlS: TTL_S, membership: MEMBERSHIP, guard: null, epoch: 1, now: () => performance.now() });
      expect(await opening.then(() => null, (e: Error) => e)).toBeInstanceOf(OutcomeUnknown);
      await Bun.sleep(500); // the held-back answer is dropped
      expect([(await client.range(k1.leader)).kvs[0]?.value, await readRecord(client, k1)]).toEqual([A, { backend: "etcd", epoch: 1 }]);
      // The close: applied (record {builtin, 2}), never answered.
      const k2 = clusterKeys("/pgherd", "lost2");
      const o2 = (await open("lost2"))!;
      expect(await commitEtcd(client, k2, { term: o2.term, membership: MEMBERSHIP, guard: null })).toBe(true);
      const closing = closeEtcd(lossy(), k2, { term: o2.term, from: { backend: "etcd", epoch: 1 }, epoch: 2, builtinTerm: 6, leader: A });
      expect(await closing.then(() => null, (e: Error) => e)).toBeInstanceOf(OutcomeUnknown);
      await Bun.sleep(500);
      expect(await readRecord(client, k2)).toMatchObject({ backend: "builtin", epoch: 2, leader: A });
      await releaseEtcd(client, k2, { term: o2.term, leaseId: o2.leaseId });
    } finally {
      proxy.stop(true);
    }
  }, 20_000);

  test("open refuses while a key exists; a stale own key is dropped, another node's is not", async () => {
    const keys = clusterKeys("/pgherd", "m3");
    const opened = (await open("m3", A))!;
    expect(await open("m3", B, 2)).toBeNull();
    expect(await dropOwnKey(client, keys, B)).toBe(false);
    expect((await client.range(keys.leader)).kvs[0]?.value).toBe(A);
    expect(await dropOwnKey(client, keys, A)).toBe(true);
    expect((await client.range(keys.leader)).kvs).toEqual([]);
    await client.leaseRevoke(opened.leaseId);
  }, 20_000);
});
