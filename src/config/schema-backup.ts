// WAL that outlives failover: the [backup] section (continuous archiving with pgBackRest, clones
// from the backup repository) and [[slots.permanent]] (slots for consumers outside the cluster).
// Cross-section rules (wal_level, the operator's own archive settings) are in crossCheckBackup.
import { z } from "zod";
import { absPath } from "./pg-values.ts";

const intIn = (min: number, max: number) =>
  z.int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

/** Hours between scheduled backups: 0 (none), or from 0.001 (3.6 s; backups never overlap: one at a time) to a year. */
const every = () => z.number("must be a number of hours").min(0, "must be 0 or more").max(24 * 366, `must be at most ${24 * 366}`)
  .refine((h) => h === 0 || h >= 0.001, "must be 0 (no schedule) or at least 0.001 (3.6 s)").default(0);

export const backupSection = () => z
  .strictObject({
    /** "none": archiving is the operator's business. "pgbackrest": pgherd configures archiving on every node. */
    tool: z.enum(["none", "pgbackrest"], 'must be "none" or "pgbackrest"').default("none"),
    /** The pgBackRest repository: one directory every node reaches (shared storage, e.g. NFS); with repo_host, the directory on that host. */
    repo_path: absPath().default("/var/lib/pgbackrest"),
    /** A repository host running `pgbackrest server` (TLS, a certificate from `pgherd backup repo-cert`); "" = repo_path is shared storage. */
    repo_host: z.string().regex(/^([0-9A-Za-z.:-]{1,253})?$/, "must be an IP address or host name (or \"\" for none)").default(""),
    /** Port of the repository host's pgBackRest TLS server. */
    repo_host_port: intIn(1, 65535).default(8432),
    /** pgBackRest stanza; "" = the cluster name. */
    stanza: z.string().regex(/^([a-z0-9][a-z0-9_-]{0,62})?$/, "must be 1-63 characters of a-z, 0-9, _ and - (or \"\" for the cluster name)").default(""),
    /** How a new or rebuilt standby gets its data: "backup" (pgbackrest restore, pg_basebackup when that fails) or "primary" (pg_basebackup). */
    clone_from: z.enum(["backup", "primary"], 'must be "backup" or "primary"').default("backup"),
    /** WAL archiving that has failed this long (seconds) is said: a warning in the log, pgherd_archive_failing, `pgherd status`. */
    archive_failing_s: intIn(1, 86400).default(60),
    /** Full backups the repository keeps (older ones expire with the WAL only they need). */
    retention_full: intIn(1, 1000).default(2),
    /** The primary takes a full backup when the newest full one is this old (0 = only `pgherd backup`; fractions allowed: 0.5 = 30 min). */
    full_every_hours: every(),
    /** ... and an incremental one when the newest backup is this old (0 = none). */
    incr_every_hours: every(),
    /**
     * `pgherd backup` and the schedule run on a healthy standby (pgBackRest backup-standby), and every agent
     * runs pgBackRest's TLS server for it; false (default): always on the primary, no TLS server. Opt-in
     * because that server runs SQL as the superuser for any client with a certificate of the cluster CA,
     * whose key every holder of the cluster secret can obtain (docs/security.md).
     */
    from_standby: z.boolean().default(false),
    /** Port of the pgBackRest TLS server every agent runs (`pgbackrest server`; a standby's backup reaches the primary through it). */
    tls_port: intIn(1, 65535).default(8432),
    /** Address it listens on ("" = every IPv4 address, 0.0.0.0); only clients with a certificate of the cluster CA get in. */
    tls_address: z.string().regex(/^([0-9A-Za-z.:-]{1,253})?$/, "must be an IP address or host name (or \"\" for every IPv4 address)").default(""),
  });

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

export const permanentSlot = () => z
  .strictObject({
    name: z.string().regex(SLOT_NAME, "must be 1-63 characters of a-z, 0-9 and _")
      .refine((s) => !s.startsWith("pgherd_"), "must not start with pgherd_ (pgherd's own slots for its standbys)"),
    type: z.enum(["physical", "logical"], 'must be "physical" or "logical"'),
    /** Logical only: the output plugin (pgoutput, test_decoding, wal2json …). */
    plugin: z.string().regex(/^[a-z0-9_]{1,63}$/, "must be an output plugin name (a-z, 0-9, _)").optional(),
    /** Logical only: the database the slot decodes. */
    database: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$/, "must be a database name (letters, digits, _, $, -)").optional(),
  })
  .superRefine((s, ctx) => {
    if (s.type === "logical") {
      if (!s.plugin) ctx.addIssue({ code: "custom", path: ["plugin"], message: "is required for a logical slot" });
      if (!s.database) ctx.addIssue({ code: "custom", path: ["database"], message: "is required for a logical slot" });
    } else {
      if (s.plugin) ctx.addIssue({ code: "custom", path: ["plugin"], message: "is only for a logical slot" });
      if (s.database) ctx.addIssue({ code: "custom", path: ["database"], message: "is only for a logical slot" });
    }
  });

