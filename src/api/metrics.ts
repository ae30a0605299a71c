// GET /metrics: Prometheus text exposition format 0.0.4, written by hand (it is small).
// Cluster-wide series (lag per standby) come from the leader only, so they are not duplicated.
// Per-member series carry the member's node id beside its name (two members may share a name),
// and a label set already written for a metric is never written again: one duplicate series makes
// Prometheus reject the whole scrape.
import type { ClusterView } from "../core/cluster-view.ts";
import type { NodePostgres } from "../core/node-status.ts";
import { describe } from "./health.ts";
import type { HistoryEntry } from "./actions-contract.ts";
import { pgNow, walBytes, type HealthFacts, type NodeStatus } from "./source.ts";
import { processMetricLines } from "./process-metrics.ts";
import { patroniMetricLines } from "./patroni-metrics.ts";

const HEALTH_STATES = ["ok", "busy", "stuck", "disk-full", "cannot-write", "unknown"] as const;

export const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;
type Sample = [Labels, number | null | undefined];

export interface MetricsInput {
  status: NodeStatus;
  facts: HealthFacts;
  /** The leader's cluster view when this node is the leader, else null. */
  view: ClusterView | null;
  history: readonly HistoryEntry[];
  /** Failovers this agent has known of since it started, trimmed history entries included (History.failovers); absent: those in `history`. */
  failovers?: number;
  apiRejects: Record<string, number>;
}

