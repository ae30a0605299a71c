// What one agent says about itself (GET /node, the dashboard, the health checks, /metrics): the
// agent builds it, the API and the CLI only read it. Types only.
import type { Role } from "./election.ts";
import type { Position } from "./position.ts";
import type { PgReport } from "./report.ts";

/** This node's PostgreSQL: its last report plus what only the leader's primary knows about it. */
export type NodePostgres = Omit<PgReport, "slots"> & {
  /** Replay position behind the leader's primary, in bytes (null: unknown or not a standby). */
  lagBytes: number | null;
  /** This standby's `sync_state` in the primary's pg_stat_replication ("sync", "quorum", "potential", "async"; null: unknown). */
  syncState: string | null;
  slots: Array<{ name: string; retainedBytes: number | null }>;
};

/** A peer as this agent knows it (beacon and mesh). */
export interface NodePeer {
  id: string;
  name: string;
  role: "database" | "witness";
  mesh: string;
  address: string;
  vote: string[] | null;
  member: boolean;
  connected: boolean;
  /** Monotonic ms of the last beacon or mesh contact (this agent's clock). */
  lastSeen: number;
}

/** Monotonic counters for /metrics. */
export interface NodeCounters {
  leaderChanges: number;
  leadershipsWon: number;
  leasesLost: number;
  fences: number;
  /** Duration of the last PostgreSQL monitoring round. */
  loopMs: number;
  loops: number;
}

export interface NodeStatus {
  cluster: string;
  node: { id: string; name: string; role: "database" | "witness"; /** mesh address others dial */ mesh: string };
  election: {
    role: Role;
    term: number;
    leader: string | null;
    leaderName: string | null;
    votedFor: string | null;
    /** Holds the leader lease right now. */
    leading: boolean;
    leaseRemainingMs: number;
    voters: Array<{ id: string; name: string }>;
    /** "term.index" of the membership, null before bootstrap. */
    membershipVersion: string | null;
    /**
     * The position this node votes with, as its consensus backend holds it. For a node that cannot
     * lead it is min(its own position, votingCap); its own is postgres.position.
     */
    position: Position;
    /** A node that cannot lead, left out of the synchronous names: the cap on the position it votes with (null: none, it votes with its own). */
    votingCap: Position | null;
    /** The consensus backend in force on this node and the migration epoch that put it there (0: the config file's). */
    backend?: { backend: "builtin" | "etcd"; epoch: number };
  };
  /** Why the cluster is not bootstrapped yet (null once it is). */
  bootstrap: string | null;
  /** null on a witness or before the first monitoring round. */
  postgres: NodePostgres | null;
  tags: Readonly<Record<string, string | number | boolean>>;
  /** Maintenance mode: automatic actions suspended. */
  paused: boolean;
  /** failover.max_lag_bytes in force (the cluster-wide value, else this node's): /readiness's limit without `lag` (Patroni's maximum_lag_on_failover). Absent from older versions. */
  maxLagBytes?: number;
  /** What a commit acknowledgement currently promises. */
  durability: string;
  counters: NodeCounters;
  peers: NodePeer[];
  rejects: { beacon: Record<string, number>; mesh: Record<string, number> };
  uptimeMs: number;
}
