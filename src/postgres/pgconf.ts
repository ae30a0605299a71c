// Pure rendering of pgherd.conf (the one config file pgherd owns) and of primary_conninfo.
// Values are always quoted/escaped here; names are validated, so config from the network or
// a TOML file can never inject a second setting or a comment.

export type ParamValue = string | number | boolean;

export interface PgherdConfParams {
  listenAddresses: ReadonlyArray<string>;
  port: number;
  walLevel?: "replica" | "logical";
  maxWalSenders: number;
  maxReplicationSlots: number;
  hotStandby: true;
  walLogHints: true;
  /** Standby only. Build with buildConninfo (uses a passfile: no password in this file). */
  primaryConninfo?: string;
  primarySlotName?: string;
  /** How fast a standby retries a lost primary (PostgreSQL default 5 s is too slow for failover). */
  walRetrieveRetryIntervalMs?: number;
  unixSocketDir: string;
  clusterName?: string;
  /** Primary only: e.g. ANY 1 (a, b); "" = asynchronous. Standbys always get "". */
  synchronousStandbyNames?: string;
  /** Replication TLS (src/tls): ssl = on with these files; absent: ssl is left at PostgreSQL's default (off). */
  ssl?: { certFile: string; keyFile: string; caFile: string };
  /** Server log collector and rotation (src/ops/pg-log.ts); [postgres.parameters] override them. */
  serverLog?: Readonly<Record<string, ParamValue>>;
  /** Continuous archiving pgherd manages ([backup] tool): archive_mode, archive_command, restore_command. */
  archive?: { archiveMode: "on" | "always"; archiveCommand: string; restoreCommand: string };
  /** A former primary started as a standby to be promoted (core/ha.ts ownTimeline): recover on its own timeline only. */
  recoveryTargetTimeline?: number;
  /** Standby with copies of permanent logical slots: the primary keeps the catalog rows they need. */
  hotStandbyFeedback?: boolean;
  /** PostgreSQL ≥ 17 standby with permanent logical slots: sync_replication_slots (the conninfo then names a dbname). */
  slotSync?: boolean;
  /** Operator parameters; may not override the ones above. */
  parameters?: Readonly<Record<string, ParamValue>>;
}

export const PGHERD_CONF = "pgherd.conf";
export const INCLUDE_LINE = `include_if_exists = '${PGHERD_CONF}'\t# added by pgherd: keep this the last line`;

/** Settings pgherd owns; operators set them through pgherd's own config keys. */
export const MANAGED_KEYS = [
  "listen_addresses", "port", "wal_level", "max_wal_senders", "max_replication_slots", "hot_standby",
  "wal_log_hints", "primary_conninfo", "primary_slot_name", "wal_retrieve_retry_interval",
  "unix_socket_directories", "cluster_name", "synchronous_standby_names", "synchronous_commit",
  "ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file",
  // Written only when needed (a former primary's own timeline, slot synchronization), yet never the operator's:
  // a recovery_target_timeline of theirs would follow a timeline pgherd did not choose.
  "recovery_target_timeline", "sync_replication_slots",
] as const;

/** Settings no one sets on a managed server: a recovery target ends a standby's recovery (and may promote it), a trigger file promotes it; pgherd decides promotion. */
export const RECOVERY_END_KEYS = [
  "recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid",
  "recovery_target_action", "recovery_target_inclusive", "promote_trigger_file",
] as const;

/**
 * Where the server finds its files: pgherd manages the data directory and the pg_hba.conf and
 * pg_ident.conf in it. A data_directory in the included file moves the server to another directory
 * at its next start; an hba_file or ident_file elsewhere drops pgherd's rules (replication,
 * monitoring, [[access]]).
 */
export const LOCATION_KEYS = ["data_directory", "config_file", "hba_file", "ident_file"] as const;

/**
 * Defaults an operator may override. A replication connection that silently stops carrying data
 * (one-way partition, a frozen standby, TCP retransmission backoff after a blip) keeps showing
 * "streaming" in pg_stat_replication for wal_sender_timeout (60 s by default): a quorum primary
 * waits on such a standby that long before it can degrade. 5 s on both ends bounds that stall.
 */
