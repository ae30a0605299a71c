// What the PostgreSQL loop (src/agent/pg/loop.ts) may see and do on this agent: the agent's side of
// ClusterContext (src/agent/pg/context.ts). It reads the election, the facts heard (pure:
// core/cluster-facts.ts), the flags and the durability in force; it takes the loop's reports (to
// the election as a voting position, to every peer in the agent's state message) and hands its
// requests (guard, timeline, resign) to the consensus backend. It owns this node's own report (the
// loop's last, with the backup this node takes) and the loop's round counters.
import { mustReportPosition, type Position } from "../core/position.ts";
import * as F from "../core/cluster-facts.ts";
import { majority } from "../core/quorum.ts";
import type { Config } from "../config/schema.ts";
import type { BackupDesk } from "../backup/backup-action.ts";
import type { BackupInfo, BackupType } from "../backup/backups.ts";
import type { Integrations } from "../integrations/index.ts";
import type { ClusterSecrets } from "../store/cluster-secrets.ts";
import { publishGuard, type Consensus } from "./election-driver.ts";
import type { DynamicConfig } from "./dynamic-config.ts";
import type { Durability, FlagsStore } from "./flags.ts";
import { primaryEntry, type History, type HistoryEntry } from "./history.ts";
import type { MembershipKeeper } from "./membership.ts";
import type { PgReport } from "./messages.ts";
import type { PeerTable } from "./peers.ts";
import type { ClusterContext } from "./pg/context.ts";
import type { SecretsSharing } from "./secrets-sharing.ts";
import type { SelfAddress } from "./self-address.ts";
import type { SyncCap } from "./sync-cap.ts";

export interface LoopContextDeps {
  cfg: Config;
  nodeId: string;
  consensus: Consensus;
  flags: FlagsStore;
  dynamic: DynamicConfig;
  membership: MembershipKeeper;
  syncCap: SyncCap;
  secrets: SecretsSharing;
  self: SelfAddress;
  peers: PeerTable;
  backups: BackupDesk;
  integrations: Integrations;
  history: History;
  /** Peers' last state messages (message-router.ts writes them). */
  reports: ReadonlyMap<string, F.PeerReport>;
  facts(): F.FactsSnapshot;
  /** This node's state message with `report` to every connected peer (agent.ts). */
  broadcast(report: PgReport): void;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
  nameOf(id: string): string;
  /** The old primary that handed over to this node, once (message-router.ts). */
  handedOverBy(): string | null;
}

export class AgentLoopContext implements ClusterContext {
  readonly nodeId: string;
  readonly integrations: Integrations;
  /** For /metrics: the last round's duration and the rounds run. */
  readonly counters = { loopMs: 0, loops: 0 };
  private own: PgReport | null = null;

  constructor(private readonly d: LoopContextDeps) {
    this.nodeId = d.nodeId;
    this.integrations = d.integrations;
  }

  /** The loop's last report, with the backup this node takes now (null: none yet, or a witness). */
  ownReport(): PgReport | null {
    return this.own;
  }

  leadership() {
    const s = this.d.consensus.status();
    const leading = this.d.consensus.lease() !== null;
    // etcd: until the first read this agent may still hold its previous run's key: leave PostgreSQL alone (as builtin's resumed term does).
    const unsettled = this.d.consensus.settled?.() === false;
    return { term: s.term, leading, acquiringLease: (s.role === "leader" && !leading) || unsettled, leaderId: s.leader, member: s.membership?.voters.includes(this.nodeId) ?? false };
  }

  leaderPg() { return F.leaderPg(this.d.facts()); }
  reachableStandbys(): number { return F.reachableStandbys(this.d.facts()); }
  slotIdleForMs(id: string): number { return F.slotIdleForMs(this.d.facts(), id); }
  slotKeptMembers(): string[] { return F.slotKeptMembers(this.d.facts()); }
  standbyMembers(): string[] { return F.standbyMembers(this.d.facts()); }
  syncSet() { const n = this.votersCount(); return this.d.syncCap.syncSet(this.d.facts(), n - majority(n)); }
  unheardStandbys(): string[] { return F.unheardStandbys(this.d.facts()); }
  announcedEpoch(id: string): number | undefined { return this.d.reports.get(id)?.epoch; }
  candidates() { return F.candidates(this.d.facts()); }
  nobodyHasData(): boolean { return F.nobodyHasData(this.d.facts()); }
  othersHaveData(): boolean { return F.othersHaveData(this.d.facts()); }