export const permanentSlots = () => z.array(permanentSlot()).max(64, "may list at most 64 slots (each one is reported to every peer every round)").superRefine((xs, ctx) => {
  const seen = new Set<string>();
  xs.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `${s.name} is listed twice` });
    seen.add(s.name);
  });
}).default(() => []);

export type BackupConfig = z.output<ReturnType<typeof backupSection>>;
export type PermanentSlot = z.output<ReturnType<typeof permanentSlot>>;

/** Settings pgherd writes when [backup] tool is set: [postgres.parameters] may not set them then. */
export const ARCHIVE_KEYS = ["archive_mode", "archive_command", "archive_library", "restore_command"] as const;

type Ctx = { addIssue(i: { code: "custom"; path: (string | number)[]; message: string }): void };

/** Rules across sections: logical slots need wal_level logical; pgherd's archiving excludes the operator's. */
export function crossCheckBackup(c: {
  backup: BackupConfig; slots: { permanent: readonly PermanentSlot[] }; postgres: { wal_level: string; replication_tls: boolean; parameters: Readonly<Record<string, unknown>> };
  bootstrap: { from_existing: boolean; from_backup: boolean; target_time: string; target_lsn: string };
}, ctx: Ctx): void {
  const b = c.bootstrap;
  if (b.from_backup && c.backup.tool === "none") ctx.addIssue({ code: "custom", path: ["bootstrap", "from_backup"], message: 'needs backup.tool = "pgbackrest" (the repository to restore from)' });
  if (b.from_backup && b.from_existing) ctx.addIssue({ code: "custom", path: ["bootstrap", "from_backup"], message: "and bootstrap.from_existing exclude each other" });
  if (b.target_time && b.target_lsn) ctx.addIssue({ code: "custom", path: ["bootstrap", "target_lsn"], message: "and bootstrap.target_time exclude each other: give one target" });
  if ((b.target_time || b.target_lsn) && !b.from_backup) ctx.addIssue({ code: "custom", path: ["bootstrap", b.target_time ? "target_time" : "target_lsn"], message: "is only for bootstrap.from_backup = true" });
  checkRepoHost(c, ctx);
  const i = c.slots.permanent.findIndex((s) => s.type === "logical");
  if (i >= 0 && c.postgres.wal_level !== "logical") {
    ctx.addIssue({ code: "custom", path: ["slots", "permanent", i, "type"], message: `logical slot ${c.slots.permanent[i]!.name} needs postgres.wal_level = "logical"` });
  }
  if (c.backup.tool !== "none") {
    const own = Object.keys(c.postgres.parameters).filter((k) => (ARCHIVE_KEYS as readonly string[]).includes(k.toLowerCase()));
    if (own.length) ctx.addIssue({ code: "custom", path: ["postgres", "parameters"], message: `sets ${own.join(", ")}, which backup.tool = "${c.backup.tool}" manages: remove them` });
  }
}

const TIME = /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?( ?([+-]\d\d(:?\d\d)?|Z|UTC))?$/;

/** [bootstrap] keys for a cluster created from a backup (spread into the bootstrap section). */
export const bootstrapFromBackup = () => ({
  /** The first node restores the latest backup of [backup] instead of initdb; the others clone from it. */
  from_backup: z.boolean().default(false),
  /** Point-in-time recovery: stop at this time ("2026-01-31 12:00:00+00"); "" = the end of the archive. */
  target_time: z.string().regex(TIME, 'must be a timestamp like "2026-01-31 12:00:00+00" (or "")').or(z.literal("")).default(""),
  /** ... or at this LSN ("0/3000060"). */
  target_lsn: z.string().regex(/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/, 'must be an LSN like "0/3000060" (or "")').or(z.literal("")).default(""),
});

/**
 * repo_host: pgBackRest runs a backup only on the repository host ("backup command must be run on
 * the repository host"), so backups are started there and pgherd schedules none; the nodes reach
 * it with their pgBackRest certificate, which exists only with the cluster CA (replication TLS).
 */
function checkRepoHost(c: { backup: BackupConfig; postgres: { replication_tls: boolean } }, ctx: Ctx): void {
  const b = c.backup;
  if (!b.repo_host) return;
  const at = (key: string, message: string) => ctx.addIssue({ code: "custom", path: ["backup", key], message });
  if (b.tool !== "pgbackrest") at("repo_host", 'needs backup.tool = "pgbackrest"');
  if (!c.postgres.replication_tls) at("repo_host", "needs postgres.replication_tls = true (the nodes reach the repository host with certificates of the cluster CA)");
  for (const k of ["full_every_hours", "incr_every_hours"] as const) {
    if (b[k] !== 0) at(k, "must be 0 with backup.repo_host: pgBackRest runs backups only on the repository host; schedule them there (see docs/backup.md)");
  }
}
