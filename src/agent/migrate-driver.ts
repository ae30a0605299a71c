// A live migration between the built-in election and etcd: carries out the pure plan
// (src/core/consensus-migrate.ts) in the order it gives. This file is the agent's entry point and
// owns the backend record (<state_dir>/consensus.json through BackendStore), the epochs heard from
// peers, the epoch messages and their timing, the chain that runs every step in turn, the etcd
// connection of a migration, and a member's side: a switch from the migrating leader, an epoch
// heard from a voter or from etcd's record, adopted (fence, stop, store, run). Decisions are the
// core's; the leader's run (its plan, tick timer and takeover watch) is src/agent/migrate-leader.ts,
// its etcd steps src/agent/migrate-leader-etcd.ts, the periodic etcd checks that settle what a
// migration left open src/agent/migrate-checks.ts, the backend swap src/agent/migrate-consensus.ts.
import { maxTimeline, withTimeline } from "../core/timelines.ts";
import type { Config } from "../config/schema.ts";
import type { Guard, Membership } from "../core/messages.ts";
import * as M from "../core/consensus-migrate.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import { BackendStore, etcdUnfit, startingBackend } from "../consensus/migrate-state.ts";
import type { MigrateMsg, MigrateSwitch } from "../consensus/migrate-msgs.ts";
import type { SwitchableConsensus } from "./migrate-consensus.ts";
import type { EtcdClient } from "../consensus/etcd/client.ts";
import type { ClusterKeys } from "../consensus/etcd/elect-core.ts";
import { etcdClientOptions } from "../consensus/create.ts";
import type * as L from "./migrate-leader-etcd.ts";
import { MigrateLeader } from "./migrate-leader.ts";
import { MigrateChecks } from "./migrate-checks.ts";

export interface MigrateDeps {
  cfg: Config;
  self: string;
  log: Logger;
  consensus: SwitchableConsensus;
  store: ElectionStore;
  send: (to: string, msg: MigrateMsg) => void;
  connected: () => string[];
  /** Stop writes now (the agent's fence): true once PostgreSQL is known stopped, false when the stop failed (left to the watchdog at the lease's deadline). */
  fence: (reason: string) => Promise<boolean>;
  nameOf: (id: string) => string;
  /** An operator's switchover or failover runs on this node now. */
  switchingOver?: () => boolean;
  clock?: () => number;
}

/** "term, voted for" stored with a switch to builtin (with the guard and membership stamped in it, when known). */
export type PersistElection = { term: number; votedFor: string; ledTerm: number | null; resumed?: { guard: Guard; membership: Membership } };

/**
 * What the driver lends the leader's run and the periodic checks (and, as a LeaderEtcdCtx, the
 * leader's etcd steps): the record it owns, the epochs heard, its chain, etcd, a member's adoption.
 */
export interface MigrateHost extends L.LeaderEtcdCtx {
  /** The backend in force now (replaced by persist, never changed in place). */
  inForceNow(): M.InForce;
  /** The backend record stored in consensus.json, null if none. */
  storedRecord(): M.InForce | null;
  recordFile: string;
  knownEpoch(): number;
  learnEpoch(epoch: number): void;
  voterTerms(): Record<string, number>;
  broadcastEpoch(): void;
  serial(fn: () => Promise<void>): void;
  etcdModule(): Promise<{ migrateEtcd: typeof import("../consensus/migrate-etcd.ts") }>;
  running(): boolean;
  onHeard(peer: string, heard: M.InForce): Promise<void>;
  adopt(a: M.Adoption, heard: M.InForce, source: string): Promise<void>;
}

/** How often a migrated node tells its peers its epoch. */
const EPOCH_EVERY_MS = 2000;

export class MigrateDriver {
  private readonly backends: BackendStore;
  private inForceNow: M.InForce;
  private chain: Promise<void> = Promise.resolve();
  private lastEpochSent = -Infinity;
  private lastRefusal = "";
  /** A peer's epoch message waits on the serial chain (receive). */
  private epochQueued = false;
  private etcdConn: { client: EtcdClient; keys: ClusterKeys } | null = null;
  /** The highest epoch heard of (peers' epoch messages and refusals, etcd's record): a new one starts above it. */
  private knownEpoch = 0;
  /** Each peer's last epoch message or refusal: its backend, epoch and stored built-in term. */
  private readonly reports = new Map<string, { backend: M.Backend; epoch: number; term: number }>();
  private readonly clock: () => number;
  private readonly timers: M.MigrateTimers;
  private readonly checks: MigrateChecks;
  private readonly leader: MigrateLeader;

