// Patroni's REST API shapes, for tools written against Patroni (check_patroni, dashboards):
// GET /patroni, the top-level `members`/`pause`/`scheduled_switchover` of GET /cluster, and the
// `sync_standby`/`quorum_standby` keys of a replica health check. Pure: pgherd's status and
// cluster view in, Patroni's JSON out (docs/api.md says which fields mean what).
import type { ClusterView, MemberRow } from "../core/cluster-view.ts";
import type { NodeStatus } from "../core/node-status.ts";
import { VERSION } from "../cli/version-info.ts";
import { pgNow, walBytes } from "./source.ts";

/** The Patroni REST API level these answers follow (roles "leader"/"primary", states "streaming"/"in archive recovery"). */
export const PATRONI_API_LEVEL = "4.0.0";

/** GET /patroni for this node. */
export function patroniNode(s: NodeStatus): Record<string, unknown> {
  const pg = s.postgres && pgNow(s.postgres);
  const base = {
    patroni: { version: PATRONI_API_LEVEL, scope: s.cluster, name: s.node.name },
    pgherd: { version: VERSION, term: s.election.term, leader: s.election.leaderName },
    cluster_unlocked: s.election.leader === null,
    ...(s.paused ? { pause: true } : {}),
    ...patroniTags(s.tags),
  };
  if (!pg) return { state: "running", role: "witness", ...base };
  const state = pg.up ? "running" : pg.action === "clone" ? "creating replica" : pg.running ? "starting" : "stopped";
  const role = pg.inRecovery === null ? "uninitialized" : pg.inRecovery ? "replica" : "primary";
  const xlog = pg.inRecovery
    ? { received_location: lsnBytes(pg.receiveLsn), replayed_location: lsnBytes(pg.replayLsn), replayed_timestamp: null, paused: false }
    : { location: lsnBytes(pg.position.lsn) };
  return {
    state, role,
    ...(pg.up ? { xlog } : {}),
    ...(pg.data === "present" ? { timeline: pg.position.timeline } : {}),
    ...(pg.inRecovery ? { replication_state: pg.streaming ? "streaming" : "in archive recovery" } : {}),
    ...(pg.inRecovery === false ? {
      replication: pg.replication.map((r) => ({ application_name: r.name, client_addr: r.clientAddr, state: r.state, sync_state: r.syncState ?? "async" })),
    } : {}),
    ...(pg.systemId ? { database_system_identifier: pg.systemId } : {}),
    ...base,
  };
}

/** `sync_standby` / `quorum_standby` in a replica check's body, as Patroni adds them (check_patroni node_is_replica --is-sync). */
export function replicaSyncKeys(s: NodeStatus): Record<string, true> {
  const st = s.postgres?.inRecovery ? s.postgres.syncState : null;
  if (st === "sync") return { sync_standby: true };
  if (st === "quorum") return { quorum_standby: true };
  return {};
}

/**
 * The Patroni fields of GET /cluster: `members` (name, role, state, api_url, host, port,
 * timeline, lag, tags), `pause`, `scheduled_switchover`. `api` is this node's API scheme and
 * port: members are assumed to listen on the same port.
 */
export function patroniCluster(view: ClusterView, api: { scheme: string; port: number }): Record<string, unknown> {
  const leaderRow = view.members.find((m) => m.leader);
  return {
    members: view.members.filter((m) => m.role !== "witness").map((m) => patroniMember(m, api)),
    pause: view.paused === true,
    ...(view.scheduledSwitchover ? {
      scheduled_switchover: { at: view.scheduledSwitchover.at, from: leaderRow?.name ?? null, ...(view.scheduledSwitchover.to ? { to: view.scheduledSwitchover.to } : {}) },
    } : {}),
  };
}

function patroniMember(m: MemberRow, api: { scheme: string; port: number }): Record<string, unknown> {
  const role = m.role === "primary" ? (m.leader ? "leader" : "demoted") : m.role === "standby" ? replicaRole(m) : m.leader ? "leader" : "uninitialized";
  const host = m.host.includes(":") ? `[${m.host}]` : m.host;
  const row: Record<string, unknown> = {
    name: m.name, role, state: patroniState(m),
    ...(m.host ? { api_url: `${api.scheme}://${host}:${api.port}/patroni`, host: m.host } : {}),
    ...(m.port !== null ? { port: m.port } : {}),
    ...(m.timeline !== null ? { timeline: m.timeline } : {}),
    // Patroni's tag for a member that is never promoted; pgherd's priority 0 means the same.
    ...(m.promotable === false ? { tags: { nofailover: true } } : {}),
  };
  // Patroni: a replica's lag in bytes, "unknown" when it cannot be computed (check_patroni counts it unhealthy).
  if (m.role === "standby") row.lag = m.lagBytes !== null && m.timeline !== null && m.state !== "unreachable" ? Math.max(0, m.lagBytes) : "unknown";
  return row;
}

/** `tags` as Patroni shows them: the configured ones, without those set to false (Patroni drops those of its own tags). */
function patroniTags(tags: Readonly<Record<string, string | number | boolean>>): { tags?: Record<string, string | number | boolean> } {
  const set = Object.entries(tags).filter(([, v]) => v !== false);
  return set.length ? { tags: Object.fromEntries(set) } : {};
}

/** Patroni marks the standbys in synchronous_standby_names by their sync_state in pg_stat_replication. */
function replicaRole(m: MemberRow): "replica" | "sync_standby" | "quorum_standby" {
  return m.syncState === "sync" ? "sync_standby" : m.syncState === "quorum" ? "quorum_standby" : "replica";
}

function patroniState(m: MemberRow): string {
  switch (m.state) {
    case "streaming": return "streaming";
    case "running": return m.role === "standby" ? "in archive recovery" : "running";
    case "cloning": return "creating replica";
    case "starting": return "starting";
    case "stopped": return "stopped";
    case "unreachable": return "unknown";
    // Patroni has no state for a server that runs but cannot work: "unknown" (unhealthy to check_patroni).
    case "stuck": case "disk-full": case "cannot-write": return "unknown";
  }
}

function lsnBytes(lsn: string | null): number | null {
  return lsn ? walBytes(lsn) : null;
}
