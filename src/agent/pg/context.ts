// What the PostgreSQL loop needs from the agent (ClusterContext) and what it offers it (LoopControl).
import type { PromoteCheck } from "../../core/ha.ts";
import type { Position } from "../../core/position.ts";
import type { PgReport } from "../../core/report.ts";
import type { Candidate } from "../../core/switchover.ts";
import type { ClusterSecrets } from "../../store/cluster-secrets.ts";
import type { Exclusion, SyncSet } from "../../core/sync-exclusion.ts";
import type { BackupInfo, BackupType } from "../../backup/backups.ts";

/** What the loop needs from the agent: cluster facts in, reports and requests out. */
export interface ClusterContext {
  readonly nodeId: string;
  leadership(): { term: number; leading: boolean; acquiringLease: boolean; leaderId: string | null; member: boolean };
  /** The leader's PostgreSQL address and its last report. */
  leaderPg(): { id: string; addr: string; report: PgReport } | null;
  /** Database voters other than this node (slots on the primary). */
  standbyMembers(): string[];
  /**
   * This round's synchronous set (core/cluster-facts.ts syncSet), computed once per call: `names`,
   * the standby members to name (the known promotable ones, filled with standbys that cannot lead,
   * once they can hold no cap, when fewer than k); `wanted`, the standbys that cannot lead the fill
   * wants (the record leaves them out); `pending`, those not nameable yet (no fresh echo of this
   * leader's state messages). Take it once and read its parts: two calls may differ (time passes).
   */
  syncSet(): SyncSet;
  /** Standby members not heard from since this agent started (core/cluster-facts.ts). */
  unheardStandbys(): string[];
  /** The epoch of a peer's latest announcement (absent from older versions). */
  announcedEpoch(id: string): number | undefined;
  /** Database standby members reporting now (they could re-point to a new primary). */
  reachableStandbys(): number;
  /** How long a member's slot has been idle: not heard from, or its server not running (core/cluster-facts.ts slotIdleForMs). */
  slotIdleForMs(id: string): number;
  /** Members whose existing slot is kept though none is made (core/cluster-facts.ts slotKeptMembers). */
  slotKeptMembers(): string[];
  /** IP addresses of authenticated peers (pg_hba), this node's own included when known. */
  peerAddresses(): string[];
  /** Every voter reported an empty data directory. */
  nobodyHasData(): boolean;
  /** Some other member has data or is creating it. */
  othersHaveData(): boolean;
  secrets(): ClusterSecrets | undefined;
  /** A scheduled backup where `pgherd backup` runs (the leader's choice of member, one at a time); absent: on this primary. */
  scheduledBackup?(type: BackupType): Promise<BackupInfo>;
  saveSecrets(s: ClusterSecrets): void;
  publish(report: PgReport, position: Position): void;
  /** Give up the lease; `transferTo`: the standby that should campaign at once. */
  resign(reason: string, transferTo?: string): void;
  /** Members as handover candidates (connected ones with their reports). */
  candidates(): Candidate[];
  loopDone(ms: number): void;
  paused(): boolean;
  /** Election voters (witnesses included) and the durability mode in force. */
  votersCount(): number;
  durabilityMode(): "quorum" | "strict" | "async";
  /** Leader, before a promotion: settle whether "async" holds in this term (dynamic-config-leader.ts confirmAsync), within `timeoutMs`. */
  confirmDurability(timeoutMs: number): Promise<void>;
  /** The leader's current guard and the highest guard seq a majority stored. */
  guardState(): { guard: { seq: number; block: boolean; holder?: string | null; floor: Position | null; timeline?: number } | null; committed: number };
  setGuard(block: boolean, floor: Position | null): Promise<void>;
  /** Leader: reserve timeline `n` for a promotion (core/timelines.ts); true once a majority stored it. */
  reserveTimeline(n: number, timeoutMs: number): Promise<boolean>;
  /** A voter change waits for its failover guard (src/agent/membership.ts): that guard is not lifted meanwhile. */
  voterChangePending(): boolean;
  becamePrimary(how: "bootstrap" | "adopt" | "promote", timeline: number | null, lsn: string | null): void;
  /** [hooks] pre_promote (src/hooks/hooks.ts); absent: promote without asking. */
  readonly integrations?: { promoteCheck(term: number): PromoteCheck; checkPromote(term: number): Promise<void> };
  record(e: { term: number; kind: "fence" | "rejoin" | "restart"; node: string; reason: string; oldPrimary: null; newPrimary: null; timeline: number | null; lsn: string | null }): void;
}

export interface DetachResult {
  ok: boolean;
  position: Position | null;
  error?: string;
}

/** What the agent may ask of its PostgreSQL loop (absent on a witness). */
export interface LoopControl {
  /** Run a round now (leadership changed). */
  kick(): void;
  /** Switchover target: wait until this standby received `final`; its position then. */
  catchUp(final: Position | null, timeoutMs: number): Promise<Position | null>;
  /** The primary's next re-sync must publish a floor (a block guard was set outside the plan). */
  markDegraded(): void;
  requestPromotion(): void;
  /** The leader's primary came back (core/cluster-facts.ts leaderPrimaryBack): a standby retries its stream now. */
  primaryBack(): void;
  /** Switchover: stop this primary cleanly; rounds change nothing until release(). `beforeStopMs`: the clean stop begins within it or not at all. */
  stopForHandover(beforeStopMs?: number): Promise<Position | null>;
  /** The target did not confirm the final WAL, or the switchover stopped: the stopped server is a primary's data again (rewound before it follows). */
  handoverUnconfirmed(): void;
  release(): void;
  requestRejoin(clone: boolean): void;
  /** `pgherd restart` / `pgherd reload` on this node (src/agent/pg/restart-node.ts). */
  restartServer(): Promise<{ ok: boolean; message: string }>;
  reloadServer(configNote: string): Promise<{ ok: boolean; message: string }>;
  /** Leader, before a cluster-wide change: what PostgreSQL refuses in these parameters, or null. */
  refusedParameters(params: Readonly<Record<string, string | number | boolean>>): Promise<string | null>;
  /** Leader: the record of standbys left out of synchronous_standby_names, for its state message (null: none). */
  exclusion(term: number): Exclusion | null;
  /** Stop streaming before a vote in `term`; ok=false when it could not be confirmed within the bound. */
  detach(term: number): Promise<DetachResult>;
  start(): void;
  stop(): Promise<void>;
}

export function slotFor(nodeId: string): string {
  return `pgherd_${nodeId.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

/**
 * application_name of a clone's pg_basebackup. Never a name in synchronous_standby_names: with a
 * slot, pg_basebackup's WAL stream reports a flush position, so under the standby's own name the
 * primary would take it for a synchronous standby: commits acknowledged by a copy that is deleted
 * if the clone fails, and the durability plan counting a standby that does not run yet.
 */
export function cloneNameFor(nodeId: string): string {
  return `${slotFor(nodeId).slice(0, 57)}_clone`;
}
