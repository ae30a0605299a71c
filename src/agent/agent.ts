// The agent's event loop: the imperative shell around the pure election core.
// Order for every Ready, as the core demands: persist (fsync) → stop writes if
// leadership was lost → send → re-arm the wake-up timer.
import { Election, type Event, type Ready } from "../core/election.ts";
import { decideBootstrap, type PeerView } from "../core/bootstrap.ts";
import { ZERO_POSITION, comparePosition, lsnToBigInt, type Position } from "../core/position.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { Beacon, defaultBroadcastAddresses, type Announcement } from "../net/beacon.ts";
import { Mesh } from "../net/mesh.ts";
import { parseHostPort, formatHostPort } from "../config/hostport.ts";
import { ElectionStore } from "../store/election-state.ts";
import { loadOrCreateNodeId } from "../store/node-id.ts";
import { AgentMsgSchema, type AgentMsg, type PgReport } from "./messages.ts";
import { PeerTable } from "./peers.ts";
import type { ClusterContext } from "./postgres-loop.ts";
import { slotFor } from "./postgres-loop.ts";
import { ElectionMsgSchema } from "../core/messages.ts";
import { composeView, type ClusterView, type MemberInput } from "../core/cluster-view.ts";
import { SecretsStore, type ClusterSecrets } from "../store/cluster-secrets.ts";
import { isIP } from "node:net";
import { join } from "node:path";
import { z } from "zod";
import { ActionRunner, type ActionHost } from "./actions.ts";
import { History, type HistoryEntry } from "./history.ts";
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import type { Candidate } from "../core/switchover.ts";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";

export interface LeadershipHooks {
  /** Called when this node gains a valid lease (may accept writes until `until`, local monotonic ms). */
  onLead?(term: number, until: number): void;
  /** Called when it loses it; must stop writes before returning (messages wait for it). */
  onFence?(reason: string): void;
}

const HOUSEKEEPING_MS = 250;

/** What the agent needs from its PostgreSQL loop (absent on a witness). */
export interface LoopControl {
  kick(): void;
  catchUp(final: Position | null, timeoutMs: number): Promise<Position | null>;
  /** The primary's next re-sync must publish a floor (a block guard was set outside the plan). */
  markDegraded(): void;
  requestPromotion(): void;
  stopForHandover(): Promise<Position | null>;
  release(): void;
  requestRejoin(clone: boolean): void;
}

const FlagsSchema = z.strictObject({ paused: z.boolean(), durability: z.enum(["quorum", "strict", "async"]).optional() });

export class Agent implements ClusterContext, ActionHost {
  readonly nodeId: string;
  readonly historyLog: History;
  private readonly actions: ActionRunner;
  private loop: LoopControl | null = null;
  private detacher: { detachForVote(term: number): Promise<Position | null> } | null = null;
  private pausedFlag: boolean;
  /** Cluster-wide durability mode: the config's, until `pgherd config set durability=` changed it. */
  private durability: "quorum" | "strict" | "async";
  private readonly flagsFile: string;
  private expectingHandoverFrom: string | null = null;
  private handoverWaiter: ((pos: Position | null) => void) | null = null;
  private lastLeader: string | null = null;
  private actionSeq = 0;
  private readonly actionWaiters = new Map<number, (r: ActionResult) => void>();
  private readonly secretStore: SecretsStore;
  private readonly reports = new Map<string, { report: PgReport | null; role: "database" | "witness"; at: number; nofailover: boolean }>();
  private ownReport: PgReport | null = null;
  /** Monotonic counters for /metrics. */
  readonly counters = { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0, fences: 0, loopMs: 0, loops: 0 };
  private lastSecretsSent = 0;
  private viewReqSeq = 0;
  private readonly viewWaiters = new Map<number, (v: ClusterView) => void>();
  private readonly store: ElectionStore;
  private readonly election: Election;
  private readonly mesh: Mesh;
  private readonly beacon: Beacon;
  private readonly peers: PeerTable;
  private wakeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Vote requests being held while this standby stops streaming (detachForVote), and until when at most. */
  private votesDetaching = 0;
  private detachingUntil = 0;
  private held: Event[] = [];
  private housekeeping: ReturnType<typeof setInterval> | undefined;
  private witnessTimer: ReturnType<typeof setInterval> | undefined;
  private leading: Ready["leading"] = null;
  private bootstrapNote = "";
  /** The last failed election round and who refused why (shown while there is no leader). */
  private electionNote = "";
  private stopped = false;
  private position: Position = ZERO_POSITION;
  readonly startedAt = Date.now();
  private readonly startedMono = performance.now();

