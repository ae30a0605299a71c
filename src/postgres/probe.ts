// One health/position snapshot of a server, validated with zod (rows come from the network).
// Requires PostgreSQL ≥ 13 (pg_stat_wal_receiver.flushed_lsn).
import { z } from "zod";
import { lsnDiff } from "./lsn.ts";
import type { Db } from "./sql.ts";

export interface WalReceiverInfo {
  status: string;
  senderHost: string | null;
  senderPort: number | null;
  slotName: string | null;
  receivedTli: number | null;
  writtenLsn: string | null;
  flushedLsn: string | null;
}

export interface ReplicationInfo {
  applicationName: string;
  clientAddr: string | null;
  state: string;
  sentLsn: string | null;
  writeLsn: string | null;
  flushLsn: string | null;
  replayLsn: string | null;
  syncState: string;
  /** Bytes the standby's replay is behind our current WAL position. */
  lagBytes: number | null;
  /** pg_stat_replication.replay_lag; null when idle/caught up. */
  replayLagSeconds: number | null;
}

export interface ProbeUp {
  up: true;
  ms: number;
  inRecovery: boolean;
  /** Primary: timeline of the WAL being written now (from the WAL file name, exact right after promotion).
   *  Standby: newest of received, checkpoint and min-recovery timelines. */
  timeline: number;
  /**
   * The timeline pg_control's last checkpoint (a standby's restartpoint) names. A promoted primary's
   * stays the old one until its first checkpoint, and pg_rewind before PostgreSQL 16 reads a source's
   * timeline there (src/agent/pg/timeline-checkpoint.ts).
   */
  checkpointTimeline: number;
  currentLsn: string | null;
  receiveLsn: string | null;
  replayLsn: string | null;
  flushLsn: string | null;
  walReceiver: WalReceiverInfo | null;
  replication: ReplicationInfo[];
  systemIdentifier: string;
  /** server_version_num, e.g. 150014. */
  serverVersion: number;
  /** The server's replication slots, temporary ones left out. */
  /** `lost`: PostgreSQL invalidated it (wal_status lost: max_slot_wal_keep_size, or on 16 a recovery conflict of a logical copy). */
  slots: { name: string; type: "physical" | "logical"; lost?: true }[];
  /** synchronous_standby_names in force (the round's upkeep checks it against the durability plan). */
  syncNames: string;
  /** A standby's startup process: what it waits for ("IPC:RecoveryPause"), null when it runs or on a primary. */
  startupWait: string | null;
}

export interface ProbeDown { up: false; ms: number; error: string }
export type Probe = ProbeUp | ProbeDown;

const lsn = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/).nullable();
const StatusRow = z.object({
  current_lsn: lsn,
  walfile: z.string().regex(/^[0-9A-F]{24}$/).nullable(),
  version_num: z.number().int(),
  system_identifier: z.string().regex(/^\d+$/),
  receive_lsn: lsn,
  replay_lsn: lsn,
  checkpoint_tli: z.number().int(),
  min_recovery_tli: z.number().int().nullable(),
  /** "type:name,…" (the client leaves arrays as text: fetch_types is off); read leniently below. */
  slots: z.string().nullable(),
  sync_names: z.string(),
  startup_wait: z.string().nullable(),
});
const ReceiverRow = z.object({
  status: z.string().nullable(),
  sender_host: z.string().nullable(),
  sender_port: z.number().int().nullable(),
  slot_name: z.string().nullable(),
  received_tli: z.number().int().nullable(),
  written_lsn: lsn,
  flushed_lsn: lsn,
});
const ReplRow = z.object({
  application_name: z.string(),
  client_addr: z.string().nullable(),
  state: z.string().nullable(),
  sent_lsn: lsn,
  write_lsn: lsn,
  flush_lsn: lsn,
  replay_lsn: lsn,
  sync_state: z.string().nullable(),
  replay_lag_s: z.number().nullable(),
});

/**
 * The monitoring probe. It reads the statistics and slot functions themselves, not the system
 * views over them (pg_stat_activity, pg_stat_replication, pg_replication_slots), which join
 * pg_authid or pg_database: a query on a view locks those catalogs, so a lock queue on one of them
 * (a VACUUM FULL or REINDEX of pg_authid waiting behind an idle transaction that read it) held the
 * probe as it holds every new connection's startup, and an idle primary then read as stuck (no
 * answer, no WAL) and was failed over (review; S19). The functions take no lock on a table.
 */
