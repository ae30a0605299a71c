// A live migration between the built-in election and etcd: carries out the pure plan
// (src/core/consensus-migrate.ts) in the order it gives. It owns the backend record
// (<state_dir>/consensus.json through BackendStore), the leader's plan, its tick timer and the etcd
// lease taken for a migration to etcd. Decisions are the core's; this file does the I/O: etcd
// transactions (src/consensus/migrate-etcd.ts), durable records, mesh messages, the backend swap
// (src/agent/migrate-consensus.ts), and the fence when the plan aborts.
import type { Config } from "../config/schema.ts";
import type { Guard, Membership } from "../core/messages.ts";
import * as M from "../core/consensus-migrate.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import { BackendStore, startingBackend } from "../consensus/migrate-state.ts";
import type { MigrateMsg, MigrateSwitch } from "../consensus/migrate-msgs.ts";
import type { SwitchableConsensus } from "./migrate-consensus.ts";
import type { EtcdClient } from "../consensus/etcd/client.ts";
import type { ClusterKeys } from "../consensus/etcd/elect-core.ts";
import { etcdClientOptions } from "../consensus/create.ts";
import * as L from "./migrate-leader-etcd.ts";

export interface MigrateDeps {
  cfg: Config;
  self: string;
  log: Logger;
  consensus: SwitchableConsensus;
  store: ElectionStore;
  send: (to: string, msg: MigrateMsg) => void;
  connected: () => string[];
  /** Stop writes now (the agent's fence), resolved once PostgreSQL is stopped. */
  fence: (reason: string) => Promise<void>;
  nameOf: (id: string) => string;
  /** An operator's switchover or failover runs on this node now. */
  switchingOver?: () => boolean;
  clock?: () => number;
}

/** "term, voted for" stored with a switch to builtin (with the guard and membership stamped in it, when known). */
export type PersistElection = { term: number; votedFor: string; ledTerm: number | null; resumed?: { guard: Guard; membership: Membership } };

const TICK_MS = 100;
const EPOCH_EVERY_MS = 2000;
/** How often a close with an unknown outcome is read back (settleClose). */
const CLOSING_EVERY_MS = 500;
/** A migration that neither committed nor aborted by then is reported as still running. */
const ANSWER_MS = 30_000;

export interface Running {
  state: M.LeaderState;
  /** The backend in force when it started (to builtin: etcd's record the close replaces). */
  from: M.InForce;
  voters: string[];
  /** To etcd: the lease taken for the key, and its local deadline; to builtin: the key's etcd term and lease. */
  etcd: { leaseId: string; term: number } | null;
  etcdUntil: number | null;
  timer: ReturnType<typeof setInterval> | undefined;
  /** When the migration last sent a renewal of its etcd lease (to etcd, before the commit). */
  renewedAt: number;
  /** The leader's term in the backend it leaves, carried in every switch. */
  leaderTerm: number;
  /** The membership at the start: written into etcd at the commit. */
  membership: Membership | null;
  /** To builtin: the guard and membership stamped in the resumed term (carried in every switch). */
  resumed?: { guard: Guard; membership: Membership };
  /**
   * To builtin: the close was sent and etcd did not say it failed (applied, or unknown): if the plan
   * aborts, this node stays stopped and fenced until etcd's keys settle it (MigrateDriver.settleClose).
   */
  closeSent?: boolean;
  /** To etcd: the open transaction was sent and not answered (it may have applied). */
  openSent?: boolean;
  /** SwitchableConsensus.resigns at the start: once it changes, the lease no longer counts. */
  resigns: number;
  answer: (r: ActionResult) => void;
}

