// The election's types (src/core/election.ts): options, what it persists, the events it takes, the
// Ready it returns and the Status it reports.
import type { ElectionMsg, Guard, Membership } from "./messages.ts";
import type { Position } from "./position.ts";
import type { ProposeOp } from "./election-membership.ts";

export type Role = "follower" | "precandidate" | "candidate" | "leader";

export interface ElectionOptions {
  id: string;
  /** false for witnesses: they vote but never stand. */
  canLead: boolean;
  heartbeatMs: number;
  leaseMs: number;
  timeoutMs: number;
  jitterMs: number;
  /** Time to stop PostgreSQL after a lease runs out; an ex-leader does not vote before it has passed. */
  fenceMs: number;
  /**
   * 0..1: the share of jitter_ms this node waits on top of timeout_ms before standing. Nodes with
   * a higher `priority` get a smaller share, so among equally advanced standbys they stand first.
   */
  jitterShare?: number;
  /** Uniform in [0, 1). Injected so runs are reproducible. */
  random: () => number;
  /**
   * true on a database node: no vote, pre-vote or candidacy before the first `position` event of
   * this process (until then its position is unknown, not ZERO); before granting a vote in a term
   * it has not yet detached for, stop streaming from the old primary (Ready.detach) and vote only
   * with the final position reported by the `detached` event. false on a witness (it holds no
   * data) and where it does not matter.
   */
  detachBeforeVote: boolean;
  /** How long a pending detach may take before the held vote is refused. Default DETACH_TIMEOUT_MS. */
  detachTimeoutMs?: number;
  /**
   * Clock rate error bound (config election.max_drift); used only to tell a heartbeat held in a
   * queue past its leader's lease (not acknowledged, not leader contact). Default 0.5, the largest
   * the config allows: the most heartbeats counted as fresh.
   */
  maxDrift?: number;
}

/**
 * 3 s: the shell's detach (reload without primary_conninfo, then wait until the walreceiver is gone
 * and the received position stopped moving) is bounded at 2 s and normally takes ~100 ms; the
 * candidate waits timeout_ms + up to jitter_ms (1.5–1.8 s with the defaults) for its votes, so a
 * vote held longer could not count anyway. A refused (timed-out) vote costs at most that one round.
 */
export const DETACH_TIMEOUT_MS = 3000;

/**
 * 20 s: how long a human's forced campaign (`failover --accept-data-loss`) forces this node's rounds
 * when it neither wins nor hears a leader: the failover waits as long for the new primary, then
 * reports that it failed. A later round is this node's own and respects the voters' guard.
 */
export const FORCED_CAMPAIGN_MS = 20_000;

/** What survives a restart. Written with fsync before dependent messages are sent. */
export interface Persistent {
  term: number;
  votedFor: string | null;
  membership: Membership | null;
  /**
   * The term this node won, if it is the current one: an agent restart (PostgreSQL left
   * running) resumes leadership of that term instead of forcing an election. Safe because
   * no other node can lead that term, and followers that moved on reject its heartbeats.
   */
  ledTerm?: number | null;
  /** The last durability guard learned from a leader (or set as leader). */
  guard?: Guard | null;
  /**
   * The hold the last leader's heartbeats announced (election.ts leaderHoldMs): a node restarted
   * right after acknowledging one still waits it from its start (re-review). Absent: 0.
   */
  hold?: number;
}