export async function probe(db: Db, timeoutMs?: number): Promise<Probe> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  try {
    // Pipelined on the one connection: one round trip and one wake-up instead of three.
    const [st, rcv, repl] = await db.query("probe", (sql) => Promise.all([
      // current_lsn is computed once: it is the single source of "primary or not" for this snapshot.
      sql`SELECT s.cur::text AS current_lsn, pg_walfile_name(s.cur) AS walfile,
          current_setting('server_version_num')::int AS version_num,
          (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
          pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn,
          (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
          (SELECT min_recovery_end_timeline FROM pg_control_recovery()) AS min_recovery_tli,
          (SELECT string_agg(slot_type || ':' || slot_name || CASE WHEN wal_status = 'lost' THEN ':lost' ELSE '' END, ',' ORDER BY slot_name) FROM pg_catalog.pg_get_replication_slots() WHERE NOT temporary) AS slots,
          current_setting('synchronous_standby_names') AS sync_names,
          CASE WHEN s.cur IS NULL THEN (SELECT wait_event_type || ':' || wait_event FROM pg_catalog.pg_stat_get_activity(NULL) WHERE backend_type = 'startup') END AS startup_wait
        FROM (SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END AS cur OFFSET 0) s`,
      sql`SELECT status, sender_host, sender_port, slot_name, received_tli,
          written_lsn::text AS written_lsn, flushed_lsn::text AS flushed_lsn
        FROM pg_catalog.pg_stat_get_wal_receiver() WHERE pid IS NOT NULL`,
      sql`SELECT coalesce(a.application_name, '') AS application_name, host(a.client_addr) AS client_addr, w.state,
          w.sent_lsn::text AS sent_lsn, w.write_lsn::text AS write_lsn, w.flush_lsn::text AS flush_lsn,
          w.replay_lsn::text AS replay_lsn, w.sync_state, extract(epoch FROM w.replay_lag)::float8 AS replay_lag_s
        FROM pg_catalog.pg_stat_get_activity(NULL) a JOIN pg_catalog.pg_stat_get_wal_senders() w ON a.pid = w.pid
        ORDER BY a.application_name`,
    ]), timeoutMs);
    const s = StatusRow.parse(st[0]);
    const r = rcv[0] ? ReceiverRow.parse(rcv[0]) : null;
    const inRecovery = s.current_lsn === null;
    const timeline = !inRecovery && s.walfile
      ? Number.parseInt(s.walfile.slice(0, 8), 16)
      : Math.max(s.checkpoint_tli, s.min_recovery_tli ?? 0, r?.received_tli ?? 0);
    const base = s.current_lsn ?? s.receive_lsn;
    return {
      up: true, ms: ms(), inRecovery, timeline, checkpointTimeline: s.checkpoint_tli,
      currentLsn: s.current_lsn, receiveLsn: s.receive_lsn, replayLsn: s.replay_lsn, flushLsn: r?.flushed_lsn ?? null,
      walReceiver: r && r.status
        ? { status: r.status, senderHost: r.sender_host, senderPort: r.sender_port, slotName: r.slot_name,
            receivedTli: r.received_tli, writtenLsn: r.written_lsn, flushedLsn: r.flushed_lsn }
        : null,
      replication: repl.map((row) => {
        const x = ReplRow.parse(row);
        return {
          applicationName: x.application_name, clientAddr: x.client_addr, state: x.state ?? "", sentLsn: x.sent_lsn,
          writeLsn: x.write_lsn, flushLsn: x.flush_lsn, replayLsn: x.replay_lsn, syncState: x.sync_state ?? "",
          lagBytes: base && x.replay_lsn ? Number(lsnDiff(base, x.replay_lsn)) : null,
          replayLagSeconds: x.replay_lag_s,
        };
      }),
      systemIdentifier: s.system_identifier, serverVersion: s.version_num,
      slots: slotList(s.slots),
      syncNames: s.sync_names,
      startupWait: s.startup_wait,
    };
  } catch (e) {
    return { up: false, ms: ms(), error: e instanceof z.ZodError ? `unexpected probe row: ${e.message}` : (e as Error).message };
  }
}

/** Settings changed in the config files that only take effect after a restart. */
export async function pendingRestart(db: Db): Promise<string[]> {
  const rows = await db.query("pending_restart", (sql) => sql`SELECT name FROM pg_settings WHERE pending_restart ORDER BY name`);
  return rows.map((r) => z.object({ name: z.string() }).parse(r).name);
}

/**
 * The probe's "type:name,…" list. An item of another form (a slot type of a later version) is left
 * out rather than failing the whole probe: these names are only compared with configured ones.
 */
export function slotList(text: string | null): ProbeUp["slots"] {
  const out: ProbeUp["slots"] = [];
  for (const item of text?.split(",") ?? []) {
    const m = /^(physical|logical):([a-z0-9_]+)(:lost)?$/.exec(item);
    if (m) out.push({ name: m[2]!, type: m[1] as "physical" | "logical", ...(m[3] ? { lost: true as const } : {}) });
  }
  return out;
}
