// What the HTTP API reads from the agent, and the few facts the health checks derive from it.
import type { ClusterView } from "../core/cluster-view.ts";
import type { NodePostgres, NodeStatus } from "../core/node-status.ts";
import { lsnToBigInt } from "../core/position.ts";
import type { ClusterSummary } from "../consensus/clusters.ts";
import type { ActionRequest, ActionResult, HistoryEntry } from "./actions-contract.ts";

export type { NodeStatus } from "../core/node-status.ts";

export interface ApiSource {
  status(): NodeStatus;
  clusterView(): Promise<{ source: "leader" | "local"; view: ClusterView }>;
  /** Role changes, oldest first (absent: none known). */
  history?(): readonly HistoryEntry[] | Promise<readonly HistoryEntry[]>;
  /** pgherd_failovers_total: failovers known since the agent started, trimmed history entries included. */
  failovers?(): number;
  /** `/clusters`: every cluster the consensus store shows (absent: 501). */
  clusters?(): Promise<readonly ClusterSummary[]>;
  /** GET /config: the cluster-wide configuration this node stores and its conflicts with pgherd.toml (src/agent/dynamic-config.ts). */
  dynamicConfig?(): unknown;
  /** Operator actions (absent: every action answers 501). */
  action?(req: ActionRequest): Promise<ActionResult>;
}

/** This node's PostgreSQL as the health checks see it. */
export interface PgFacts {
  up: boolean;
  running: boolean;
  inRecovery: boolean | null;
  streaming: boolean;
  /** Replay position behind the leader's primary, in bytes (null: unknown). */
  lagBytes: number | null;
  /** Receive position behind the leader's primary, in bytes (null: unknown). */
  receiveLagBytes: number | null;
  /** A synchronous standby of the primary: sync_state sync or quorum in its pg_stat_replication. */
  sync: boolean;
  /** A quorum standby: sync_state quorum (synchronous_standby_names = ANY k (...)). */
  quorum: boolean;
  /** Why the server cannot do its work (stuck, disk full, cannot write; core/liveness.ts), else null. */
  cannotWork?: string | null;
}

export interface HealthFacts {
  /** Holds the leader lease right now. */
  leading: boolean;
  /** /readiness's limit without `lag`: failover.max_lag_bytes in force (absent: Patroni's default, 1 MiB). */
  maxLagBytes?: number;
  pg: PgFacts | null;
  tags: Readonly<Record<string, string | number | boolean>>;
}

export function healthFacts(s: NodeStatus): HealthFacts {
  const p = s.postgres;
  return { leading: s.election.leading, tags: s.tags, pg: p ? pgFacts(p) : null, ...(s.maxLagBytes !== undefined ? { maxLagBytes: s.maxLagBytes } : {}) };
}

/** Actions (core/ha.ts decisions) that stop this node's server while they run. */
const STOPPING_ACTIONS: ReadonlySet<string> = new Set(["clone", "rewind", "restart-standby"]);

/**
 * The report as the server is now: the round publishes its report before it acts, so while a clone,
 * a rewind or a standby's restart runs (minutes to hours) the server is stopped though the last
 * report said it answered. For /patroni and the metrics (review: they said running meanwhile).
 */
export function pgNow(p: NodePostgres): NodePostgres {
  return STOPPING_ACTIONS.has(p.action) ? { ...p, up: false, running: false, streaming: false } : p;
}

function pgFacts(p: NodePostgres): PgFacts {
  const lag = p.lagBytes;
  let receiveLag: number | null = null;
  if (lag !== null && p.replayLsn && p.receiveLsn) {
    // leader position = replay + lag; the receiver is at least as far as replay.
    receiveLag = Math.max(0, lag - Math.max(0, walBytes(p.receiveLsn) - walBytes(p.replayLsn)));
  }
  // The round publishes its report before it acts: while a clone, a rewind or a standby's restart
  // runs (minutes to hours), the server is stopped though the last report said it answered.
  const stopped = STOPPING_ACTIONS.has(p.action);
  return {
    up: p.up && !stopped, running: p.running && !stopped, inRecovery: p.inRecovery, streaming: p.streaming && !stopped,
    lagBytes: lag, receiveLagBytes: receiveLag,
    sync: p.syncState === "sync" || p.syncState === "quorum", quorum: p.syncState === "quorum",
    cannotWork: p.health && ["stuck", "disk-full", "cannot-write"].includes(p.health.state) ? `${p.health.state} since ${p.health.since ?? "?"}: ${p.health.reason}` : null,
  };
}

/** An LSN as a byte position (exact below 2^53, i.e. 8 PiB of WAL). */
export function walBytes(lsn: string): number {
  return Number(lsnToBigInt(lsn));
}
