// What a stopping agent (SIGTERM, SIGINT) does with the leadership it holds: hand it to a caught-up
// standby first (a planned switchover), or stop as it is. And when that handover counts as done:
// the new primary runs, this node's server runs as a standby, and its lease file is disarmed, so
// its fencing watchdog has nothing left to stop. Pure: the shell (src/agent/handover.ts) carries it out.
import { type Candidate, checkSwitchover } from "./switchover.ts";
import type { PgReport } from "./report.ts";

export type ShutdownPlan =
  | { kind: "handover"; to: Candidate }
  | { kind: "stop"; reason: string };

export interface ShutdownFacts {
  /** --no-handover or [shutdown] handover = false turn it off. */
  enabled: boolean;
  /** This node runs PostgreSQL (false on a witness). */
  database: boolean;
  /** This node leads with a valid lease. */
  leading: boolean;
  paused: boolean;
  /** This node's own report. */
  own: PgReport | null;
  /** Members as switchover candidates (this node among them). */
  candidates: readonly Candidate[];
  maxLagBytes: number;
}

/** Hand over, to whom, or why not. The checks are the switchover's (core/switchover.ts). */
export function planShutdown(f: ShutdownFacts): ShutdownPlan {
  if (!f.enabled) return { kind: "stop", reason: "handover disabled (--no-handover or [shutdown] handover = false)" };
  if (!f.database) return { kind: "stop", reason: "a witness runs no PostgreSQL" };
  if (!f.leading) return { kind: "stop", reason: "this node does not lead: nothing to hand over" };
  // A paused cluster takes no role change the operator did not ask for by name (`pgherd switchover`).
  if (f.paused) return { kind: "stop", reason: "the cluster is paused (maintenance mode): no automatic role change" };
  const v = checkSwitchover({ primary: f.own, candidates: f.candidates, paused: false, force: false, maxLagBytes: f.maxLagBytes, slotCopies: "prefer" });
  return v.ok ? { kind: "handover", to: v.target } : { kind: "stop", reason: v.reason };
}

/** What the switchover itself may take (src/agent/actions.ts): the target confirming the final WAL, the floor reaching a majority. */
const SWITCHOVER_WAITS_MS = 5000 + 3000;
/** pg_ctl start of the former primary as a standby (no recovery to speak of after a clean stop). */
const STANDBY_START_MS = 10_000;

/**
 * Longest a stopping leader's switchover waits before the clean stop of its primary begins: for the
 * PostgreSQL loop's task in progress and then the CHECKPOINT taken while writes are still served
 * (src/agent/pg/loop.ts stopForHandover). Past it the switchover stops with the primary running and
 * this node leading: no handover. With handoverBoundMs it keeps the whole stop within the unit's
 * TimeoutStopSec=90s (deploy/pgherd.service): 1 s (the target's answer) + 45 s + 22.8 s.
 */
export const HANDOVER_CHECKPOINT_MS = 45_000;

/**
 * Longest a stopping leader waits for its handover, from the clean stop of its primary on: the
 * switchover's own waits, a campaign that falls back to an ordinary election (timeout + jitter +
 * one lease), and four monitoring rounds (the new primary's report, this node's round that
 * restarts its server as a standby, its report) plus that start. 22.8 s with the defaults. The
 * wait counts from the switchover's start, so it lasts HANDOVER_CHECKPOINT_MS longer: the clean
 * stop begins within that, or never.
 */
export function handoverBoundMs(t: { timeout_ms: number; jitter_ms: number; lease_ms: number; loop_ms: number }): number {
  return SWITCHOVER_WAITS_MS + t.timeout_ms + t.jitter_ms + t.lease_ms + 4 * t.loop_ms + STANDBY_START_MS;
}

export interface SettleFacts {
  self: string;
  /** The leader as this node sees it now, and its fresh report. */
  leader: string | null;
  leaderReport: PgReport | null;
  own: PgReport | null;
  /** This node's lease file still carries a deadline (its watchdog would stop the server at it). */
  leaseArmed: boolean;
  /** The handover's target, and whether its agent is still connected and reporting. */
  target: string;
  targetReachable: boolean;
}

/**
 * Done once another node leads with a running primary and this node's server is a disarmed
 * standby. `giveUp`: the target's agent is gone before it led (every agent stopped at once):
 * waiting longer cannot help.
 */
export function handoverSettled(f: SettleFacts): { done: true } | { done: false; waiting: string; giveUp?: true } {
  if (!f.targetReachable && f.leader !== f.target) return { done: false, waiting: "the target's agent is gone", giveUp: true };
  if (!f.leader) return { done: false, waiting: "no leader yet" };
  if (f.leader === f.self) return { done: false, waiting: "this node leads again" };
  if (!f.leaderReport?.up || f.leaderReport.inRecovery !== false) return { done: false, waiting: "the new leader's primary does not run yet" };
  if (!f.own?.up || f.own.inRecovery !== true) return { done: false, waiting: "this node's server does not run as a standby yet" };
  if (f.leaseArmed) return { done: false, waiting: "this node's lease file is still armed" };
  return { done: true };
}