  constructor(private readonly d: MigrateDeps) {
    this.clock = d.clock ?? (() => performance.now());
    this.backends = new BackendStore(d.cfg.state_dir);
    this.inForceNow = startingBackend(d.cfg);
    const e = d.cfg.election;
    this.timers = { timeoutMs: e.timeout_ms, ttlMs: d.cfg.consensus.ttl_s * 1000, maxDrift: e.max_drift, fenceMs: e.fence_ms };
    const host: MigrateHost = {
      d, etcd: () => this.etcd(), timers: this.timers, clock: this.clock, persist: (f, el) => this.persist(f, el), note: (m) => this.checks.note(m),
      inForceNow: () => this.inForceNow, storedRecord: () => this.backends.get(), recordFile: this.backends.file,
      knownEpoch: () => this.knownEpoch, learnEpoch: (ep) => void (this.knownEpoch = Math.max(this.knownEpoch, ep)), voterTerms: () => this.voterTerms(),
      broadcastEpoch: () => this.broadcastEpoch(), serial: (fn) => this.serial(fn), etcdModule: () => this.etcdModule(),
      running: () => this.leader.running(), onHeard: (p, h) => this.onHeard(p, h), adopt: (a, h, s) => this.adopt(a, h, s),
    };
    // A hold taken just before a restart is not in memory any more: a migrated node holds at every start.
    const hold = M.startHoldMs(this.inForceNow, this.timers);
    if (hold > 0) d.consensus.holdAtLeast(this.clock() + hold);
    // Never stored a migration's record nor a membership (a node added, or a new state_dir): etcd's
    // record says whether the cluster moved meanwhile; nobody else can tell it (it has no voters to hear from).
    this.checks = new MigrateChecks(host, M.joinsFromRecord({
      stored: this.backends.get(), etcdConfigured: d.cfg.consensus.endpoints.length > 0, configured: d.cfg.consensus.backend, hasMembership: d.store.get().membership !== null,
    }));
    this.leader = new MigrateLeader(host, this.checks);
  }

  /** Whether this node runs a migration now (operator actions that move leadership refuse meanwhile). */
  running(): boolean {
    return this.leader.running();
  }

  inForce(): M.InForce {
    return { ...this.inForceNow };
  }

  stop(): void {
    this.leader.stop();
  }

  /** `POST /consensus/migrate` on any node: the leader runs it, a member forwards it there. */
  request(req: Extract<ActionRequest, { kind: "consensus-migrate" }>, forward: (r: ActionRequest) => Promise<ActionResult>): Promise<ActionResult> {
    const leader = this.d.consensus.status().leader;
    if (leader === this.d.self) return this.start(req.to);
    return leader ? forward(req) : Promise.resolve({ status: 503, ok: false, message: "no leader at the moment: try again" });
  }

  /** On the leader: runs the plan (src/agent/migrate-leader.ts); answers once it committed or aborted. */
  start(to: M.Backend): Promise<ActionResult> {
    return this.leader.start(to);
  }

