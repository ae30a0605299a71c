// What each agent tells its peers about its PostgreSQL every monitoring round (wire schema).
import { z } from "zod";
import { PositionSchema } from "./messages.ts";
import { OrderedListSchema } from "./restart-plan.ts";

const lsn = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);
const text = (n: number) => z.string().max(n);

/** Progress of the last `pgherd rejoin` on this node (absent until one was requested). */
export const RejoinProgressSchema = z.object({
  /** Counts the requests this agent took since it started. */
  seq: z.number().int().min(1),
  state: z.enum(["requested", "rewinding", "cloning", "starting", "streaming", "failed"]),
  error: text(500).nullable(),
  /** The steps this request went through so far, in order (a poll may come after a quick one ended). */
  passed: z.array(z.enum(["rewinding", "cloning", "starting"])).max(8).optional(),
  /** Failed, and the request dropped: the agent does not retry it (a clone with no room). */
  dropped: z.boolean().optional(),
});
export type RejoinProgress = z.infer<typeof RejoinProgressSchema>;

export const HealthSchema = z.object({
  state: z.enum(["ok", "busy", "stuck", "disk-full", "cannot-write", "unknown"]),
  reason: text(300),
  /** ISO time since which the state holds (null: not watched). */
  since: z.iso.datetime().nullable(),
  disks: z.array(z.object({ what: z.enum(["data", "pg_wal"]), path: text(300), sizeBytes: z.number().min(0), availBytes: z.number().min(0) })).max(2),
  /** A file system of the data directory or pg_wal running out of space (null: enough left). */
  diskWarning: text(300).nullable(),
});

/** This node's WAL archiver ([backup] tool set; core/archiving.ts): pg_stat_archiver and the segments waiting. */
export const ArchiveSchema = z.object({
  /** When it was read (every 2 s at most, on a server that answers). */
  at: z.iso.datetime(),
  archived: z.number().int().min(0),
  failed: z.number().int().min(0),
  lastArchivedWal: text(64).nullable(),
  lastArchivedAt: z.iso.datetime().nullable(),
  lastFailedWal: text(64).nullable(),
  lastFailedAt: z.iso.datetime().nullable(),
  /** Files in pg_wal/archive_status waiting for the archiver (.ready). */
  ready: z.number().int().min(0),
  /** Since when archiving fails, once it has failed for [backup] archive_failing_s; null: it works (or not that long). */
  failingSince: z.iso.datetime().nullable(),
});
export type ArchiveReport = z.infer<typeof ArchiveSchema>;

/** One node's PostgreSQL as its agent saw it in its last monitoring round. */
export const PgReportSchema = z.object({
  port: z.number().int().min(0).max(65535),
  data: z.enum(["empty", "present", "foreign", "unknown"]),
  systemId: z.string().regex(/^\d{1,20}$/).nullable(),
  running: z.boolean(),
  up: z.boolean(),
  inRecovery: z.boolean().nullable(),
  position: PositionSchema,
  /**
   * On a primary: the timeline its pg_control's last checkpoint names, below its own from a promotion
   * until the first checkpoint after it. A former primary rewinds from it only once it is the
   * primary's own (core/ha.ts); absent from an agent that checkpointed before it reported the promotion.
   */
  checkpointTimeline: z.number().int().min(1).max(0xffffffff).optional(),
  receiveLsn: lsn.nullable(),
  replayLsn: lsn.nullable(),
  upstream: text(300).nullable(),
  streaming: z.boolean(),
  replication: z.array(z.object({
    name: text(64), clientAddr: text(64).nullable(), state: text(32), syncState: text(16).optional(),
    lagBytes: z.number().nullable(), replayLagSeconds: z.number().nullable(),
  })).max(256),
  slots: z.array(text(63)).max(256),
  /** WAL each slot holds back on this primary (bytes). */
  slotBytes: z.record(text(63), z.number()).optional(),
  /** Permanent slots on this primary (src/slots): where each resumes; logical ones on PostgreSQL < 17 carry their state file (base64) for standbys to copy. */
  permanent: z.array(z.object({
    name: text(63), type: z.enum(["physical", "logical"]), lsn: lsn.nullable(), restartLsn: lsn.nullable().optional(), state: z.string().max(4096).regex(/^[A-Za-z0-9+/=]*$/).optional(),
    /** No standby can get a copy: the slot was invalidated (lost), or on PostgreSQL ≥ 17 it is a logical slot made without failover. */
    uncopyable: z.enum(["lost", "not-failover"]).optional(),
    /** Who made the slot (src/slots/plan.ts, Made): a standby records its copy with it, so that once promoted it never drops an operator's slot. */
    madeBy: z.enum(["pgherd", "operator"]).optional(),
  })).max(64).optional(),
  /** On a standby with [[slots.permanent]]: those its server lists (a switchover target must hold every one the primary has: core/switchover.ts). */
  permanentCopies: z.array(text(63)).max(64).optional(),
  action: text(64),
  /** On a primary: what a commit acknowledgement currently promises. */
  guarantee: text(300).optional(),
  note: text(500),
  error: text(1000).nullable(),
  haveSecrets: z.boolean(),
  rejoin: RejoinProgressSchema.optional(),
  /** Whether the server can do its work (core/liveness.ts; "unknown" while not watched) and its disk space. */
  health: HealthSchema.optional(),
  /** Settings changed in the config that take effect only after a restart (pg_settings.pending_restart); absent when none. */
  pendingRestart: z.array(text(63)).max(256).optional(),
  /** The settings a standby must run at least as high as its primary (core/restart-plan.ts): running, in the files, and a standby's pg_control copy of the primary's. */
  ordered: OrderedListSchema.optional(),
  /** Its WAL archiver, with [backup] tool set and the server answering. */
  archive: ArchiveSchema.optional(),
  /** A backup this node's pgBackRest is taking (src/backup/backup-action.ts): every later leader sees it, not only the one that asked. */
  backup: z.object({ type: z.enum(["full", "diff", "incr"]), since: z.iso.datetime() }).optional(),
});
export type PgReport = z.infer<typeof PgReportSchema>;