export type Event =
  | { type: "tick"; now: number }
  | { type: "recv"; now: number; from: string; msg: ElectionMsg }
  | { type: "position"; now: number; position: Position }
  | { type: "propose"; now: number; op: ProposeOp; node: string }
  | { type: "bootstrap"; now: number; membership: Membership }
  | { type: "resign"; now: number; reason: string; transferTo?: string }
  /**
   * A human picked this node (`pgherd failover --to`): stand now; voters still apply every check,
   * except the durability guard when `force` (--accept-data-loss).
   */
  | { type: "campaign"; now: number; force?: boolean }
  /** Leader only: the new durability guard (seq assigned here). */
  | { type: "guard"; now: number; block: boolean; floor: Position | null }
  /** Leader only: reserve a timeline number for a promotion (core/timelines.ts); the guard keeps the highest, block and floor as they are. */
  | { type: "reserve-timeline"; now: number; timeline: number }
  /**
   * The shell carried out Ready.detach{term}: streaming from the old primary stopped (ok) or could
   * not be stopped (!ok, error says why). position: the final flushed/received position after
   * streaming stopped; null when unchanged or unknown (e.g. PostgreSQL was not a streaming standby).
   */
  | { type: "detached"; now: number; term: number; ok: boolean; position: Position | null; error?: string }
  /**
   * The shell carried out the previous step's Ready, which had a persist: its messages left at
   * `now`. An election deadline set in that step counts from here, not from the step: the persist
   * (an fsync on the event loop) may take seconds on a disk busy with writeback, and a candidacy
   * whose round ran out meanwhile would give up as its vote requests leave.
   */
  | { type: "sent"; now: number }
  /**
   * The shell found the host was suspended (suspend-to-RAM, hibernation) for about `ms` since its
   * previous step: CLOCK_BOOTTIME ran on while `now`'s clock (CLOCK_MONOTONIC) stood still. A leader
   * counted its lease on `now` from heartbeats sent before: in real time it may have ended long ago
   * and the others elected another leader. It steps down (Ready.fence), with or without a lease.
   * Anyone else: nothing (its timers only ran long in real time: it waits longer, never shorter).
   */
  | { type: "suspended"; now: number; ms: number };

export interface Notice {
  kind:
    | "became-leader" | "lease-acquired" | "stepped-down" | "leader-changed" | "campaign"
    | "prevote-failed" | "vote-granted" | "vote-refused" | "vote-held" | "campaign-refused"
    | "membership-changed" | "membership-committed" | "proposal-rejected";
  detail: string;
}

export interface Ready {
  /** Write durably before sending anything below. */
  persist: Persistent | null;
  /**
   * Leader with a valid lease: the data service may accept writes until
   * `until` (local monotonic ms). null: it must not (fence before sending).
   */
  leading: { term: number; until: number } | null;
  send: Array<{ to: string; msg: ElectionMsg }>;
  /**
   * Stop streaming from the current upstream (the old primary), then feed a `detached` event for
   * this term. A vote waits for it (at most detachTimeoutMs). Set once per request; do it after
   * persisting and before or alongside sending (nothing sent here depends on it).
   */
  detach: { term: number } | null;
  /**
   * This step ended this node's leadership (a lease lost, a higher term, a resign): stop writes
   * before sending anything below, also when no lease was held (a leader resumed after a restart
   * beside its running primary steps down before its first lease).
   */
  fence: boolean;
  notices: Notice[];
  /** Local time at which a tick is due. */
  wakeAt: number;
}

export interface Status {
  id: string;
  role: Role;
  term: number;
  votedFor: string | null;
  leader: string | null;
  membership: Membership | null;
  membershipCommitted: boolean;
  leaseUntil: number | null;
  lastLeaderContact: number | null;
  position: Position;
  /** Whether `position` is this node's (reported by this process's shell; always on a witness): the agent reports it at least once. */
  positionKnown: boolean;
  guard: Guard | null;
  /** Leader during a membership change: the previous voters, whose majority still counts for the lease. */
  prevVoters: readonly string[] | null;
  /** Leader: highest guard seq a majority has stored (0 before any). */
  guardCommitted: number;
  /** Leader: the highest timeline reservation a majority says it stored (0 before any; a voter of an older version never says). */
  timelineCommitted: number;
  /** A vote held until the shell reports `detached` (or until `until`, local ms). */
  pendingVote: { term: number; candidate: string; until: number } | null;
}

/** The seam an etcd-backed implementation could satisfy later. */
export interface Consensus {
  step(ev: Event): Ready;
  status(now: number): Status;
}
