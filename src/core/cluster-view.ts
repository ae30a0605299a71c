// The table `pgherd cluster ls` prints, composed from the members' last reports. Pure.
import { z } from "zod";
import { lsnToBigInt } from "./position.ts";
import type { PgReport } from "./report.ts";
import { OrderedListSchema } from "./restart-plan.ts";
import { missingSlotCopies } from "./switchover.ts";

export interface MemberInput {
  id: string;
  name: string;
  role: "database" | "witness";
  /** IP or host others reach it at ("" if unknown). */
  host: string;
  voter: boolean;
  /** Approved by an operator, not yet a voter (the leader adds it once connected). */
  approved?: boolean;
  /** Its report is fresh (received within a few monitoring rounds) and it is connected. */
  reachable: boolean;
  report: PgReport | null;
  /** The port of its last report, fresh or not (`report` is null once it is stale): the row keeps it for pgpool and the table. */
  lastPort?: number | null;
  /** A database member that can never be promoted (nofailover or priority 0). */
  neverPromoted?: boolean;
  /** Not a voter: why the leader does not make it one yet (core/cluster-facts.ts joinBlocker). */
  joinBlocked?: string | null;
}

/** stuck, disk-full, cannot-write: the server runs but cannot do its work (the member's health says why). */
export type MemberState = "running" | "streaming" | "starting" | "cloning" | "stopped" | "unreachable" | "stuck" | "disk-full" | "cannot-write";

export const MemberRowSchema = z.object({
  id: z.string().max(64),
  name: z.string().max(64),
  host: z.string().max(300),
  port: z.number().int().nullable(),
  role: z.enum(["primary", "standby", "witness", "unknown"]),
  state: z.enum(["running", "streaming", "starting", "cloning", "stopped", "unreachable", "stuck", "disk-full", "cannot-write"]),
  leader: z.boolean(),
  voter: z.boolean(),
  /**
   * voter; approved (an operator approved it, the leader is adding it); pending (a non-voter waiting
   * for `pgherd member approve`). Absent before the cluster has a membership.
   */
  membership: z.enum(["voter", "approved", "pending"]).optional(),
  timeline: z.number().int().nullable(),
  lsn: z.string().max(17).nullable(),
  lagBytes: z.number().nullable(),
  lagSeconds: z.number().nullable(),
  /** A standby's sync_state in the primary's pg_stat_replication ("sync", "quorum", "potential", "async"); absent: unknown. */
  syncState: z.string().max(16).optional(),
  note: z.string().max(500),
  error: z.string().max(1000).nullable(),
  /** Settings that take effect only after a restart of its PostgreSQL (pg_settings.pending_restart); absent when none. */
  pendingRestart: z.array(z.string().max(63)).max(256).optional(),
  /** The settings PostgreSQL orders between primary and standbys, for `pgherd restart` (core/restart-plan.ts). */
  ordered: OrderedListSchema.optional(),
  /** A standby: the primary's permanent slots it holds no copy of yet (a switchover to it is refused: core/switchover.ts); absent when none. */
  missingSlotCopies: z.array(z.string().max(63)).max(64).optional(),
  /** false: a database member that is never promoted (tagged nofailover or priority 0): no switchover target; absent: it may be. */
  promotable: z.boolean().optional(),
});
export type MemberRow = z.infer<typeof MemberRowSchema>;

/** A switchover the leader stores and runs at `at` (only while it holds a valid lease). */
export const ScheduledSwitchoverSchema = z.object({
  /** When to run it (ISO 8601 with offset). */
  at: z.iso.datetime({ offset: true }).max(40),
  /** Target member name; null = the most caught-up standby at that time. */
  to: z.string().max(64).nullable(),
  /** When an operator asked for it. */
  requestedAt: z.iso.datetime({ offset: true }).max(40),
});
export type ScheduledSwitchover = z.infer<typeof ScheduledSwitchoverSchema>;

export const ClusterViewSchema = z.object({
  cluster: z.string().max(64),
  leader: z.string().max(64).nullable(),
  leaderName: z.string().max(64).nullable(),
  term: z.number().int().min(0),
  primary: z.string().max(64).nullable(),
  /** What a commit acknowledgement currently promises (from the primary). */
  durability: z.string().max(400).optional(),
  /** Maintenance mode: automatic actions suspended. */
  paused: z.boolean().optional(),
  /** Why there is no leader, when there is none (the last failed election round). */
  note: z.string().max(1000).optional(),
  /** The pending scheduled switchover (absent or null: none). */
  scheduledSwitchover: ScheduledSwitchoverSchema.nullable().optional(),
  members: z.array(MemberRowSchema).max(256),
});
export type ClusterView = z.infer<typeof ClusterViewSchema>;

export interface ViewInput {
  cluster: string;
  term: number;
  leader: string | null;
  members: readonly MemberInput[];
  slotOf: (id: string) => string;
  paused?: boolean;
  /** Why there is no leader (shown only while there is none). */
  note?: string;
  durability?: string;
  /** The leader's stored scheduled switchover, if any. */
  scheduledSwitchover?: ScheduledSwitchover | null;
  /** Approved nodes that are not voters yet (the membership's `approved`). */
  approved?: readonly string[];
}