export class MigrateDriver {
  private readonly backends: BackendStore;
  private inForceNow: M.InForce;
  private run: Running | null = null;
  private chain: Promise<void> = Promise.resolve();
  private lastEpochSent = -Infinity;
  private lastRefusal = "";
  private lastClosedCheck = -Infinity;
  /** A close of etcd whose outcome is unknown (or applied without builtin stored here): its epoch and the key's term. */
  private closing: L.Closing | null = null;
  /** A migration to etcd (its epoch) that aborted with its open applied or possibly applied, etcd's record not yet settled (settleOpening). */
  private opening: number | null = null;
  private lastOpenCheck = -Infinity;
  /** No consensus.json at start and etcd configured: etcd's record not read yet (joinFromRecord). */
  private joining = false;
  /** The last warning of a periodic check (logged once until it changes). */
  private lastNote = "";
  /** The periodic checks queued or running: one of a kind at a time (a blackholed etcd must not grow the chain). */
  private readonly checking = new Set<"join" | "open" | "closed">();
  private takeover: ReturnType<typeof setTimeout> | undefined;
  private etcdConn: { client: EtcdClient; keys: ClusterKeys } | null = null;
  /** The highest epoch heard of (peers' epoch messages and refusals, etcd's record): a new one starts above it. */
  private knownEpoch = 0;
  /** Each peer's last epoch message or refusal: its backend, epoch and stored built-in term. */
  private readonly reports = new Map<string, { backend: M.Backend; epoch: number; term: number }>();
  private readonly clock: () => number;
  private readonly timers: M.MigrateTimers;
  private readonly ctx: L.LeaderEtcdCtx;

  constructor(private readonly d: MigrateDeps) {
    this.clock = d.clock ?? (() => performance.now());
    this.backends = new BackendStore(d.cfg.state_dir);
    this.inForceNow = startingBackend(d.cfg);
    const e = d.cfg.election;
    this.timers = { timeoutMs: e.timeout_ms, ttlMs: d.cfg.consensus.ttl_s * 1000, maxDrift: e.max_drift, fenceMs: e.fence_ms };
    // A hold taken just before a restart is not in memory any more: a migrated node holds at every start.
    this.ctx = { d, etcd: () => this.etcd(), timers: this.timers, clock: this.clock, persist: (f, e) => this.persist(f, e), note: (m) => this.note(m) };
    const hold = M.startHoldMs(this.inForceNow, this.timers);
    if (hold > 0) d.consensus.holdAtLeast(this.clock() + hold);
    // Never stored a migration's record nor a membership (a node added, or a new state_dir): etcd's
    // record says whether the cluster moved meanwhile; nobody else can tell it (it has no voters to hear from).
    this.joining = M.joinsFromRecord({
      stored: this.backends.get(), etcdConfigured: d.cfg.consensus.endpoints.length > 0, configured: d.cfg.consensus.backend, hasMembership: d.store.get().membership !== null,
    });
  }

  /** Whether this node runs a migration now (operator actions that move leadership refuse meanwhile). */
  running(): boolean {
    return this.run !== null;
  }

  inForce(): M.InForce {
    return { ...this.inForceNow };
  }

  stop(): void {
    clearInterval(this.run?.timer);
    clearTimeout(this.takeover);
  }

  /** `POST /consensus/migrate` on any node: the leader runs it, a member forwards it there. */
  request(req: Extract<ActionRequest, { kind: "consensus-migrate" }>, forward: (r: ActionRequest) => Promise<ActionResult>): Promise<ActionResult> {
    const leader = this.d.consensus.status().leader;
    if (leader === this.d.self) return this.start(req.to);
    return leader ? forward(req) : Promise.resolve({ status: 503, ok: false, message: "no leader at the moment: try again" });
  }

