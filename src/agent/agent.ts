// The agent: wires discovery, the mesh, the consensus backend, the cluster-wide flags and the
// operator actions together, and answers the API's questions from what it heard (pure facts in
// core/cluster-facts.ts). Decisions live in core/; this file wires: peers' messages go through
// message-router.ts, the periodic steps through housekeeping.ts, the shared cluster state through
// cluster-state-wiring.ts, the PostgreSQL loop's questions and reports through loop-context.ts.
import * as F from "../core/cluster-facts.ts";
import { canLead } from "../core/sync-exclusion.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { Beacon } from "../net/beacon.ts";
import type { Mesh } from "../net/mesh.ts";
import { formatHostPort } from "../config/hostport.ts";
import { createTransport } from "./transport.ts";
import { ElectionStore } from "../store/election-state.ts";
import { loadOrCreateNodeId } from "../store/node-id.ts";
import { nextRunEpoch } from "../store/run-epoch.ts";
import type { PgReport } from "./messages.ts";
import { PeerTable } from "./peers.ts";
import type { LoopControl } from "./pg/context.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { SecretsSharing } from "./secrets-sharing.ts";
import { ActionRunner } from "./actions.ts";
import { AgentActionHost } from "./action-host.ts";
import { History, type HistoryEntry } from "./history.ts";
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import type { Consensus, DriverHooks } from "./election-driver.ts";
import { createConsensus } from "../consensus/create.ts";
import { startingBackend } from "../consensus/migrate-state.ts";
import { SwitchableConsensus } from "./migrate-consensus.ts";
import { MigrateDriver } from "./migrate-driver.ts";
import { type ClusterSummary, summarizeView } from "../consensus/clusters.ts";
import { FlagsStore } from "./flags.ts";
import { DynamicConfig, type DynamicView } from "./dynamic-config.ts";
import { MembershipKeeper } from "./membership.ts";
import { MemberActions } from "./approvals.ts";
import { LeaderView } from "./leader-view.ts";
import { composeLocalView, composeStatus, durabilityLine } from "./node-view.ts";
import type { NodeStatus } from "../core/node-status.ts";
import { SelfAddress } from "./self-address.ts";
import { Integrations } from "../integrations/index.ts";
import { ClusterStateWiring } from "./cluster-state-wiring.ts";
import { MessageRouter } from "./message-router.ts";
import { Housekeeping } from "./housekeeping.ts";
import { SyncCap } from "./sync-cap.ts";
import { AgentLoopContext } from "./loop-context.ts";
import { runningConfig } from "../ops/reload.ts";

/**
 * onLead: a valid lease until `until` (monotonic ms): arm the fencing. onFence: the lease is gone:
 * stop writes (awaited before the step's messages leave); false when the stop failed (the watchdog
 * stops PostgreSQL at the lease deadline: a resign is not announced before it). suspended: how long
 * the host was suspended since the last call (DriverHooks.suspended).
 */
export interface LeadershipHooks { onLead?(term: number, until: number): void; onFence?(reason: string): Promise<boolean>; suspended?(): number }

const now = () => performance.now();

export class Agent {
  readonly nodeId: string;
  readonly historyLog: History;
  readonly startedAt = Date.now();
  /** Monotonic counters for /metrics (the loop's live in loop-context.ts, leadership counters in the driver). */
  private readonly counters = { fences: 0 };
  private readonly startedMono = now();
  private readonly actions: ActionRunner;
  private loop: LoopControl | null = null;
  private readonly flags: FlagsStore;
  private readonly dynamic: DynamicConfig;
  /** Where the flags, the cluster-wide configuration and the history are shared (etcd), or the mesh. */
  private readonly state: ClusterStateWiring;
  private readonly secretsShared: SecretsSharing;
  private readonly reports = new Map<string, F.PeerReport>();
  private readonly store: ElectionStore;
  readonly consensus: Consensus;
  readonly integrations: Integrations;
  private readonly membership: MembershipKeeper;
  private readonly mesh: Mesh;
  private readonly beacon: Beacon;
  private readonly peers: PeerTable;
  private readonly views = new LeaderView((to, msg) => this.mesh.send(to, msg), now);
  private readonly host: AgentActionHost;
  private readonly router: MessageRouter;
  /** The address peers reach this host at (mesh.advertise, mesh.listen or learnt from an authenticated connection). */
  private readonly self: SelfAddress;
  private readonly housekeeping: Housekeeping;
  private witnessTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  /** A node that cannot lead: its promotability announced, its voting position capped (sync-cap.ts). */
  private readonly syncCap: SyncCap;
  /** Carries out a consensus backend migration and owns the backend in force (shown in /node). */
  private readonly migration: MigrateDriver;
  /** What the PostgreSQL loop sees and does on this agent (run.ts hands it to the loop); it owns this node's own report. */
  readonly loopContext: AgentLoopContext;