  /** IP addresses of authenticated peers (pg_hba), this node's own included when known. */
  peerAddresses(): string[] {
    return this.d.self.hba(this.d.peers.list().map((p) => p.address));
  }

  loopDone(ms: number): void {
    this.counters.loopMs = Math.round(ms);
    this.counters.loops++;
  }

  scheduledBackup(type: BackupType): Promise<BackupInfo> { return this.d.backups.scheduled(type); }
  secrets(): ClusterSecrets | undefined {
    return this.d.secrets.get();
  }

  saveSecrets(s: ClusterSecrets): void {
    this.d.secrets.save(s);
  }

  publish(pgReport: PgReport, position: Position): void {
    const report = this.withBackup(pgReport);
    this.own = report;
    this.d.integrations.observe(report);
    const voting = this.d.syncCap.position(position);
    if (mustReportPosition(this.d.consensus.status(), voting)) this.d.consensus.setPosition(voting);
    this.d.broadcast(report);
    this.d.secrets.share(false);
  }

  /** The backup this node takes began or ended: its report goes out now, with it or without it. */
  backupChanged(): void {
    if (!this.own) return;
    this.own = this.withBackup(this.own);
    this.d.broadcast(this.own);
  }

  /** The report with the backup this node takes now (BackupDesk.running), or without one. */
  private withBackup(r: PgReport): PgReport {
    const { backup: _, ...rest } = r;
    const backup = this.d.backups.running();
    return backup ? { ...rest, backup } : rest;
  }

  resign(reason: string, transferTo?: string): void {
    this.d.consensus.resign(reason, transferTo);
  }

  paused(): boolean { return this.d.flags.get().paused; }
  durabilityMode(): Durability { return this.d.dynamic.durabilityInForce(); }
  /** failover.max_lag_bytes in force: the cluster-wide document's, else pgherd.toml's (what a switchover checks with). */
  maxLagBytes(): number { return this.d.dynamic.maxLagBytes(); }
  confirmDurability(timeoutMs: number): Promise<void> { return this.d.dynamic.confirmAsync(timeoutMs); }

  votersCount(): number {
    // During a membership change elections may still use the previous set: plan for the larger one
    // (k = voters − majority never shrinks as voters grow).
    const s = this.d.consensus.status();
    return Math.max(s.membership?.voters.length ?? 1, s.prevVoters?.length ?? 0);
  }

  guardState() {
    const s = this.d.consensus.status();
    return { guard: s.guard, committed: s.guardCommitted };
  }

  setGuard(block: boolean, floor: Position | null): Promise<void> {
    return this.d.consensus.setGuard(block, floor).then(() => undefined);
  }

  reserveTimeline(n: number, timeoutMs: number): Promise<boolean> {
    const c = this.d.consensus;
    return publishGuard(c, () => c.reserveTimeline(n), timeoutMs, (st) => st.timelineCommitted >= n);
  }

  voterChangePending(): boolean {
    return this.d.membership.changePending();
  }

  record(e: Omit<HistoryEntry, "id" | "at">): void {
    this.d.record(e);
  }

  /** Called by the PostgreSQL loop when this node became the primary. */
  becamePrimary(how: "bootstrap" | "adopt" | "promote", timeline: number | null, lsn: string | null): void {
    const handedOver = this.d.handedOverBy();
    const from = how === "promote" ? handedOver : null;
    this.d.record(primaryEntry({
      how, term: this.d.consensus.status().term, node: this.d.cfg.node_name, timeline, lsn,
      previous: this.d.history.list().filter((h) => h.newPrimary).at(-1)?.newPrimary ?? null,
      handedOverBy: from ? this.d.nameOf(from) : null,
    }));
  }
}