  constructor(private readonly cfg: Config, private readonly log: Logger, private readonly hooks: LeadershipHooks = {}) {
    this.nodeId = loadOrCreateNodeId(cfg.state_dir);
    this.store = new ElectionStore(cfg.state_dir);
    this.secretStore = new SecretsStore(cfg.state_dir);
    this.historyLog = new History(cfg.state_dir);
    this.flagsFile = join(cfg.state_dir, "flags.json");
    const flags = readJsonSync(this.flagsFile, FlagsSchema);
    this.pausedFlag = flags?.paused ?? false;
    this.durability = flags?.durability ?? cfg.durability;
    this.actions = new ActionRunner(this, log.withTag("action"));
    const e = cfg.election;
    this.election = new Election(
      {
        id: this.nodeId, canLead: cfg.role === "database" && !cfg.tags.nofailover && cfg.priority > 0,
        jitterShare: 0.25 + 0.75 * (1 - cfg.priority / 1000), heartbeatMs: e.heartbeat_ms, leaseMs: e.lease_ms,
        timeoutMs: e.timeout_ms, jitterMs: e.jitter_ms, fenceMs: e.fence_ms, random: Math.random,
      },
      this.store.get(),
      now(),
    );
    this.peers = new PeerTable(cfg.discovery.max_age_ms);
    const listen = parseHostPort(cfg.mesh.listen);
    if (typeof listen === "string") throw new Error(`mesh.listen: ${listen}`);
    this.mesh = new Mesh({
      cluster: cfg.cluster, secret: cfg.secret, nodeId: this.nodeId, nodeName: cfg.node_name,
      listenHost: listen.host, listenPort: listen.port, advertise: cfg.mesh.advertise || undefined,
      maxFrameBytes: cfg.mesh.max_frame_bytes, pingMs: cfg.mesh.ping_ms, deadMs: cfg.mesh.dead_ms,
      handshakeMs: cfg.mesh.handshake_ms, maxBufferedBytes: cfg.mesh.max_buffered_bytes,
      backoffMinMs: 100, backoffMaxMs: 5000, messageSchema: AgentMsgSchema, log: log.withTag("mesh"),
      onMessage: (peer, msg) => this.onMessage(peer, msg as AgentMsg),
      onPeerUp: (p) => {
        this.peers.connected(p.id, true, p.name);
        const h = this.historyLog.list();
        if (h.length > 0) this.mesh.send(p.id, { t: "history", entries: h });
        log.info(`peer ${p.name} (${p.id}) connected from ${p.remoteAddress}`);
      },
      onPeerDown: (id, reason) => {
        this.peers.connected(id, false);
        log.info(`peer ${this.peers.name(id)} (${id}) disconnected: ${reason}`);
      },
    });
    const broadcast = cfg.discovery.broadcast.flatMap((b) => (b === "auto" ? defaultBroadcastAddresses() : [b]));
    this.beacon = new Beacon({
      cluster: cfg.cluster, secret: cfg.secret, nodeId: this.nodeId, nodeName: cfg.node_name, role: cfg.role,
      port: cfg.discovery.port, broadcast, peers: [...cfg.discovery.peers],
      meshAddr: () => this.advertisedMesh(), intervalMs: cfg.discovery.interval_ms, maxAgeMs: cfg.discovery.max_age_ms,
      extra: () => this.beaconExtra(), log: log.withTag("beacon"),
      onAnnouncement: (a, from) => this.onAnnouncement(a, from),
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
    let expected = performance.now() + HOUSEKEEPING_MS;
    this.housekeeping = setInterval(() => this.safe(() => {
      // A stalled event loop delays heartbeats and lease renewals: say so, it explains step-downs.
      const late = performance.now() - expected;
      if (late > 250) this.log.warn(`event loop stalled for ${Math.round(late)} ms`);
      expected = performance.now() + HOUSEKEEPING_MS;
      this.tidy();
    }), HOUSEKEEPING_MS);
    this.feed({ type: "tick", now: now() });
  }

  /** A witness runs no PostgreSQL; it still tells its peers it is alive. */
  startWitnessReports(): void {
    this.witnessTimer = setInterval(() => this.safe(() => {
      for (const id of this.mesh.connected()) this.mesh.send(id, { t: "state", role: this.cfg.role, pg: null });
    }), this.cfg.postgres.loop_ms);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.wakeTimer);
    clearInterval(this.housekeeping);
    clearInterval(this.witnessTimer);
    await Promise.allSettled([this.beacon.stop(), this.mesh.stop()]);
  }

  /** Report a new local data position (PostgreSQL, from the next issue). */
  setPosition(p: Position): void {
    this.position = p;
    this.feed({ type: "position", now: now(), position: p });
  }

  /** Hand leadership over (switchover) or just give it up. */
  resign(reason: string, transferTo?: string): void {
    this.feed({ type: "resign", now: now(), reason, transferTo });
  }

  status() {
    const t = now();
    const s = this.election.status(t);
    const names = (ids: readonly string[] | undefined) => (ids ?? []).map((id) => ({ id, name: id === this.nodeId ? this.cfg.node_name : this.peers.name(id) }));
    return {
      cluster: this.cfg.cluster,
      node: { id: this.nodeId, name: this.cfg.node_name, role: this.cfg.role, mesh: this.advertisedMesh() },
      election: {
        role: s.role, term: s.term, leader: s.leader, leaderName: s.leader ? (s.leader === this.nodeId ? this.cfg.node_name : this.peers.name(s.leader)) : null,
        votedFor: s.votedFor, leading: this.leading !== null,
        leaseRemainingMs: this.leading ? Math.max(0, Math.round(this.leading.until - t)) : 0,
        voters: names(s.membership?.voters), membershipVersion: s.membership ? `${s.membership.term}.${s.membership.index}` : null,
        position: this.position,
      },
      bootstrap: s.membership ? null : this.bootstrapNote,
      postgres: this.ownReport
        ? { ...this.ownReport, lagBytes: this.ownLagBytes(), syncState: this.leaderPg()?.report.replication.find((r) => r.name === slotFor(this.nodeId))?.syncState ?? null, slots: this.ownReport.slots.map((name) => ({ name, retainedBytes: this.ownReport?.slotBytes?.[name] ?? null })) }
        : null,
      tags: this.cfg.tags,
      paused: this.pausedFlag,
      durability: this.durabilityLine(),
      counters: { ...this.counters },
      peers: this.peers.list(),
      rejects: { beacon: this.beacon.rejects(), mesh: this.mesh.rejects() },
      uptimeMs: Date.now() - this.startedAt,
    };
  }

  // ------------------------------------------------------------------ the loop

  private feed(ev: Event): void {
    if (this.stopped) return;
    // About to grant a vote (detaching first): what arrives meanwhile waits behind it, in order. A
    // tick or a pre-vote answer fed now could start our own campaign for that same term and refuse
    // the candidate we are about to vote for: a split vote. Bounded, so a hung detach cannot mute us.
    if (this.votesDetaching > 0 && !this.leading && now() < this.detachingUntil) {
      this.held.push(ev);
      return;
    }
    this.drainHeld();
    this.apply(this.election.step(ev));
  }

  /** The vote itself, then what was held behind it (with today's clock: time never runs backwards). */
  private feedVote(...evs: Event[]): void {
    for (const ev of evs) if (!this.stopped) this.apply(this.election.step(ev));
    if (this.votesDetaching === 0) this.drainHeld();
  }

  private drainHeld(): void {
    const q = this.held;
    this.held = [];
    for (const e of q) if (!this.stopped) this.apply(this.election.step({ ...e, now: now() }));
  }

  private apply(r: Ready): void {
    if (r.persist) {
      try {
        this.store.saveElection(r.persist);
      } catch (e) {
        // Never send a vote or a term we could not make durable: stop, let systemd restart us.
        this.log.error(`cannot persist election state to ${this.store.file}: ${(e as Error).message}; stopping the agent`);
        this.stopped = true;
        void Promise.allSettled([this.beacon.stop(), this.mesh.stop()]).then(() => process.exit(1));
        return;
      }
    }
    for (const n of r.notices) {
      const line = `${n.kind}: ${n.detail}`;
      if (n.kind === "prevote-failed") {
        const named = n.detail.replace(/\b[0-9a-f]{16}\b/g, (id) => this.nameOf(id));
        if (named !== this.electionNote && /refused by/.test(named)) this.log.warn(`no leader: ${named}`);
        this.electionNote = named;
      }
      if (n.kind === "stepped-down" || n.kind === "proposal-rejected") this.log.warn(line);
      else if (n.kind === "vote-granted" || n.kind === "vote-refused" || n.kind === "campaign" || n.kind === "prevote-failed") this.log.debug(line);
      else this.log.info(line);
    }
    const was = this.leading;
    this.leading = r.leading;
    for (const n of r.notices) if (n.kind === "leader-changed" || n.kind === "became-leader") this.counters.leaderChanges++;
    const leaderNow = this.election.status(now()).leader;
    if (leaderNow !== this.lastLeader || (!!r.leading !== !!this.leading)) {
      this.lastLeader = leaderNow;
      queueMicrotask(() => this.loop?.kick());
    }
    if (was && !r.leading) {
      this.counters.leasesLost++;
      this.log.warn(`fenced: no longer leading term ${was.term}; writes must stop`);
      this.hooks.onFence?.("lost leadership");
    } else if (!was && r.leading) {
      this.counters.leadershipsWon++;
      this.log.info(`leading term ${r.leading.term} with a valid lease`);
      this.hooks.onLead?.(r.leading.term, r.leading.until);
    } else if (r.leading) this.hooks.onLead?.(r.leading.term, r.leading.until);
    for (const s of r.send) this.mesh.send(s.to, s.msg);
    clearTimeout(this.wakeTimer);
    if (Number.isFinite(r.wakeAt)) {
      this.wakeTimer = setTimeout(() => this.safe(() => this.feed({ type: "tick", now: now() })), Math.max(0, r.wakeAt - now()));
    }
  }

  private onMessage(peer: string, msg: AgentMsg): void {
    this.safe(() => {
      switch (msg.t) {
        case "state":
          this.reports.set(peer, { report: msg.pg, role: msg.role, at: now(), nofailover: msg.nofailover ?? false });
          if (msg.paused !== undefined && this.election.status(now()).leader === peer && msg.paused !== this.pausedFlag) {
            this.log.warn(msg.paused ? "the leader paused the cluster: no automatic actions" : "the leader resumed the cluster");
            this.savePaused(msg.paused);
          }
          if (msg.durability !== undefined && this.election.status(now()).leader === peer && msg.durability !== this.durability) {
            this.log.warn(`durability is now ${msg.durability} (set on the leader)`);
            this.saveDurability(msg.durability);
          }
          return;
        case "secrets": {
          const leader = this.election.status(now()).leader;
          if (leader !== peer) return; // only the current leader speaks for the cluster's identity
          if (this.secretStore.set({ systemId: msg.systemId, replPassword: msg.replPassword, monitorPassword: msg.monitorPassword })) {
            this.log.info(`received the cluster's credentials from the leader ${this.peers.name(peer)} (system identifier ${msg.systemId ?? "not yet created"})`);
          }
          return;
        }
        case "view-req":
          this.mesh.send(peer, { t: "view", id: msg.id, view: this.localView() });
          return;
        case "view":
          this.viewWaiters.get(msg.id)?.(msg.view);
          this.viewWaiters.delete(msg.id);
          return;
        case "action":
          void this.actions.runAsLeader(msg.req).then((result) =>
            this.mesh.send(peer, { t: "action-resp", id: msg.id, result: { status: result.status, ok: result.ok, message: result.message.slice(0, 2000) } }));
          return;
        case "action-resp":
          this.actionWaiters.get(msg.id)?.(msg.result);
          this.actionWaiters.delete(msg.id);
          return;
        case "history":
          this.historyLog.merge(msg.entries);
          return;
        case "campaign-now":
          this.log.warn(`asked to stand for election by ${this.peers.name(peer)}: ${msg.reason}${msg.force ? " (accepting data loss)" : ""}`);
          this.loop?.requestPromotion();
          this.feed({ type: "campaign", now: now(), force: msg.force === true });
          return;
        case "handover":
          this.expectingHandoverFrom = msg.from;
          this.loop?.requestPromotion(); // an operator's switchover: promote even while paused
          // Vote with the old primary's final position, or the other voters refuse us as behind them.
          void (this.loop ? this.loop.catchUp(msg.final ?? null, 3000) : Promise.resolve(null)).then((pos) => this.safe(() => {
            if (pos) this.setPosition(pos);
            this.mesh.send(peer, { t: "handover-ready", pos });
          }));
          return;
        case "handover-ready":
          this.handoverWaiter?.(msg.pos);
          this.handoverWaiter = null;
          return;
        default: {
          const em = ElectionMsgSchema.parse(msg);
          const st = this.election.status(now());
          if (em.t === "vote" && em.term > st.term && this.detacher && this.election.wouldGrant(now(), peer, em)) {
            // Stop streaming from the old primary before promising anything to a newer term.
            this.votesDetaching++;
            this.detachingUntil = now() + 3000;
            const done = () => {
              this.votesDetaching--;
            };
            void this.detacher.detachForVote(em.term).then(
              (pos) => this.safe(() => {
                done();
                const vote: Event = { type: "recv", now: now(), from: peer, msg: em };
                if (pos) this.position = pos;
                this.feedVote(...(pos ? [{ type: "position", now: now(), position: pos } as Event, vote] : [vote]));
              }),
              (e) => this.safe(() => {
                done();
                this.log.warn(`could not stop streaming before voting: ${(e as Error).message}; voting anyway with the last position`);
                this.feedVote({ type: "recv", now: now(), from: peer, msg: em });
              }),
            );
            return;
          }
          this.feed({ type: "recv", now: now(), from: peer, msg: em });
        }
      }
    });
  }

  history(): HistoryEntry[] {
    return this.historyLog.list();
  }

  attachLoop(loop: LoopControl & { detachForVote(term: number): Promise<Position | null> }): void {
    this.loop = loop;
    this.detacher = loop;
  }

  // ------------------------------------------------------------------ actions (ActionHost)

  get nodeName(): string {
    return this.cfg.node_name;
  }

  get maxLagBytes(): number {
    return this.cfg.failover.max_lag_bytes;
  }

  get pg() {
    return this.loop;
  }

  action(req: ActionRequest): Promise<ActionResult> {
    return this.actions.run(req);
  }

  electionState() {
    const s = this.election.status(now());
    return { role: s.role, term: s.term, leader: s.leader, leading: this.leading !== null };
  }

  paused(): boolean {
    return this.pausedFlag;
  }

  setPaused(p: boolean): void {
    this.savePaused(p);
    if (this.ownReport) this.publish(this.ownReport, this.position);
  }

  private savePaused(p: boolean): void {
    writeJsonDurableSync(this.flagsFile, { paused: p, durability: this.durability }, 0o600);
    this.pausedFlag = p;
  }

  private saveDurability(d: "quorum" | "strict" | "async"): void {
    writeJsonDurableSync(this.flagsFile, { paused: this.pausedFlag, durability: d }, 0o600);
    this.durability = d;
  }

  setDurability(d: "quorum" | "strict" | "async"): void {
    this.saveDurability(d);
    if (this.ownReport) this.publish(this.ownReport, this.position);
    this.loop?.kick();
  }

  durabilityMode(): "quorum" | "strict" | "async" {
    return this.durability;
  }

  votersCount(): number {
    // During a membership change elections may still use the previous set: plan for the larger one
    // (k = voters − majority never shrinks as voters grow).
    const s = this.election.status(now());
    return Math.max(s.membership?.voters.length ?? 1, s.prevVoters?.length ?? 0);
  }

  guardState() {
    const s = this.election.status(now());
    return { guard: s.guard, committed: s.guardCommitted };
  }

  setGuard(block: boolean, floor: Position | null): void {
    this.feed({ type: "guard", now: now(), block, floor });
  }

  candidates(): Candidate[] {
    const voters = new Set(this.election.status(now()).membership?.voters ?? []);
    const ids = new Set([this.nodeId, ...voters, ...this.peers.list().map((p) => p.id)]);
    return [...ids].map((id) => {
      const self = id === this.nodeId;
      const role = self ? this.cfg.role : (this.reports.get(id)?.role ?? this.peers.list().find((p) => p.id === id)?.role ?? "database");
      return {
        id, name: this.nameOf(id), voter: voters.has(id), witness: role === "witness",
        nofailover: self ? this.cfg.tags.nofailover : (this.reports.get(id)?.nofailover ?? false),
        report: self ? this.ownReport : this.freshReport(id),
      };
    });
  }

  myReport(): PgReport | null {
    return this.ownReport;
  }

  reportOf(id: string): PgReport | null {
    return id === this.nodeId ? this.ownReport : this.freshReport(id);
  }

  nameOf(id: string): string {
    return id === this.nodeId ? this.cfg.node_name : this.peers.name(id);
  }

  async forwardToLeader(req: ActionRequest, timeoutMs: number): Promise<ActionResult> {
    const leader = this.election.status(now()).leader;
    if (!leader) return { status: 503, ok: false, message: "no leader" };
    const id = ++this.actionSeq;
    const got = new Promise<ActionResult>((resolve) => {
      const t = setTimeout(() => {
        this.actionWaiters.delete(id);
        resolve({ status: 504, ok: false, message: `the leader ${this.peers.name(leader)} did not answer within ${timeoutMs} ms` });
      }, timeoutMs);
      this.actionWaiters.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
    if (!this.mesh.send(leader, { t: "action", id, req })) {
      this.actionWaiters.delete(id);
      return { status: 503, ok: false, message: `the leader ${this.peers.name(leader)} is not connected` };
    }
    return got;
  }

  /** Tell the target the final position and wait until it holds it (or the timeout). */
  async handover(to: string, final: Position | null, timeoutMs: number): Promise<boolean> {
    const ready = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        this.handoverWaiter = null;
        resolve(false);
      }, timeoutMs);
      this.handoverWaiter = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
    if (!this.mesh.send(to, { t: "handover", from: this.nodeId, ...(final ? { final } : {}) })) return false;
    return ready;
  }

  async publishFloor(pos: Position | null, timeoutMs: number): Promise<boolean> {
    this.feed({ type: "guard", now: now(), block: false, floor: pos });
    const seq = this.election.status(now()).guard?.seq ?? 0;
    const end = now() + timeoutMs;
    while (now() < end) {
      const st = this.election.status(now());
      if (st.role !== "leader") return false;
      if (st.guardCommitted >= seq) return true;
      await Bun.sleep(10);
    }
    return false;
  }

  isConnected(id: string): boolean {
    return this.mesh.connected().includes(id);
  }

  sendCampaign(to: string, reason: string, force = false): boolean {
    return this.mesh.send(to, { t: "campaign-now", reason, ...(force ? { force: true } : {}) });
  }

  campaignNow(force = false): void {
    this.loop?.requestPromotion();
    this.feed({ type: "campaign", now: now(), force });
  }

  record(e: Omit<HistoryEntry, "id" | "at">): void {
    const entry = this.historyLog.add(e);
    this.log.info(`history: ${entry.kind}: ${entry.reason}`);
    for (const id of this.mesh.connected()) this.mesh.send(id, { t: "history", entries: [entry] });
  }

  /** Called by the PostgreSQL loop when this node became the primary; says why. */
  becamePrimary(how: "bootstrap" | "adopt" | "promote", timeline: number | null, lsn: string | null): void {
    const s = this.election.status(now());
    const prev = this.historyLog.list().filter((h) => h.newPrimary).at(-1)?.newPrimary ?? null;
    let kind: HistoryEntry["kind"] = how;
    let reason = how === "bootstrap" ? "new cluster: initdb on the first leader" : how === "adopt" ? "existing server adopted (bootstrap.from_existing)" : "";
    if (how === "promote") {
      if (this.expectingHandoverFrom) {
        kind = "switchover";
        reason = `planned switchover from ${this.peers.name(this.expectingHandoverFrom)}`;
      } else {
        kind = "failover";
        reason = `elected leader of term ${s.term} after the previous primary${prev ? ` (${prev})` : ""} lost its lease`;
      }
      this.expectingHandoverFrom = null;
    }
    this.record({ term: s.term, kind, node: this.cfg.node_name, reason, oldPrimary: how === "promote" ? prev : null, newPrimary: this.cfg.node_name, timeline, lsn });
  }

  // ------------------------------------------------------------------ ClusterContext (for the PostgreSQL loop)

  leadership() {
    const s = this.election.status(now());
    return {
      term: s.term,
      leading: this.leading !== null,
      acquiringLease: s.role === "leader" && this.leading === null,
      leaderId: s.leader,
      member: s.membership?.voters.includes(this.nodeId) ?? false,
    };
  }

  leaderPg() {
    const s = this.election.status(now());
    if (!s.leader || s.leader === this.nodeId) return null;
    const r = this.freshReport(s.leader);
    const host = this.peerHost(s.leader);
    if (!r || !host) return null;
    return { id: s.leader, addr: `${host.includes(":") ? `[${host}]` : host}:${r.port}`, report: r };
  }

  reachableStandbys(): number {
    return this.standbyMembers().filter((id) => this.downForMs(id) === 0).length;
  }

  downForMs(id: string): number {
    const r = this.reports.get(id);
    if (!r) return now() - this.startedMono;
    const age = now() - r.at;
    return age < Math.max(5000, 5 * this.cfg.postgres.loop_ms) ? 0 : age;
  }

  standbyMembers(): string[] {
    const voters = this.election.status(now()).membership?.voters ?? [];
    // No slot for a witness, nor for a member whose data we would refuse (it would hold WAL forever).
    return voters.filter((v) => v !== this.nodeId && this.peers.list().find((p) => p.id === v)?.role !== "witness" && this.reports.get(v)?.report?.data !== "foreign");
  }

  peerAddresses(): string[] {
    const out = new Set<string>();
    for (const p of this.peers.list()) if (isIP(p.address)) out.add(p.address);
    const self = this.advertisedMesh();
    const host = self.slice(0, self.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    if (isIP(host) && host !== "0.0.0.0" && host !== "::") out.add(host);
    return [...out].sort();
  }

  nobodyHasData(): boolean {
    const voters = this.election.status(now()).membership?.voters ?? [];
    return voters.every((v) => {
      if (v === this.nodeId || this.reports.get(v)?.role === "witness") return true;
      const r = this.freshReport(v);
      return r !== null && r.data === "empty" && r.action !== "initdb" && r.action !== "clone";
    });
  }

  othersHaveData(): boolean {
    // Any report, fresh or not: a member that was creating data when we lost sight of it may have some.
    return [...this.reports.entries()].some(([id, r]) => id !== this.nodeId && r.report !== null &&
      (r.report.data === "present" || r.report.action === "initdb" || r.report.action === "clone"));
  }

  loopDone(ms: number): void {
    this.counters.loopMs = Math.round(ms);
    this.counters.loops++;
  }

  secrets(): ClusterSecrets | undefined {
    return this.secretStore.get();
  }

  saveSecrets(s: ClusterSecrets): void {
    if (this.secretStore.set(s)) this.shareSecrets(true);
  }

  publish(report: PgReport, position: Position): void {
    this.ownReport = report;
    if (comparePosition(position, this.position) !== 0) this.setPosition(position);
    const paused = this.leading ? this.pausedFlag : undefined;
    const durability = this.leading ? this.durability : undefined;
    for (const id of this.mesh.connected()) this.mesh.send(id, { t: "state", role: this.cfg.role, pg: report, paused, durability, nofailover: this.cfg.tags.nofailover });
    this.shareSecrets(false);
  }

  private shareSecrets(force: boolean): void {
    const s = this.secretStore.get();
    if (!s || !this.leading) return;
    if (!force && now() - this.lastSecretsSent < 5000) return;
    this.lastSecretsSent = now();
    for (const id of this.mesh.connected()) this.mesh.send(id, { t: "secrets", ...s });
  }

  /** What the cluster currently guarantees, as the primary computed it. */
  durabilityLine(): string {
    const l = this.leaderPg();
    const r = this.election.status(now()).leader === this.nodeId ? this.ownReport : l?.report;
    if (!r?.guarantee) return this.durability;
    return r.guarantee.startsWith(`${this.durability}:`) ? r.guarantee : `${this.durability}: ${r.guarantee}`;
  }

  /** Bytes this standby's replay is behind the leader's primary (null when unknown or not a standby). */
  private ownLagBytes(): number | null {
    const me = this.ownReport;
    const l = this.leaderPg();
    if (!me || !me.inRecovery || !me.replayLsn || !l || l.report.inRecovery !== false) return null;
    const d = lsnToBigInt(l.report.position.lsn) - lsnToBigInt(me.replayLsn);
    return d > 0n ? Number(d) : 0;
  }

  private freshReport(id: string): PgReport | null {
    const r = this.reports.get(id);
    if (!r || now() - r.at > Math.max(5000, 5 * this.cfg.postgres.loop_ms)) return null;
    return r.report;
  }

  private peerHost(id: string): string | null {
    const p = this.peers.list().find((x) => x.id === id);
    if (!p) return null;
    if (p.address) return p.address;
    const i = p.mesh.lastIndexOf(":");
    return i > 0 ? p.mesh.slice(0, i).replace(/^\[|\]$/g, "") : null;
  }

  // ------------------------------------------------------------------ cluster view

  /** This agent's own composition of the cluster table. */
  localView(): ClusterView {
    const s = this.election.status(now());
    const ids = new Set<string>([this.nodeId, ...(s.membership?.voters ?? []), ...this.peers.list().map((p) => p.id)]);
    const connected = new Set(this.mesh.connected());
    const members: MemberInput[] = [...ids].map((id) => {
      const self = id === this.nodeId;
      const peer = this.peers.list().find((p) => p.id === id);
      const r = self ? this.ownReport : this.freshReport(id);
      return {
        id, name: self ? this.cfg.node_name : (peer?.name ?? id),
        role: self ? this.cfg.role : (this.reports.get(id)?.role ?? peer?.role ?? "database"),
        host: self ? this.peerAddresses().find(() => true) ?? "" : (this.peerHost(id) ?? ""),
        voter: s.membership?.voters.includes(id) ?? false,
        reachable: self || (connected.has(id) && this.reports.has(id) && now() - this.reports.get(id)!.at < Math.max(5000, 5 * this.cfg.postgres.loop_ms)),
        report: r,
      };
    });
    const selfHost = this.advertisedMesh();
    const m = members.find((x) => x.id === this.nodeId);
    if (m) m.host = selfHost.slice(0, selfHost.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    return composeView({ paused: this.pausedFlag, note: this.electionNote, durability: this.durabilityLine(), cluster: this.cfg.cluster, term: s.term, leader: s.leader, members, slotOf: slotFor });
  }

  /** The leader's view when it answers within the deadline, else ours (marked). */
  async clusterView(timeoutMs = 2000): Promise<{ source: "leader" | "local"; view: ClusterView }> {
    const s = this.election.status(now());
    if (!s.leader || s.leader === this.nodeId) return { source: s.leader === this.nodeId ? "leader" : "local", view: this.localView() };
    const id = ++this.viewReqSeq;
    const got = new Promise<ClusterView | null>((resolve) => {
      const t = setTimeout(() => {
        this.viewWaiters.delete(id);
        resolve(null);
      }, timeoutMs);
      this.viewWaiters.set(id, (v) => {
        clearTimeout(t);
        resolve(v);
      });
    });
    if (!this.mesh.send(s.leader, { t: "view-req", id })) {
      this.viewWaiters.delete(id);
      return { source: "local", view: this.localView() };
    }
    const v = await got;
    return v ? { source: "leader", view: v } : { source: "local", view: this.localView() };
  }

  /** Never let one bad event take the agent down; a persist failure is the exception (see apply). */
  private safe(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.log.error(`internal error: ${(e as Error).stack ?? e}`);
    }
  }

  // ------------------------------------------------------------------ discovery and membership

  private advertisedMesh(): string {
    if (this.cfg.mesh.advertise) return this.cfg.mesh.advertise;
    const a = this.mesh.address();
    return formatHostPort(a);
  }

  private beaconExtra(): Record<string, unknown> {
    const st = this.store.get();
    return {
      vote: st.bootstrapVote,
      member: st.membership !== null,
    };
  }

  private onAnnouncement(a: Announcement, from: { address: string }): void {
    const hp = parseHostPort(a.mesh);
    if (typeof hp === "string") {
      this.log.warn(`beacon from ${a.name} (${from.address}) announces a bad mesh address ${JSON.stringify(a.mesh)}: ${hp}`);
      return;
    }
    const host = hp.host === "0.0.0.0" || hp.host === "::" || hp.host === "" ? from.address : hp.host;
    const mesh = formatHostPort({ host, port: hp.port });
    const vote = Array.isArray(a.extra.vote) && a.extra.vote.every((v) => typeof v === "string") ? (a.extra.vote as string[]) : null;
    const isNew = this.peers.seen({ id: a.nodeId, name: a.name, role: a.role, mesh, address: from.address, vote, member: a.extra.member === true });
    if (isNew) this.log.info(`discovered ${a.name} (${a.nodeId}, ${a.role}) at ${mesh}`);
    this.mesh.dial(mesh, a.nodeId);
  }

  private tidy(): void {
    const t = now();
    for (const gone of this.peers.expire()) {
      this.log.info(`peer ${gone.name} (${gone.id}) not heard for ${this.cfg.discovery.max_age_ms} ms`);
      this.mesh.forget(gone.mesh);
    }
    const st = this.election.status(t);
    if (!st.membership) return this.tryBootstrap();
    // The leader adds authenticated nodes it discovered, one at a time.
    if (st.role === "leader" && st.membershipCommitted && this.leading) {
      const voters = st.membership.voters;
      const joiner = this.peers.list().find((p) => p.connected && !voters.includes(p.id));
      if (joiner) {
        // A new voter changes k (synchronous standbys needed): suspend automatic failover (a guard
        // stored by a majority) before the change; the primary's next re-sync lifts it with a floor.
        const g = st.guard;
        if (this.durability !== "async" && !(g?.block && g.holder === this.nodeId && st.guardCommitted >= g.seq)) {
          if (!g?.block || g.holder !== this.nodeId) {
            this.log.info(`about to add ${joiner.name}: suspending automatic failover until the primary is synchronous with the new voter set`);
            this.loop?.markDegraded();
            this.feed({ type: "guard", now: t, block: true, floor: null });
          }
          return;
        }
        this.log.info(`adding ${joiner.name} (${joiner.id}, ${joiner.role}) as a voter`);
        this.feed({ type: "propose", now: t, op: "add", node: joiner.id });
      }
    }
  }

  private tryBootstrap(): void {
    const st = this.store.get();
    const views: PeerView[] = this.peers.list().map((p) => ({ id: p.id, role: p.role, vote: p.vote, member: p.member }));
    const d = decideBootstrap({
      self: this.nodeId, expect: this.cfg.bootstrap_expect, state: { vote: st.bootstrapVote }, peers: views,
      stableForMs: this.peers.stableForMs(), settleMs: 2 * this.cfg.discovery.interval_ms,
    });
    if (d.kind === "wait") {
      if (d.reason !== this.bootstrapNote) this.log.info(`bootstrap: ${d.reason}`);
      this.bootstrapNote = d.reason;
      return;
    }
    if (d.kind === "vote") {
      this.store.saveBootstrapVote(d.voters);
      this.log.info(`bootstrap: voting for the first voters ${d.voters.map((v) => (v === this.nodeId ? this.cfg.node_name : this.peers.name(v))).join(", ")}`);
      this.beacon.sendNow();
      return;
    }
    this.log.info(`bootstrap: membership formed: ${d.voters.map((v) => (v === this.nodeId ? this.cfg.node_name : this.peers.name(v))).join(", ")}`);
    this.bootstrapNote = "formed";
    this.feed({ type: "bootstrap", now: now(), membership: { term: 0, index: 1, voters: d.voters } });
    this.beacon.sendNow();
  }
}

/** Monotonic milliseconds: leases must never follow wall-clock jumps. */
function now(): number {
  return performance.now();
}