/** Where a member stands in the voter set (undefined while there is no membership at all). */
export function membershipOf(m: Pick<MemberInput, "id" | "voter" | "approved">, approved: readonly string[], haveVoters: boolean): MemberRow["membership"] {
  if (!haveVoters) return undefined;
  if (m.voter) return "voter";
  return m.approved || approved.includes(m.id) ? "approved" : "pending";
}

/** The note of a member that is not a voter: what it waits for, and the command that ends the wait. */
export function pendingNote(name: string, membership: MemberRow["membership"], joinBlocked?: string | null): string | null {
  if ((membership === "pending" || membership === "approved") && joinBlocked) return `non-voter, not made a voter while ${joinBlocked}`;
  if (membership === "pending") return `non-voter, pending approval (pgherd member approve ${name})`;
  if (membership === "approved") return "approved: the leader makes it a voter once it is connected";
  return null;
}

export function composeView(opts: ViewInput): ClusterView {
  const primaryIn = opts.members.find((m) => m.reachable && m.report?.up && m.report.inRecovery === false);
  const primaryReport = primaryIn?.report ?? null;
  const haveVoters = opts.members.some((m) => m.voter);
  const rows = opts.members.map((m): MemberRow => {
    const r = m.report;
    const role: MemberRow["role"] = m.role === "witness" ? "witness" : !r || r.inRecovery === null ? (r?.data === "present" && !r.running ? "standby" : "unknown") : r.inRecovery ? "standby" : "primary";
    const repl = primaryReport?.replication.find((x) => x.name === opts.slotOf(m.id));
    let lagBytes: number | null = repl?.lagBytes ?? null;
    // Not connected to the primary's walsender: computed from the reports, on the primary's timeline
    // only (another one is a history that may have left the primary's past its switch point: node-view.ts ownLagBytes).
    if (lagBytes === null && role === "standby" && r?.replayLsn && primaryReport?.position.lsn && r.position.timeline === primaryReport.position.timeline) {
      const d = lsnToBigInt(primaryReport.position.lsn) - lsnToBigInt(r.replayLsn);
      lagBytes = d > 0n ? Number(d) : 0;
    }
    const membership = membershipOf(m, opts.approved ?? [], haveVoters);
    const note = r?.note ?? "";
    const missing = role === "standby" && primaryReport ? missingSlotCopies(primaryReport, r) : [];
    return {
      id: m.id, name: m.name, host: m.host, port: r?.port ?? m.lastPort ?? null, role,
      state: stateOf(m),
      leader: m.id === opts.leader, voter: m.voter, ...(membership ? { membership } : {}),
      timeline: r && r.data === "present" ? r.position.timeline : null,
      lsn: r && r.data === "present" ? r.position.lsn : null,
      lagBytes: role === "standby" ? lagBytes : null,
      // PostgreSQL's replay_lag is NULL when the standby is idle and caught up, and also all through a
      // catch-up (until replay passes its first lag sample): 0 only when nothing is left to replay
      // (review: /replica?lag=10s answered 200 for a standby gigabytes behind).
      lagSeconds: role === "standby" ? (repl?.replayLagSeconds ?? (repl && repl.lagBytes === 0 ? 0 : null)) : null,
      ...(role === "standby" && repl?.syncState ? { syncState: repl.syncState } : {}),
      note: (pendingNote(m.name, membership, m.joinBlocked) ?? note).slice(0, 500), error: r?.error ?? null,
      ...(r?.pendingRestart?.length ? { pendingRestart: r.pendingRestart } : {}),
      ...(r?.ordered?.length ? { ordered: r.ordered } : {}),
      ...(missing.length ? { missingSlotCopies: missing } : {}),
      ...(m.neverPromoted && m.role === "database" ? { promotable: false as const } : {}),
    };
  });
  const leaderRow = opts.members.find((m) => m.id === opts.leader);
  return {
    cluster: opts.cluster, leader: opts.leader, leaderName: leaderRow?.name ?? null, term: opts.term,
    primary: primaryIn?.id ?? null,
    ...(opts.durability ? { durability: opts.durability } : {}),
    ...(opts.paused ? { paused: true } : {}),
    ...(opts.note && !opts.leader ? { note: opts.note.slice(0, 1000) } : {}),
    ...(opts.scheduledSwitchover ? { scheduledSwitchover: opts.scheduledSwitchover } : {}),
    members: rows.sort((a, b) => a.name.localeCompare(b.name)),
  };
}

function stateOf(m: MemberInput): MemberState {
  if (!m.reachable || !m.report) return m.role === "witness" && m.reachable ? "running" : "unreachable";
  const r = m.report;
  if (r.action === "clone") return "cloning";
  // A full disk is a fact of the file system (up or down, the server cannot work); stuck and
  // cannot-write are verdicts about a running server.
  const h = r.health?.state;
  if (h === "disk-full" || (r.running && (h === "stuck" || h === "cannot-write"))) return h;
  if (!r.running) return r.action.startsWith("start") || r.action === "initdb" || r.action === "resume-restore" ? "starting" : "stopped";
  if (!r.up) return "starting";
  if (r.inRecovery) return r.streaming ? "streaming" : "running";
  return "running";
}