  constructor(private readonly cfg: Config, private readonly log: Logger, hooks: LeadershipHooks = {}) {
    this.nodeId = loadOrCreateNodeId(cfg.state_dir);
    this.store = new ElectionStore(cfg.state_dir);
    this.secretsShared = new SecretsSharing(cfg.state_dir, () => this.mesh, () => this.consensus.lease() !== null, now);
    this.historyLog = new History(cfg.state_dir, (m) => log.warn(m));
    this.flags = new FlagsStore(cfg.state_dir);
    this.state = new ClusterStateWiring(cfg, log, this.flags, this.historyLog, () => this.consensus.lease()?.term ?? null);
    this.dynamic = new DynamicConfig({
      cfg, cfgNow: () => runningConfig() ?? cfg, nodeId: this.nodeId, log: log.withTag("config"), send: (to, msg) => this.mesh.send(to, msg), connected: () => this.mesh.connected(),
      leadership: () => {
        // The lease checked against the clock: the driver's flag changes only when the core steps.
        const st = this.consensus.status();
        const l = this.consensus.lease();
        return { term: st.term, leading: l !== null && l.term === st.term && l.until > now(), voters: st.membership?.voters ?? [] };
      },
      record: (e) => this.record(e), nameOf: (id) => this.nameOf(id), legacyDurability: () => this.flags.legacyDurability,
      applied: () => {
        this.broadcastState(this.loopContext.ownReport());
        this.loop?.kick();
      },
      now, sleep: (ms) => Bun.sleep(ms), ...this.state.configSlot(), refusedParameters: (p) => this.loop?.refusedParameters(p) ?? Promise.resolve(null),
    });
    this.peers = new PeerTable(cfg.discovery.max_age_ms);
    this.self = new SelfAddress(cfg.mesh.advertise, () => this.mesh.address());
    this.syncCap = new SyncCap(cfg, this.nodeId, nextRunEpoch(cfg.state_dir), () => this.consensus, log, now);
    const driverHooks: DriverHooks = {
      send: (to, msg) => this.mesh.send(to, msg),
      leaseHeld: (term, until) => hooks.onLead?.(term, until),
      leaseLost: async (reason) => (await hooks.onFence?.(reason)) ?? true,
      suspended: () => hooks.suspended?.() ?? 0,
      leadershipChanged: () => { this.syncCap.refeed(); this.loop?.kick(); }, // refeed: a cap holds for one leader only
      detach: (term) => (this.loop ? this.loop.detach(term) : Promise.resolve({ ok: true, position: null })).then((r) => this.syncCap.detached(r)),
      fatal: (message) => {
        this.log.error(`${message}; stopping the agent`);
        void this.stop().then(() => process.exit(1));
      },
    };
    // The backend in force behind one object, so a migration can replace it (src/agent/migrate-*.ts).
    const switchable = new SwitchableConsensus((backend, h) => createConsensus({ cfg, nodeId: this.nodeId, store: this.store, log, nameOf: (id) => this.nameOf(id), hooks: h }, backend),
      startingBackend(cfg).backend, driverHooks);
    this.consensus = switchable;
    this.migration = new MigrateDriver({
      cfg, self: this.nodeId, log: log.withTag("migrate"), consensus: switchable, store: this.store, send: (to, m) => this.mesh.send(to, m),
      connected: () => this.mesh.connected(), fence: async (reason) => (await hooks.onFence?.(reason)) ?? true, nameOf: (id) => this.nameOf(id),
      switchingOver: () => this.actions.switching,
    });
    this.consensus.attachFailsafe?.(cfg.consensus.failsafe, (to, m) => this.mesh.send(to, m), (id) => this.nameOf(id));
    ({ mesh: this.mesh, beacon: this.beacon } = createTransport(cfg, this.nodeId, this.peers, log, {
      onMessage: (peer, msg) => this.safe(() => this.router.route(peer, msg)),
      onPeerUp: (id, localHost) => {
        this.self.learn(localHost);
        const h = this.historyLog.list();
        if (h.length > 0) this.mesh.send(id, { t: "history", entries: h });
        this.migration.peerUp(id);
        // Now, not at the next round: a restarted peer acts on the leader's state (its primary) at once.
        const own = this.loopContext.ownReport();
        if (own) this.broadcastState(own, id);
      },
      onPeerDown: (id) => this.host?.peerGone(id),
      beaconExtra: () => ({ vote: this.store.get().bootstrapVote, member: this.store.get().membership !== null }),
      announced: () => this.membership.step(true), // bootstrap: a vote heard counts now, not at the next housekeeping step
    }));
    this.host = new AgentActionHost({
      cfg, nodeId: this.nodeId, consensus: this.consensus, flags: this.flags, dynamic: this.dynamic, mesh: this.mesh, loop: () => this.loop,
      facts: () => this.facts(), localView: () => this.localView(), record: (e) => this.record(e),
      flagsChanged: (kick) => {
        this.broadcastState(this.loopContext.ownReport());
        if (kick) this.loop?.kick();
      },
      backupChanged: () => this.loopContext.backupChanged(),
    });
    const joinBlocker = (id: string) => F.joinBlocker(this.facts(), id, this.secretsShared.get()?.systemId ?? null);
    this.membership = new MembershipKeeper({
      cfg, log, nodeId: this.nodeId, store: this.store, consensus: this.consensus, peers: this.peers,
      durability: () => this.dynamic.durability(), markDegraded: () => this.loop?.markDegraded(), configMissing: (v) => this.dynamic.missingFrom(v),
      joinBlocker,
      primaryWritable: () => {
        const own = this.loopContext.ownReport();
        return own?.up === true && own.inRecovery === false;
      },
      announce: () => this.beacon.sendNow(), nameOf: (id) => this.nameOf(id),
    });
    const members = new MemberActions({
      nodeId: this.nodeId, nodeName: cfg.node_name, consensus: this.consensus, keeper: this.membership,
      peers: () => this.peers.list(), nameOf: (id) => this.nameOf(id), joinBlocker, record: (e) => this.record(e), sleep: (ms) => Bun.sleep(ms),
    });
    this.actions = new ActionRunner(this.host, log.withTag("action"), members);
    this.router = new MessageRouter({
      log, self: this.nodeId, consensus: this.consensus, secrets: this.secretsShared.store, peers: this.peers, mesh: () => this.mesh, host: () => this.host, flags: this.flags,
      dynamic: this.dynamic, history: this.historyLog, views: this.views, reports: this.reports, loop: () => this.loop, localView: () => this.localView(),
      runAsLeader: (req, from) => req.kind === "consensus-migrate" ? this.migration.start(req.to) : this.migrationRefuses(req) ?? this.actions.runAsLeader(req, from).then((r) => this.state.flagsStored(r)),
      stopped: () => this.stopped, safe: (f) => this.safe(f), now, migrate: (peer, m) => this.migration.receive(peer, m),
      exclusionHeard: (from, e, m) => this.syncCap.heard(from, e, m),
    });
    this.housekeeping = new Housekeeping({
      log, maxAgeMs: cfg.discovery.max_age_ms, peers: this.peers, mesh: this.mesh, safe: (f) => this.safe(f), now,
      steps: [() => this.membership.step(), () => this.dynamic.step(), () => this.flags.sync(), () => this.historyLog.sync(), () => this.migration.step()],
      runDue: () => this.actions.runDue(),
    });
    this.integrations = new Integrations(cfg, log, {
      nodeId: this.nodeId, leadership: () => this.loopContext.leadership(), nameOf: (id) => this.nameOf(id), record: (e) => this.record(e),
      secrets: () => this.secretsShared.get(), localView: () => this.localView(),
    }, () => this.loop?.kick());
    this.loopContext = new AgentLoopContext({
      cfg, nodeId: this.nodeId, consensus: this.consensus, flags: this.flags, dynamic: this.dynamic, membership: this.membership, syncCap: this.syncCap,
      secrets: this.secretsShared, self: this.self, peers: this.peers, backups: this.actions.backups, integrations: this.integrations, history: this.historyLog,
      reports: this.reports, facts: () => this.facts(), broadcast: (r) => this.broadcastState(r), record: (e) => this.record(e), nameOf: (id) => this.nameOf(id),
      handedOverBy: () => this.router.takeHandoverFrom(),
    });
  }