  /** On the leader: runs the plan; answers once it committed or aborted. */
  start(to: M.Backend): Promise<ActionResult> {
    if (this.run) return Promise.resolve({ status: 409, ok: false, message: `a migration to ${this.run.state.to} is running` });
    const c = this.d.consensus;
    const st = c.status();
    const lease = c.lease();
    const voters = st.membership?.voters ?? [];
    const r = M.checkStart(to, {
      self: this.d.self, inForce: this.inForceNow, leading: lease !== null && lease.until > this.clock(), voters,
      connected: this.d.connected(), etcdConfigured: this.d.cfg.consensus.endpoints.length > 0, configured: this.d.cfg.consensus.backend,
      switchingOver: this.d.switchingOver?.() ?? false, allowed: this.d.cfg.consensus.allow_migration,
      knownEpoch: this.knownEpoch, voterTerms: this.voterTerms(),
    });
    if ("refuse" in r) {
      const named = voters.reduce((m, id) => m.replaceAll(id, this.d.nameOf(id)), r.refuse); // voters by name, as the log names them
      return Promise.resolve({ status: 409, ok: false, message: `consensus migrate --to ${to}: ${named}` });
    }
    clearTimeout(this.takeover); // a previous migration's watch: this node leads now, so it is over
    const term = to === "builtin" ? M.resumeTerm(this.d.store.get().term, lease!.term, Object.values(this.voterTerms())) : 0;
    const plan = M.startPlan(to, r.epoch, term);
    this.d.log.info(`consensus migration to ${to} (epoch ${r.epoch}) started with voters ${voters.map(this.d.nameOf).join(", ")}`);
    return new Promise<ActionResult>((answer) => {
      const timeout = setTimeout(() => answer({ status: 504, ok: false, message: `the migration to ${to} is still running after ${ANSWER_MS / 1000} s: see the agent's log and /node` }), ANSWER_MS);
      this.run = {
        state: plan.state, from: { ...this.inForceNow }, voters, etcd: null, etcdUntil: null, timer: undefined, renewedAt: this.clock(), leaderTerm: lease!.term,
        membership: st.membership, resigns: c.resigns, answer: (res) => (clearTimeout(timeout), answer(res)),
      };
      c.migrating = true;
      // A failure after the etcd backend stopped (to builtin) fences: the plan may not act past it.
      this.serial(() => this.carry(plan.actions).catch(async (e: Error) => this.observe({ type: "opened", ok: false, detail: e.message, stopped: c.innerStopped(), ...this.leases() })));
      this.run.timer = setInterval(() => this.serial(() => this.tick()), TICK_MS);
    });
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
      else if (this.run) this.serial(() => this.observe({ type: "ack", from: peer, epoch: msg.epoch, ...this.leases() }));
      return;
    }
    if (msg.t === "migrate-switch") return void (msg.leader === peer && this.serial(() => this.onSwitch(peer, msg)));
    this.serial(() => this.onHeard(peer, { backend: msg.backend, epoch: msg.epoch }));
  }

  /**
   * Housekeeping: a migrated node tells its peers its epoch and built-in term every few seconds (not
   * while it migrates; during a hold too, so a leader hears every epoch a voter stored).
   */
  step(): void {
    const now = this.clock();
    if (this.joining && !this.run && !this.checking.has("join") && now - this.lastClosedCheck >= EPOCH_EVERY_MS) {
      this.lastClosedCheck = now;
      this.check("join", () => this.joinFromRecord());
    }
    if (this.opening !== null && !this.run && !this.checking.has("open") && now - this.lastOpenCheck >= EPOCH_EVERY_MS) {
      this.lastOpenCheck = now;
      const epoch = this.opening;
      this.check("open", () => this.settleOpening(epoch));
    }
    const every = this.closing ? CLOSING_EVERY_MS : EPOCH_EVERY_MS;
    if (this.inForceNow.backend === "etcd" && !this.run && !this.checking.has("closed") && (this.closing || this.d.consensus.status().membership === null) && now - this.lastClosedCheck >= every) {
      this.lastClosedCheck = now;
      this.check("closed", () => (this.closing ? this.settleClose(this.closing) : this.checkClosed()));
    }
    if (this.inForceNow.epoch < 1 || this.run || now - this.lastEpochSent < EPOCH_EVERY_MS) return;
    this.broadcastEpoch();
  }

  /**
   * On etcd with no membership there: a leader that closed etcd for a migration to builtin may have
   * died before anyone heard of it (etcd's record of the close names the epoch: adopt it), or one
   * migrating to etcd died before the commit (roll it back once its key is gone, then adopt that).
   */
  private async checkClosed(): Promise<void> {
    const { migrateEtcd } = await this.etcdModule();
    const { client, keys } = this.etcd();
    const rolled = await migrateEtcd.rollBackPending(client, keys).catch(() => false);
    if (rolled) this.d.log.warn("etcd was left pending by a migration whose leader is gone: rolled back to builtin");
    const rec = await migrateEtcd.readRecord(client, keys).catch(() => null);
    if (rec?.backend === "builtin" && rec.epoch > this.inForceNow.epoch) await this.onHeard(rec.leader ?? this.d.self, { backend: "builtin", epoch: rec.epoch });
  }

  /** A close with an unknown outcome: out and fenced until etcd's keys settle it (migrate-leader-etcd.ts settleClose). */
  private async settleClose(c: L.Closing): Promise<void> {
    if (this.inForceNow.epoch >= c.epoch) return void (this.closing = null); // adopted from a peer meanwhile
    const out = await L.settleClose(this.ctx, c);
    if (out === "unknown") return;
    this.lastNote = "";
    if (out === "open") {
      this.closing = null;
      this.d.log.warn(`etcd was not closed (epoch ${c.epoch}) and can no longer be: running on etcd again`);
      return this.d.consensus.replace("etcd", -Infinity);
    }
    await this.onHeard(out.leader ?? this.d.self, { backend: out.backend, epoch: out.epoch });
    if (this.inForceNow.epoch >= c.epoch) this.closing = null;
  }

  /**
   * A node that never stored a migration's record nor a membership adopts etcd's record once it reads
   * it with the membership committed (retried every 2 s until etcd answers and a pending one settles).
   */
  private async joinFromRecord(): Promise<void> {
    if (!this.joining || this.backends.get() !== null || this.d.store.get().membership !== null) return void (this.joining = false);
    const { migrateEtcd } = await this.etcdModule();
    let a: ReturnType<typeof M.onJoinRecord>, rec: M.InForce | null;
    try {
      const k = await migrateEtcd.readMigrationKeys(this.etcd().client, this.etcd().keys, this.d.self);
      rec = k.seen.record;
      a = M.onJoinRecord(this.inForceNow, rec, k.committed, this.clock(), this.timers);
    } catch (e) {
      return this.note(`etcd: cannot read the record of this cluster's backend (a node with no ${this.backends.file} checks whether the cluster moved to etcd): ${(e as Error).message}; trying every 2 s`);
    }
    if (a === "wait") return this.note(`etcd's record names etcd (epoch ${rec!.epoch}) with its membership not committed (a migration not carried out): not joining it; reading again every 2 s`);
    if (rec && a) await this.adopt(a, rec, "etcd's record (this node had stored none)");
    this.joining = false;
    this.lastNote = "";
  }

  /** A periodic check's warning: logged once, not every 2 s, until it changes. */
  private note(msg: string): void {
    if (msg !== this.lastNote) this.d.log.warn(msg);
    this.lastNote = msg;
  }

  /** A periodic check, queued only when none of its kind is queued or running (each may take k × request_timeout_ms). */
  private check(kind: "join" | "open" | "closed", fn: () => Promise<void>): void {
    this.checking.add(kind);
    this.serial(() => fn().finally(() => this.checking.delete(kind)));
  }

  /** etcd's record of a migration to etcd this node aborted after its open applied or may have: settled, then stored like the roll-back step. */
  private async settleOpening(epoch: number): Promise<void> {
    if (this.run || this.opening !== epoch) return;
    const out = await L.settleOpen(this.ctx, epoch);
    if (out === "unknown" || this.opening !== epoch) return;
    this.opening = null;
    this.lastNote = "";
    this.knownEpoch = Math.max(this.knownEpoch, out.epoch);
    this.d.log.info(`etcd's record after the aborted migration to etcd (epoch ${epoch}) is settled: ${out.backend} at epoch ${out.epoch}`);
    if (out.backend === "builtin" && this.inForceNow.backend === "builtin" && out.epoch > this.inForceNow.epoch) {
      this.persist(out);
      this.broadcastEpoch();
    }
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

  /** Durable first: never act on a backend this node could forget at its next start. */
  private persist(f: M.InForce, election?: PersistElection): void {
    if (election) {
      const st = this.d.consensus.status();
      const cur = this.d.store.get();
      const { resumed, ...e } = election;
      this.d.store.saveElection({ ...cur, ...e, membership: resumed?.membership ?? st.membership ?? cur.membership, guard: resumed?.guard ?? st.guard ?? cur.guard });
    }
    this.backends.save(f);
    this.inForceNow = f;
  }

  // ------------------------------------------------------------------ the leader

  /** The leases now, as the plan checks them; none once this node resigned during the migration. */
  private leases(): M.Leases {
    const r = this.run;
    const now = this.clock();
    if (!r) return { now, builtinUntil: null, etcdUntil: null };
    const resigned = this.d.consensus.resigns !== r.resigns;
    const builtinUntil = !resigned && (r.state.to === "etcd" || r.state.phase !== "open") ? (this.d.consensus.lease()?.until ?? null) : null;
    return { now, builtinUntil, etcdUntil: resigned ? null : r.etcdUntil };
  }

  private async tick(): Promise<void> {
    if (!this.run) return;
    await L.renewEtcd(this.ctx, this.run);
    await this.observe({ type: "tick", ...this.leases() });
  }

  private async observe(obs: M.LeaderObs): Promise<void> {
    const r = this.run;
    if (!r) return;
    const next = M.leaderStep(r.state, obs, this.d.self, r.voters);
    r.state = next.state;
    try {
      await this.carry(next.actions);
    } catch (e) {
      // An action could not be carried out (a record not stored): stop writes and give back what
      // this migration took, as the plan's own abort does; the members follow the epoch they stored.
      r.state = { ...r.state, phase: "aborted", reason: `${(e as Error).message}` };
      await this.carry([{ do: "fence", revoke: r.state.to === "etcd" }]).catch((e2: Error) => this.d.log.error(`consensus migration: ${e2.message}`));
    }
    if (r.state.phase === "done" || r.state.phase === "aborted") this.finish(r);
  }

  private finish(r: Running): void {
    clearInterval(r.timer);
    this.run = null;
    this.d.consensus.migrating = false;
    this.d.consensus.setCap(null);
    const { to, epoch, phase, reason } = r.state;
    if (phase === "done") {
      this.d.log.info(`consensus migration to ${to} (epoch ${epoch}) committed; this node runs on ${this.inForceNow.backend}`);
      this.broadcastEpoch();
      r.answer({ status: 200, ok: true, message: `${M.outcome(r.state)}; every voter stores it (those that missed the switch adopt it when they hear the epoch)` });
    } else {
      this.d.log.warn(`consensus migration to ${to} (epoch ${epoch}) aborted: ${reason}`);
      // Stopped before anyone was told to switch (to builtin, etcd not closed): run the backend in force
      // again. A close that applied or may have: never back on etcd before etcd's keys settle it.
      // To etcd with the open applied or possibly applied and no roll-back stored: etcd's record is settled (settleOpening).
      if (r.state.to === "etcd" && (r.openSent || r.etcd) && this.inForceNow.epoch < epoch) this.opening = epoch;
      if (r.state.to === "builtin" && r.closeSent && this.inForceNow.epoch < epoch && r.etcd) {
        this.closing = { epoch, etcd: r.etcd };
        this.d.log.warn(`etcd may be closed (epoch ${epoch}): this node stays out and fenced until etcd says whether the close applied`);
      } else if (this.d.consensus.innerStopped()) this.d.consensus.replace(this.inForceNow.backend, -Infinity);
      const where = this.closing ? `etcd may be closed: this node stays fenced and out until etcd answers whether the close applied (then it runs on builtin at epoch ${epoch}, or on etcd again)` : `this node runs on ${this.inForceNow.backend} (epoch ${this.inForceNow.epoch})`;
      r.answer({ status: 503, ok: false, message: `consensus migrate --to ${to} aborted: ${reason}; ${this.closing ? "" : `${M.outcome(r.state)}; `}${where}` });
    }
  }

  private async carry(actions: M.LeaderAction[]): Promise<void> {
    for (const a of actions) {
      const r = this.run;
      if (!r) return;
      switch (a.do) {
        case "open": {
          const learn = (e: number) => (this.knownEpoch = Math.max(this.knownEpoch, e));
          const ok = r.state.to === "etcd" ? await L.openEtcd(this.ctx, r, learn) : await L.openBuiltin(this.ctx, r);
          const stopped = this.d.consensus.innerStopped();
          await this.observe(ok === true ? { type: "opened", ok: true, ...this.leases() } : { type: "opened", ok: false, detail: ok, stopped, ...this.leases() });
          return; // observe carried out what follows
        }
        case "send-switch":
          for (const to of a.to) {
            const back = r.state.to === "builtin" ? { term: r.state.term, ...(r.resumed ? { resumed: r.resumed } : {}) } : {};
            this.d.send(to, { t: "migrate-switch", to: r.state.to, epoch: r.state.epoch, leader: this.d.self, leaderTerm: r.leaderTerm, ...back });
          }
          break;
        case "commit-etcd":
          await this.observe(await L.commitEtcd(this.ctx, r));
          return; // observe carried out what follows
        case "roll-back":
          // A decision like any other: taken in etcd's record first, so its epoch is used once.
          if (await L.rollBack(this.ctx, a.inForce, a.ifRecord)) {
            this.persist(a.inForce);
            this.broadcastEpoch();
          } else r.state = { ...r.state, reason: `${r.state.reason}; the roll-back could not be written to etcd's record, so this node did not store it (the members that stored etcd roll it back there once the key's lease ran out)` };
          break;
        case "persist-and-swap": {
          const until = M.migratingLease(r.state, this.d.consensus.lease()?.until ?? null, r.etcdUntil) ?? this.clock();
          this.persist(a.inForce);
          this.d.consensus.setCap(null);
          // The etcd backend resumes the key bound to this node's id on the migration's lease; the
          // built-in election no longer fences, so fence here if that has not happened by the deadline.
          this.d.consensus.replace(a.inForce.backend, -Infinity);
          this.takeover = setTimeout(() => this.watchTakeover(until), 0);
          break;
        }
        case "release-etcd": {
          const e = r.etcd!;
          const { migrateEtcd } = await this.etcdModule();
          await migrateEtcd.releaseEtcd(this.etcd().client, this.etcd().keys, { term: e.term, leaseId: e.leaseId })
            .catch((err: Error) => this.d.log.warn(`could not release the etcd leader key (its lease runs out by itself): ${err.message}`));
          break;
        }
        case "fence":
          await this.d.fence(`consensus migration to ${r.state.to} aborted: ${r.state.reason}`);
          if (a.revoke && r.etcd) {
            const { migrateEtcd } = await this.etcdModule();
            await migrateEtcd.releaseEtcd(this.etcd().client, this.etcd().keys, r.etcd).catch((err: Error) => this.d.log.warn(`etcd release: ${err.message}`));
          }
          await this.d.consensus.resign(`consensus migration aborted: ${r.state.reason}`);
          break;
      }
    }
  }

  /** Until the etcd backend leads (then it fences on its own deadline), or the deadline passed: then fence. */
  private watchTakeover(until: number): void {
    clearTimeout(this.takeover);
    if (this.d.consensus.lease() !== null) return;
    if (this.clock() >= until) return void this.d.fence("the etcd backend did not resume the leader key before the migration's lease ran out");
    this.takeover = setTimeout(() => this.watchTakeover(until), Math.min(TICK_MS / 2, Math.max(0, until - this.clock())));
  }

  private async etcdModule() {
    return { migrateEtcd: await import("../consensus/migrate-etcd.ts") };
  }

  // ------------------------------------------------------------------ a member

  private local(): M.MemberLocal {
    const st = this.d.consensus.status();
    const stored = this.d.store.get();
    return { inForce: this.inForceNow, term: stored.term, follows: { leader: st.leader, term: st.term }, voters: st.membership?.voters ?? stored.membership?.voters ?? [] };
  }

  private async onSwitch(peer: string, m: MigrateSwitch): Promise<void> {
    if (this.run) return; // this node runs a migration itself: the other one waits for its epoch
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
    if (this.run) return;
    const a = M.onHeard(this.local(), heard, this.clock(), this.timers, peer);
    if (a) await this.adopt(a, heard, this.d.nameOf(peer));
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