  /** Peers' built-in terms reported on the backend and epoch in force here (a term does not change while on etcd). */
  private voterTerms(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, rep] of this.reports) if (rep.backend === this.inForceNow.backend && rep.epoch === this.inForceNow.epoch) out[id] = rep.term;
    return out;
  }

  private heard(peer: string, rep: { backend: M.Backend; epoch: number; term?: number | undefined }): void {
    this.knownEpoch = Math.max(this.knownEpoch, rep.epoch);
    if (rep.term !== undefined) this.reports.set(peer, { backend: rep.backend, epoch: rep.epoch, term: rep.term });
  }

  /** A migration message from a peer (validated at receipt). */
  receive(peer: string, msg: MigrateMsg): void {
    if (msg.t === "migrate-ack" && msg.own) this.heard(peer, msg.own);
    if (msg.t === "migrate-epoch") this.heard(peer, msg);
    if (msg.t === "migrate-ack") {
      const refusal = `${this.d.nameOf(peer)} refused the switch of epoch ${msg.epoch}: ${msg.reason}`;
      if (!msg.ok && refusal !== this.lastRefusal) this.d.log.warn(refusal); // once, not per resend
      if (!msg.ok) this.lastRefusal = refusal;
      else this.leader.acked(peer, msg.epoch);
      return;
    }
    if (msg.t === "migrate-switch") return void (msg.leader === peer && this.serial(() => this.onSwitch(peer, msg)));
    // One epoch message waits on the chain at a time: every peer says its epoch every 2 s, and the
    // adoption of an etcd epoch first looks at etcd, which may not answer for request_timeout_ms
    // (re-review: the chain grew without bound, delaying switches behind it). Dropped ones come again.
    if (this.epochQueued) return;
    this.epochQueued = true;
    this.serial(async () => {
      try {
        await this.onHeard(peer, { backend: msg.backend, epoch: msg.epoch });
      } finally {
        this.epochQueued = false;
      }
    });
  }

  /**
   * Housekeeping: the periodic etcd checks that are due (src/agent/migrate-checks.ts), and a migrated
   * node tells its peers its epoch and built-in term every few seconds (not while it migrates; during
   * a hold too, so a leader hears every epoch a voter stored).
   */
  step(): void {
    const now = this.clock();
    this.checks.step(now);
    if (this.inForceNow.epoch < 1 || this.leader.running() || now - this.lastEpochSent < EPOCH_EVERY_MS) return;
    this.broadcastEpoch();
  }

  /**
   * A peer (re)connected: it hears this node's epoch and built-in term now, not at the next
   * broadcast (a report sent while its old connection was dying is lost with it, and the leader's
   * next migration to builtin waits for every voter's report).
   */
  peerUp(id: string): void {
    if (this.inForceNow.epoch < 1 || this.leader.running()) return;
    this.d.send(id, { t: "migrate-epoch", ...this.own() });
  }

  private broadcastEpoch(): void {
    this.lastEpochSent = this.clock();
    const msg = { t: "migrate-epoch" as const, ...this.own() };
    for (const id of this.d.connected()) this.d.send(id, msg);
  }

  private serial(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((e: Error) => this.d.log.error(`consensus migration: ${e.stack ?? e.message}`));
  }

  private etcd(): { client: EtcdClient; keys: ClusterKeys } {
    if (this.etcdConn) return this.etcdConn;
    // Loaded only when a migration involves etcd: a built-in node never evaluates src/consensus/etcd/* otherwise.
    const { EtcdClient } = require("../consensus/etcd/client.ts") as typeof import("../consensus/etcd/client.ts");
    const { clusterKeys } = require("../consensus/etcd/elect-core.ts") as typeof import("../consensus/etcd/elect-core.ts");
    this.etcdConn = { client: new EtcdClient(etcdClientOptions(this.d.cfg)), keys: clusterKeys(this.d.cfg.consensus.prefix, this.d.cfg.cluster) };
    return this.etcdConn;
  }

  private async etcdModule() {
    return { migrateEtcd: await import("../consensus/migrate-etcd.ts") };
  }

  /** Durable first: never act on a backend this node could forget at its next start. */
  private persist(f: M.InForce, election?: PersistElection): void {
    if (election) {
      const st = this.d.consensus.status();
      const cur = this.d.store.get();
      const { resumed, ...e } = election;
      const guard = resumed?.guard ?? st.guard ?? cur.guard;
      // A timeline reservation only grows (core/timelines.ts): the stored one may be the higher.
      const timeline = maxTimeline(guard?.timeline, cur.guard?.timeline);
      this.d.store.saveElection({ ...cur, ...e, membership: resumed?.membership ?? st.membership ?? cur.membership, guard: guard ? withTimeline(guard, timeline) : null });
    }
    this.backends.save(f);
    this.inForceNow = f;
  }

  // ------------------------------------------------------------------ a member

  private local(): M.MemberLocal {
    const st = this.d.consensus.status();
    const stored = this.d.store.get();
    return { inForce: this.inForceNow, term: stored.term, follows: { leader: st.leader, term: st.term }, voters: st.membership?.voters ?? stored.membership?.voters ?? [] };
  }

  private async onSwitch(peer: string, m: MigrateSwitch): Promise<void> {
    if (this.leader.running()) return; // this node runs a migration itself: the other one waits for its epoch
    // Stored with a file that cannot run etcd, the switch left this node without a backend, and its agent refusing to start (startingBackend).
    const unfit = m.to === "etcd" && m.epoch > this.inForceNow.epoch ? etcdUnfit(this.d.cfg) : null;
    if (unfit) return void this.d.send(peer, { t: "migrate-ack", epoch: m.epoch, ok: false, reason: `this node's [consensus] cannot run etcd: ${unfit}`.slice(0, 300), own: this.own() });
    const dec = M.onSwitch(this.local(), m, this.clock(), this.timers);
    if (!dec.accept) return void this.d.send(peer, { t: "migrate-ack", epoch: m.epoch, ok: false, reason: dec.reason, own: this.own() });
    if (!dec.again) {
      if (this.d.consensus.lease()) await this.d.fence(`switching to ${m.to} on ${this.d.nameOf(peer)}'s request`);
      this.persist(dec.inForce, dec.election ? { ...dec.election, ledTerm: null } : undefined);
      this.d.consensus.replace(dec.inForce.backend, dec.holdUntil);
      this.d.log.info(`consensus backend now ${m.to} (epoch ${m.epoch}), switched by ${this.d.nameOf(peer)}; out of elections for ${Math.round(dec.holdUntil - this.clock())} ms`);
    }
    this.d.send(peer, { t: "migrate-ack", epoch: m.epoch, ok: true, reason: "", own: this.own() });
  }

  /** This node's backend, epoch and stored built-in term, as its acknowledgements and epoch messages report them. */
  private own(): { backend: M.Backend; epoch: number; term: number } {
    return { ...this.inForceNow, term: this.d.store.get().term };
  }

  private async onHeard(peer: string, heard: M.InForce): Promise<void> {
    if (this.leader.running()) return;
    const a = M.onHeard(this.local(), heard, this.clock(), this.timers, peer);
    if (!a) return;
    if (heard.backend === "etcd" && a.inForce.backend !== this.inForceNow.backend) {
      const unfit = etcdUnfit(this.d.cfg);
      if (unfit) return this.checks.note(`the cluster runs on etcd (epoch ${heard.epoch}), but this node's [consensus] cannot run etcd: ${unfit}; staying on ${this.inForceNow.backend}, out of the cluster's election, until the config file is fixed and the agent restarted`);
      if (!(await this.etcdCommitted(heard))) return;
    }
    await this.adopt(a, heard, this.d.nameOf(peer));
  }

  /**
   * Whether etcd's record holds `heard` with its membership committed. A voter that stored a switch
   * to etcd tells its epoch before the commit; adopted from it then, a migration its leader aborted
   * (or never committed) stopped the built-in election on every node that had not switched, the
   * majority that elected a leader after the abort included (review). Not committed, or etcd not
   * answering: this node stays on builtin and hears the epoch again.
   */
  private async etcdCommitted(heard: M.InForce): Promise<boolean> {
    const { migrateEtcd } = await this.etcdModule();
    try {
      const k = await migrateEtcd.readMigrationKeys(this.etcd().client, this.etcd().keys, this.d.self);
      if (M.onJoinRecord(this.inForceNow, k.seen.record, k.committed, this.clock(), this.timers) !== "wait" && k.seen.record?.backend === "etcd" && k.seen.record.epoch === heard.epoch) return true;
      this.checks.note(`heard etcd (epoch ${heard.epoch}) from a peer, but etcd's record is ${JSON.stringify(k.seen.record)}${k.committed ? "" : " with its membership not committed"}: staying on ${this.inForceNow.backend} until it is`);
    } catch (e) {
      this.checks.note(`heard etcd (epoch ${heard.epoch}) from a peer, but etcd does not answer (${(e as Error).message}): staying on ${this.inForceNow.backend} until it confirms the migration`);
    }
    return false;
  }

  /** Adopts a higher epoch heard from `source` (a voter, or etcd's record): fence, stop, store, run, tell the peers. */
  private async adopt(a: M.Adoption, heard: M.InForce, source: string): Promise<void> {
    if (heard.backend === this.inForceNow.backend) return this.persist(a.inForce);
    if (a.fenceFirst && this.d.consensus.lease()) await this.d.fence(`the cluster moved to ${heard.backend} (epoch ${heard.epoch}) meanwhile`);
    this.d.consensus.stopInner();
    // Leaving etcd: take the resumed leader's guard and membership from etcd's record of the close
    // (an older built-in one of this node's would win over the etcd-era ones); none: a roll-back.
    let election: Parameters<MigrateDriver["persist"]>[1];
    if (heard.backend === "builtin") {
      const { migrateEtcd } = await this.etcdModule();
      try {
        const rec = await migrateEtcd.readRecord(this.etcd().client, this.etcd().keys);
        if (rec?.backend === "builtin" && rec.epoch === heard.epoch && rec.term && rec.leader && rec.resumed && rec.term > this.d.store.get().term) {
          election = { term: rec.term, votedFor: rec.leader, ledTerm: null, resumed: rec.resumed };
        }
      } catch (e) {
        return this.d.log.warn(`cannot read etcd's record of the migration: ${(e as Error).message}; staying out until it answers`);
      }
    }
    if (a.dropOwnEtcdKey) {
      const { migrateEtcd } = await this.etcdModule();
      try {
        if (await migrateEtcd.dropOwnKey(this.etcd().client, this.etcd().keys, this.d.self)) this.d.log.warn("deleted an etcd leader key of this node left from a migration it did not finish");
      } catch (e) {
        // The backend stays stopped: the next epoch message tries again.
        return this.d.log.warn(`cannot check etcd for a leader key of this node: ${(e as Error).message}; staying out until it answers`);
      }
    }
    this.persist(a.inForce, election);
    this.d.consensus.replace(a.inForce.backend, a.holdUntil);
    this.broadcastEpoch(); // at once: the leader's next migration needs this node's report at the new epoch
    this.d.log.info(`consensus backend now ${heard.backend} (epoch ${heard.epoch}), heard from ${source}; out of elections for ${Math.round(a.holdUntil - this.clock())} ms`);
  }
}