  async start(): Promise<void> {
    const st = this.store.get();
    this.log.info(
      `node ${this.cfg.node_name} (${this.nodeId}) role ${this.cfg.role}, cluster ${this.cfg.cluster}, term ${st.term}, ` +
        (st.membership ? `voters ${st.membership.voters.join(",")}` : `no membership yet (bootstrap_expect ${this.cfg.bootstrap_expect})`),
    );
    await this.mesh.start();
    await this.beacon.start();
    this.log.info(`mesh listening on ${formatHostPort(this.mesh.address())}, beacon on UDP ${this.cfg.discovery.port}`);
    this.housekeeping.start();
    this.consensus.start();
    this.state.start();
  }

  /** A witness runs no PostgreSQL; it still tells its peers it is alive. */
  startWitnessReports(): void {
    this.witnessTimer = setInterval(() => this.safe(() => this.broadcastState(null)), this.cfg.postgres.loop_ms);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.consensus.stop();
    this.migration.stop();
    this.state.stop();
    this.housekeeping.stop();
    clearInterval(this.witnessTimer);
    this.views.cancelAll();
    this.host.forwarded.cancelAll(() => ({ status: 503, ok: false, message: "the agent is stopping" }));
    this.host.handovers.cancelAll(() => null);
    await Promise.allSettled([this.beacon.stop(), this.mesh.stop(), this.historyLog.flushed()]);
  }

