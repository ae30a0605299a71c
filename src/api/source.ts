// What the HTTP API reads from the agent, and the few facts the health checks derive from it.
import type { Agent } from "../agent/agent.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import type { ActionRequest, ActionResult } from "./actions-contract.ts";

export type NodeStatus = ReturnType<Agent["status"]>;

export interface ApiSource {
  status(): NodeStatus;
  clusterView(): Promise<{ source: "leader" | "local"; view: ClusterView }>;
  /** Role changes, oldest first (the agent adds it; absent means none known yet). */
  history?(): readonly unknown[] | Promise<readonly unknown[]>;
  /** Operator actions (the agent adds it; absent answers 501). */
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
  /** A synchronous standby of the primary (sync_state sync or quorum in the primary's pg_stat_replication). */
  sync: boolean;
}

export interface HealthFacts {
  /** Holds the leader lease right now. */
  leading: boolean;
  pg: PgFacts | null;
  tags: Readonly<Record<string, string | number | boolean>>;
}

export function healthFacts(s: NodeStatus): HealthFacts {
  const p = s.postgres;
  return { leading: s.election.leading, tags: s.tags, pg: p ? pgFacts(p) : null };
}

function pgFacts(p: NonNullable<NodeStatus["postgres"]>): PgFacts {
  const lag = p.lagBytes;
  let receiveLag: number | null = null;
  if (lag !== null && p.replayLsn && p.receiveLsn) {
    // leader position = replay + lag; the receiver is at least as far as replay.
    receiveLag = Math.max(0, lag - Math.max(0, lsnBytes(p.receiveLsn) - lsnBytes(p.replayLsn)));
  }
  const sync = (p as { syncState?: unknown }).syncState;
  return {
    up: p.up, running: p.running, inRecovery: p.inRecovery, streaming: p.streaming,
    lagBytes: lag, receiveLagBytes: receiveLag, sync: sync === "sync" || sync === "quorum",
  };
}

/** "16/B3000000" → bytes (exact below 2^53, i.e. 8 PiB of WAL). */
export function lsnBytes(lsn: string): number {
  const [hi, lo] = lsn.split("/");
  return parseInt(hi ?? "0", 16) * 2 ** 32 + parseInt(lo ?? "0", 16);
}