export function renderMetrics(m: MetricsInput): string {
  const out: string[] = [];
  const put = (name: string, type: "gauge" | "counter", help: string, samples: Sample[]) => {
    const seen = new Set<string>();
    const lines: string[] = [];
    for (const [l, v] of samples) {
      const series = `${name}${labels(l)}`;
      if (typeof v !== "number" || !Number.isFinite(v) || seen.has(series)) continue;
      seen.add(series);
      lines.push(`${series} ${v}`);
    }
    if (lines.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
  };
  const one = (v: number | null | undefined): Sample[] => [[{}, v]];
  const bool = (b: boolean) => (b ? 1 : 0);
  const s = m.status;
  const e = s.election;
  const c = s.counters;
  const pg = s.postgres && pgNow(s.postgres);

  put("pgherd_info", "gauge", "Constant 1, labelled with this node's identity.", [[{ cluster: s.cluster, node: s.node.name, node_id: s.node.id, node_role: s.node.role }, 1]]);
  put("pgherd_uptime_seconds", "gauge", "Seconds since the agent started.", one(s.uptimeMs / 1000));
  put("pgherd_leading", "gauge", "1 while this node holds the leader lease.", one(bool(e.leading)));
  put("pgherd_election_role", "gauge", "1 for this node's current election role.", [[{ role: e.role }, 1]]);
  put("pgherd_term", "gauge", "Current election term.", one(e.term));
  put("pgherd_lease_remaining_seconds", "gauge", "Seconds left on the leader lease (0 when not leading).", one(e.leaseRemainingMs / 1000));
  put("pgherd_leader_changes_total", "counter", "Leader changes this agent observed.", one(c.leaderChanges));
  put("pgherd_leaderships_won_total", "counter", "Times this node gained a valid lease.", one(c.leadershipsWon));
  put("pgherd_leases_lost_total", "counter", "Times this node lost its lease while leading.", one(c.leasesLost));
  put("pgherd_fencing_events_total", "counter", "Times this node fenced its PostgreSQL.", one(c.fences));
  put("pgherd_failovers_total", "counter", "Failovers in the cluster history, those trimmed from it since the agent started included.", one(m.failovers ?? m.history.filter((h) => h.kind === "failover").length));
  put("pgherd_loop_duration_seconds", "gauge", "Duration of the last PostgreSQL monitoring round.", one(c.loopMs / 1000));
  put("pgherd_loops_total", "counter", "PostgreSQL monitoring rounds run.", one(c.loops));
  put("pgherd_peers_connected", "gauge", "Authenticated mesh peers connected.", one(s.peers.filter((p) => p.connected).length));
  put("pgherd_paused", "gauge", "1 while the cluster is in maintenance mode.", one(bool(s.paused)));

  const role = describe(m.facts).role;
  put("pgherd_postgres_up", "gauge", "1 when this node's PostgreSQL answers queries.", one(bool(pg?.up ?? false)));
  put("pgherd_postgres_role", "gauge", "1 for this node's PostgreSQL role.", ["primary", "replica", "unknown", "witness"].map((r) => [{ role: r }, bool(r === role)]));
  if (pg) {
    put("pgherd_postgres_streaming", "gauge", "1 while this standby's WAL receiver streams.", one(bool(pg.streaming)));
    put("pgherd_timeline", "gauge", "PostgreSQL timeline of this node.", one(pg.data === "present" ? pg.position.timeline : null));
    put("pgherd_wal_position_bytes", "gauge", "This node's WAL position (current LSN on a primary, received/replayed on a standby) in bytes.", one(pg.data === "present" ? walBytes(pg.position.lsn) : null));
    put("pgherd_wal_receive_position_bytes", "gauge", "Last WAL position received by this standby.", one(pg.receiveLsn ? walBytes(pg.receiveLsn) : null));
    put("pgherd_wal_replay_position_bytes", "gauge", "Last WAL position replayed by this standby.", one(pg.replayLsn ? walBytes(pg.replayLsn) : null));
    put("pgherd_standby_lag_bytes", "gauge", "Bytes this standby's replay is behind the leader's primary.", one(pg.lagBytes));
    put("pgherd_replication_slot_retained_wal_bytes", "gauge", "WAL kept for each replication slot on this node.", slotSizes(pg.slots));
    const a = pg.up ? pg.archive : undefined;
    if (a) {
      const at = (iso: string | null) => (iso === null ? null : Date.parse(iso) / 1000);
      put("pgherd_archive_archived_total", "counter", "WAL files this node's archiver archived (pg_stat_archiver.archived_count; [backup] tool set).", one(a.archived));
      put("pgherd_archive_failed_total", "counter", "Failed attempts of this node's archiver (pg_stat_archiver.failed_count).", one(a.failed));
      put("pgherd_archive_ready_segments", "gauge", "WAL files waiting for this node's archiver (pg_wal/archive_status/*.ready).", one(a.ready));
      put("pgherd_archive_last_archived_timestamp_seconds", "gauge", "Unix time this node's archiver last archived a file.", one(at(a.lastArchivedAt)));
      put("pgherd_archive_last_failed_timestamp_seconds", "gauge", "Unix time this node's archiver last failed.", one(at(a.lastFailedAt)));
      put("pgherd_archive_failing", "gauge", "1 while this node's archiving has failed for [backup] archive_failing_s and nothing was archived since.", one(bool(a.failingSince !== null)));
    }
    const h = pg.health;
    if (h) {
      put("pgherd_postgres_health", "gauge", "1 for whether this node's PostgreSQL can do its work (ok, busy, stuck, disk-full, cannot-write; unknown while not watched).", HEALTH_STATES.map((st) => [{ state: st }, bool(st === h.state)]));
      put("pgherd_postgres_health_since_timestamp_seconds", "gauge", "Unix time since which the health state holds.", one(h.since ? Date.parse(h.since) / 1000 : null));
      put("pgherd_disk_size_bytes", "gauge", "Size of the file system of the data directory (what=data) and of pg_wal when separate.", h.disks.map((d) => [{ what: d.what, path: d.path }, d.sizeBytes]));
      put("pgherd_disk_available_bytes", "gauge", "Space available to PostgreSQL on that file system.", h.disks.map((d) => [{ what: d.what, path: d.path }, d.availBytes]));
      put("pgherd_disk_space_low", "gauge", "1 while a file system of the data directory or pg_wal is under 10% free (or full).", one(bool(h.diskWarning !== null)));
    }
  }
  const standbys = m.view?.members.filter((x) => x.role === "standby") ?? [];
  put("pgherd_replication_lag_bytes", "gauge", "Replay lag of each standby behind the primary, in bytes (exported by the leader).", standbys.map((x) => [{ standby: x.name, node_id: x.id }, x.lagBytes]));
  put("pgherd_replication_lag_seconds", "gauge", "Replay lag of each standby as the primary measures it, in seconds (exported by the leader).", standbys.map((x) => [{ standby: x.name, node_id: x.id }, x.lagSeconds]));
  put("pgherd_member_pending_restart", "gauge", "1 for each cluster member whose PostgreSQL has settings waiting for a restart (exported by the leader).", (m.view?.members ?? []).filter((x) => x.role !== "witness").map((x) => [{ member: x.name, node_id: x.id }, bool((x.pendingRestart?.length ?? 0) > 0)]));
  put("pgherd_member_up", "gauge", "1 for each cluster member that is reachable and running (exported by the leader).", (m.view?.members ?? []).map((x) => [{ member: x.name, node_id: x.id, role: x.role, state: x.state }, bool(x.state === "running" || x.state === "streaming")]));

  const rejects = (kind: string, counts: Record<string, number>) => put(`pgherd_${kind}_rejects_total`, "counter", `Rejected ${kind} input by reason.`, Object.entries(counts).map(([reason, n]) => [{ reason }, n]));
  rejects("beacon", s.rejects.beacon);
  rejects("mesh", s.rejects.mesh);
  rejects("api", m.apiRejects);
  out.push(...processMetricLines()); // RSS, CPU, event-loop lag (issue 12)
  out.push(...patroniMetricLines(s)); // Patroni's series names (src/api/patroni-metrics.ts)
  return `${out.join("\n")}\n`;
}

/** WAL each slot holds back (slots whose size is unknown are left out). */
function slotSizes(slots: NodePostgres["slots"]): Sample[] {
  return slots.map(({ name, retainedBytes }): Sample => [{ slot: name }, retainedBytes]);
}

function labels(l: Labels): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}
