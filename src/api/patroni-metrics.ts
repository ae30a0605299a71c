// Patroni's own /metrics names beside pgherd's (for dashboards and alerts written against Patroni):
// the same series names, types, help and labels ({scope, name}) as Patroni 4's GET /metrics, with
// Patroni's defaults (0 where a value does not apply). Series whose facts pgherd does not collect
// (postmaster start time, server version, replay timestamp, DCS contact) are left out. Pure.
import type { NodeStatus } from "../core/node-status.ts";
import { PATRONI_API_LEVEL } from "./patroni.ts";
import { pgNow, walBytes } from "./source.ts";

/** Patroni's numeric PostgreSQL states (patroni_postgres_state) for the ones pgherd distinguishes. */
const STATE = { creating_replica: 4, running: 5, starting: 6, stopped: 12 } as const;

/** The Prometheus lines (with HELP and TYPE) of the Patroni-named series for this node. */
export function patroniMetricLines(s: NodeStatus): string[] {
  const pg = s.postgres && pgNow(s.postgres);
  const labels = `{scope="${esc(s.cluster)}",name="${esc(s.node.name)}"}`;
  const out: string[] = [];
  const put = (name: string, type: "gauge" | "counter", help: string, v: number | boolean) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${labels} ${typeof v === "boolean" ? (v ? 1 : 0) : v}`);
  };
  const primary = pg?.up === true && pg.inRecovery === false;
  const replica = pg?.up === true && pg.inRecovery === true;
  const lsn = (v: string | null | undefined) => (v ? walBytes(v) : 0);
  const state = !pg ? STATE.stopped : pg.up ? STATE.running : pg.action === "clone" ? STATE.creating_replica : pg.running ? STATE.starting : STATE.stopped;

  put("patroni_version", "gauge", "Patroni semver without periods.", Number(PATRONI_API_LEVEL.split(".").map((p) => p.padStart(2, "0")).join("")));
  put("patroni_postgres_running", "gauge", "Value is 1 if Postgres is running, 0 otherwise.", pg?.up === true);
  put("patroni_primary", "gauge", "Value is 1 if this node is the leader, 0 otherwise.", primary && s.election.leading);
  put("patroni_xlog_location", "counter", "Current location of the Postgres transaction log, 0 if this node is not the leader.", primary ? lsn(pg!.position.lsn) : 0);
  put("patroni_standby_leader", "gauge", "Value is 1 if this node is the standby_leader, 0 otherwise.", false);
  put("patroni_replica", "gauge", "Value is 1 if this node is a replica, 0 otherwise.", replica);
  put("patroni_sync_standby", "gauge", "Value is 1 if this node is a sync standby replica, 0 otherwise.", replica && pg!.syncState === "sync");
  put("patroni_quorum_standby", "gauge", "Value is 1 if this node is a quorum standby replica, 0 otherwise.", replica && pg!.syncState === "quorum");
  put("patroni_xlog_received_location", "counter", "Current location of the received Postgres transaction log, 0 if this node is not a replica.", replica ? lsn(pg!.receiveLsn) : 0);
  put("patroni_xlog_replayed_location", "counter", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.", replica ? lsn(pg!.replayLsn) : 0);
  put("patroni_postgres_streaming", "gauge", "Value is 1 if Postgres is streaming, 0 otherwise.", replica && pg!.streaming);
  put("patroni_postgres_in_archive_recovery", "gauge", "Value is 1 if Postgres is replicating from archive, 0 otherwise.", replica && !pg!.streaming);
  put("patroni_cluster_unlocked", "gauge", "Value is 1 if the cluster is unlocked, 0 if locked.", s.election.leader === null);
  put("patroni_postgres_timeline", "counter", "Postgres timeline of this node (if running), 0 otherwise.", pg?.up && pg.data === "present" ? pg.position.timeline : 0);
  put("patroni_pending_restart", "gauge", "Value is 1 if the node needs a restart, 0 otherwise.", (pg?.pendingRestart?.length ?? 0) > 0);
  put("patroni_is_paused", "gauge", "Value is 1 if auto failover is disabled, 0 otherwise.", s.paused);
  put("patroni_postgres_state", "gauge", "Numeric representation of Postgres state (Patroni's values: 4=creating_replica, 5=running, 6=starting, 12=stopped).", state);
  return out;
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