  attachLoop(loop: LoopControl): void {
    this.loop = loop;
  }

  status(): NodeStatus {
    return composeStatus(this.statusInput());
  }

  /** This agent's own composition of the cluster table. */
  localView(): ClusterView {
    return composeLocalView(this.statusInput());
  }

  /** The leader's view when it answers within the deadline (one request shared, reused for 500 ms: leader-view.ts), else ours (marked). */
  async clusterView(timeoutMs = 2000): Promise<{ source: "leader" | "local"; view: ClusterView }> {
    const leader = this.consensus.status().leader;
    if (!leader || leader === this.nodeId) return { source: leader === this.nodeId ? "leader" : "local", view: this.localView() };
    const v = await this.views.get(leader, timeoutMs);
    return v ? { source: "leader", view: v } : { source: "local", view: this.localView() };
  }

  /** Whether `id`'s agent answers a request now (a stopping agent does not): src/agent/handover.ts. Never cached. */
  async answers(id: string, timeoutMs: number): Promise<boolean> {
    return (await this.views.ask(id, timeoutMs)) !== null;
  }

  /** `/clusters`: every cluster the consensus store shows (etcd), else this one. */
  async clusters(): Promise<ClusterSummary[]> {
    return this.consensus.clusters ? this.consensus.clusters() : summarizeView((await this.clusterView()).view);
  }

  history(): HistoryEntry[] {
    return this.historyLog.list();
  }

  failovers(): number {
    return this.historyLog.failovers();
  }

  /** GET /config: the cluster-wide configuration this node stores, and its conflicts with pgherd.toml. */
  dynamicConfig(): DynamicView {
    return this.dynamic.view();
  }

  action(req: ActionRequest): Promise<ActionResult> {
    if (req.kind === "consensus-migrate") return this.migration.request(req, (r) => this.host.forwardToLeader(r, 60_000));
    return this.migrationRefuses(req) ?? this.actions.run(req).then((r) => this.state.flagsStored(r));
  }