export const DEFAULT_PARAMETERS: Readonly<Record<string, ParamValue>> = {
  wal_sender_timeout: "5s",
  wal_receiver_timeout: "5s",
};

export class ConfError extends Error {
  override readonly name = "ConfError";
}

const NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/** A value as a postgresql.conf literal: numbers/booleans bare, strings single-quoted with ' and \ escaped. */
export function confValue(name: string, v: ParamValue): string {
  if (typeof v === "boolean") return v ? "on" : "off";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new ConfError(`parameter ${name}: ${v} is not a finite number`);
    return String(v);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new ConfError(`parameter ${name}: value contains a control character (newline?)`);
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

export function renderPgherdConf(p: PgherdConfParams): string {
  const port = p.port;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfError(`port ${port} is not in 1..65535`);
  for (const [k, v] of [["maxWalSenders", p.maxWalSenders], ["maxReplicationSlots", p.maxReplicationSlots]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfError(`${k} must be a positive integer, got ${v}`);
  }
  if (p.primarySlotName !== undefined && !/^[a-z0-9_]{1,63}$/.test(p.primarySlotName)) {
    throw new ConfError(`primary slot name ${JSON.stringify(p.primarySlotName)}: only a-z, 0-9 and _ (max 63)`);
  }
  const managed: Array<[string, ParamValue]> = [
    ["listen_addresses", p.listenAddresses.join(",")],
    ["port", port],
    ["unix_socket_directories", p.unixSocketDir],
    ["wal_level", p.walLevel ?? "replica"],
    ["max_wal_senders", p.maxWalSenders],
    ["max_replication_slots", p.maxReplicationSlots],
    ["hot_standby", p.hotStandby],
    ["wal_log_hints", p.walLogHints],
    // A standby retries a lost upstream this often (with connect_timeout below: streaming again ≤ ~2 s after a heal).
    ["wal_retrieve_retry_interval", `${p.walRetrieveRetryIntervalMs ?? 200}ms`],
  ];
  if (p.ssl) {
    managed.push(["ssl", true], ["ssl_cert_file", p.ssl.certFile], ["ssl_key_file", p.ssl.keyFile], ["ssl_ca_file", p.ssl.caFile]);
  }
  if (p.clusterName !== undefined) managed.push(["cluster_name", p.clusterName]);
  managed.push(["synchronous_standby_names", p.synchronousStandbyNames ?? ""]);
  managed.push(["synchronous_commit", "on"]);
  // Always written: an empty value clears a conninfo copied in by pg_rewind/pg_basebackup.
  managed.push(["primary_conninfo", p.primaryConninfo ?? ""]);
  managed.push(["primary_slot_name", p.primarySlotName ?? ""]);
  if (p.recoveryTargetTimeline) managed.push(["recovery_target_timeline", String(p.recoveryTargetTimeline)]);
  // WAL that outlives failover (src/backup): written only when pgherd manages archiving / slot copies.
  const walKeys = p.archive ? ["archive_mode", "archive_command", "restore_command"] : [];
  if (p.archive) managed.push(["archive_mode", p.archive.archiveMode], ["archive_command", p.archive.archiveCommand], ["restore_command", p.archive.restoreCommand]);
  const ownFeedback = Object.keys(p.parameters ?? {}).some((k) => k.toLowerCase() === "hot_standby_feedback");
  if (p.hotStandbyFeedback && !ownFeedback) managed.push(["hot_standby_feedback", true]);
  if (p.slotSync) managed.push(["sync_replication_slots", true]), walKeys.push("sync_replication_slots");

  const user = Object.entries(p.parameters ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [k] of user) {
    const lk = k.toLowerCase();
    if (!NAME.test(lk)) throw new ConfError(`parameter name ${JSON.stringify(k)} is not a valid PostgreSQL setting name`);
    if ((MANAGED_KEYS as readonly string[]).includes(lk) || walKeys.includes(lk)) throw new ConfError(`parameter ${k} is managed by pgherd and cannot be set directly`);
    if ((RECOVERY_END_KEYS as readonly string[]).includes(lk)) throw new ConfError(`parameter ${k} would end a standby's recovery: pgherd decides promotion`);
    if ((LOCATION_KEYS as readonly string[]).includes(lk)) throw new ConfError(`parameter ${k} would move a file pgherd manages`);
  }
  const own = new Set(user.map(([k]) => k.toLowerCase()));
  const defaults = Object.entries(DEFAULT_PARAMETERS).filter(([k]) => !own.has(k));
  const lines = [
    "# Managed by pgherd: do not edit. Rewritten on every start, clone and rewind;",
    "# put your own settings in pgherd's configuration ([postgres.parameters]).",
    "",
    ...managed.map(([k, v]) => `${k} = ${confValue(k, v)}`),
  ];
  if (defaults.length) lines.push("", "# pgherd's defaults ([postgres.parameters] overrides them)", ...defaults.map(([k, v]) => `${k} = ${confValue(k, v)}`));
  const serverLog = Object.entries(p.serverLog ?? {}).filter(([k]) => !own.has(k));
  if (serverLog.length) lines.push("", "# server log ([log] postgres_*; [postgres.parameters] overrides them)", ...serverLog.map(([k, v]) => `${k} = ${confValue(k, v)}`));
  if (user.length) lines.push("", "# operator parameters", ...user.map(([k, v]) => `${k.toLowerCase()} = ${confValue(k, v)}`));
  return lines.join("\n") + "\n";
}

export interface ConninfoParams {
  host: string;
  port: number;
  user: string;
  /** Path of a 0600 passfile (see passwords.ts) so the password is never in a config file. */
  passfile?: string;
  applicationName?: string;
  connectTimeoutSec?: number;
  sslmode?: "disable" | "prefer" | "require" | "verify-ca" | "verify-full";
  /** Extra libpq keywords, e.g. keepalives_idle. */
  extra?: Readonly<Record<string, string | number>>;
}

/** libpq conninfo string; values with spaces, quotes or backslashes are quoted per libpq rules ('…' with \' and \\). */
export function buildConninfo(c: ConninfoParams): string {
  const kv: Array<[string, string | number | undefined]> = [
    ["host", c.host], ["port", c.port], ["user", c.user], ["passfile", c.passfile],
    ["application_name", c.applicationName], ["connect_timeout", c.connectTimeoutSec ?? 2], ["sslmode", c.sslmode],
    // A SYN sent into a cut link backs off (1, 2, 4 s…): a short connect_timeout makes the next try
    // start right after a heal; keepalives and tcp_user_timeout end a connection whose peer vanished
    // within ~5 s (wal_receiver_timeout), also while nothing is streamed.
    ...Object.entries({ keepalives_idle: 2, keepalives_interval: 1, keepalives_count: 3, tcp_user_timeout: 5000, ...c.extra }),
  ];
  return kv
    .filter((e): e is [string, string | number] => e[1] !== undefined)
    .map(([k, v]) => {
      if (!/^[a-z_]+$/.test(k)) throw new ConfError(`conninfo keyword ${JSON.stringify(k)} is invalid`);
      const s = String(v);
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f]/.test(s)) throw new ConfError(`conninfo ${k}: value contains a control character`);
      return /^[^\s'\\]+$/.test(s) ? `${k}=${s}` : `${k}='${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
    })
    .join(" ");
}

/**
 * postgresql.conf text with our include line as the last setting line (later lines win, so
 * nothing the operator appends may come after it). Returns the text unchanged when already so.
 */
export function withIncludeLine(conf: string): string {
  const lines = conf.split("\n");
  const isOurs = (l: string) => /^\s*include_if_exists\s*=?\s*'pgherd\.conf'/.test(l);
  const kept = lines.filter((l) => !isOurs(l));
  const lastSetting = (ls: string[]) => {
    for (let i = ls.length - 1; i >= 0; i--) if (!/^\s*(#.*)?$/.test(ls[i] ?? "")) return i;
    return -1;
  };
  const ourIdx = lines.findIndex(isOurs);
  if (ourIdx >= 0 && ourIdx === lastSetting(lines) && lines.filter(isOurs).length === 1) return conf;
  while (kept.length && kept[kept.length - 1] === "") kept.pop();
  return [...kept, INCLUDE_LINE, ""].join("\n");
}
