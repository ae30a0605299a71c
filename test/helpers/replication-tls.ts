// Replication TLS as the servers themselves report it: on the primary every walsender of the
// cluster's own standbys (application_name pgherd_<node id>) is SSL (pg_stat_ssl; a consumer of
// the operator's, e.g. pg_recvlogical on a permanent slot, connects as its pg_hba rule says), and every standby's walreceiver connects with sslmode=verify-full against
// the cluster CA and channel_binding=require (pg_stat_wal_receiver.conninfo, password-free).
// Every e2e cluster checks it: PgCluster.waitHealthy, the loopback cluster's settled(), the demo.

/** Anything that runs a query as the superuser on one node's server. */
export interface Queryable {
  name: string;
  query(text: string): Promise<Record<string, unknown>[]>;
}

const PRIMARY_SQL = "select r.application_name as app, coalesce(s.ssl, false) as ssl from pg_stat_replication r left join pg_stat_ssl s using (pid)";
const STANDBY_SQL = "select conninfo from pg_stat_wal_receiver";

/** Why replication between `primary` and `standbys` is not TLS-verified, or "" when it is. */
export async function replicationTlsProblem(primary: Queryable, standbys: ReadonlyArray<Queryable>): Promise<string> {
  const problems: string[] = [];
  const senders = await primary.query(PRIMARY_SQL);
  if (standbys.length > 0 && senders.length === 0) problems.push(`${primary.name} has no walsender`);
  for (const w of senders) if (String(w.app).startsWith("pgherd_") && w.ssl !== true) problems.push(`walsender to ${String(w.app)} on ${primary.name} is not SSL (pg_stat_ssl)`);
  for (const s of standbys) {
    const conninfo = String((await s.query(STANDBY_SQL))[0]?.conninfo ?? "");
    for (const want of ["sslmode=verify-full", "sslrootcert=", "channel_binding=require"]) {
      if (!conninfo.includes(want)) problems.push(`${s.name}'s walreceiver conninfo lacks ${want}: ${JSON.stringify(conninfo)}`);
    }
  }
  return problems.join("; ");
}