  /** A stopping leader hands over to `to` (handover.ts): a switchover that prefers a target with every slot copy, not requires one. */
  handOver(to: string): Promise<ActionResult> {
    return this.migrationRefuses({ kind: "switchover", to }) ?? this.actions.handover(to).then((r) => this.state.flagsStored(r));
  }

  /** Switchover and failover move leadership: refused while this node runs a consensus migration. */
  private migrationRefuses(req: ActionRequest): Promise<ActionResult> | null {
    if ((req.kind !== "switchover" && req.kind !== "failover") || !this.migration.running()) return null;
    return Promise.resolve({ status: 409, ok: false, message: `${req.kind}: a consensus migration is running on this node: try again once it is over` });
  }

  // ------------------------------------------------------------------ facts

  private facts(): F.FactsSnapshot {
    const st = this.consensus.status();
    return {
      self: { id: this.nodeId, name: this.cfg.node_name, role: this.cfg.role, neverPromoted: !canLead({ role: this.cfg.role, nofailover: this.cfg.tags.nofailover, priority: this.cfg.priority }), report: this.loopContext.ownReport() },
      now: now(), startedAt: this.startedMono, freshMs: F.freshMs(this.cfg.postgres.loop_ms),
      voters: st.membership?.voters ?? [], leader: st.leader, reports: this.reports, peers: this.peers.list(),
    };
  }

  private statusInput() {
    return {
      cfg: this.cfg, nodeId: this.nodeId, facts: this.facts(), election: this.consensus.status(), lease: this.consensus.lease(),
      electionNote: this.consensus.note(), bootstrapNote: this.membership.bootstrapNote(), selfHost: this.self.host(),
      meshAddr: this.self.mesh(), flags: this.flags.get(), durabilityLine: this.durabilityLine(),
      counters: { ...this.counters, ...this.loopContext.counters, ...this.consensus.counters }, peers: this.peers.list(),
      rejects: { beacon: this.beacon.rejects(), mesh: this.mesh.rejects() }, uptimeMs: Date.now() - this.startedAt, backend: this.migration.inForce(),
      votingCap: this.syncCap.cap(), clusterSystemId: this.secretsShared.get()?.systemId ?? null,
    };
  }

  /** What the cluster currently guarantees, as the primary computed it. */
  durabilityLine(): string {
    const r = this.consensus.status().leader === this.nodeId ? this.loopContext.ownReport() : F.leaderPg(this.facts())?.report;
    return durabilityLine(this.dynamic.durability(), r?.guarantee);
  }

  nameOf(id: string): string {
    return F.nameOf(this.facts(), id);
  }

  // ------------------------------------------------------------------ messages

  /** This node's state to every connected peer, or to `only` (one that just connected). */
  private broadcastState(pg: PgReport | null, only?: string): void {
    if (this.syncCap.withholding()) return; // a new run that cannot lead: until its echo (sync-cap.ts)
    const f = this.flags.get();
    const leading = this.consensus.lease() !== null;
    const msg = {
      t: "state" as const, role: this.cfg.role, pg, nofailover: this.cfg.tags.nofailover, ...this.syncCap.announce(),
      // durability: for followers of an earlier version during an upgrade (this version reads it from the configuration).
      ...(leading ? { paused: f.paused, durability: this.dynamic.durability(), scheduled: f.scheduled } : {}),
    };
    const exclusion = (leading ? this.loop?.exclusion(this.consensus.status().term) : null) ?? null;
    const seq = this.syncCap.stamp(exclusion);
    for (const id of only ? [only] : this.mesh.connected()) this.mesh.send(id, exclusion ? { ...msg, seq, exclusion } : { ...msg, seq });
  }

  /** Never let one bad event take the agent down. */
  private safe(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.log.error(`internal error: ${(e as Error).stack ?? e}`);
    }
  }

  // ------------------------------------------------------------------ history

  /** A history entry: kept, told to the integrations and to every connected peer. */
  record(e: Omit<HistoryEntry, "id" | "at">): void {
    const entry = this.historyLog.add(e);
    this.integrations.recorded(entry);
    if (e.kind === "fence") this.counters.fences++;
    this.log.info(`history: ${entry.kind}: ${entry.reason}`);
    for (const id of this.mesh.connected()) this.mesh.send(id, { t: "history", entries: [entry] });
  }
}
