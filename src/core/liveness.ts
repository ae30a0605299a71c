// Whether this node's PostgreSQL can do its job, not only whether its process exists: a pure step
// from one round's observations (gathered by the shell under deadlines) to a verdict. Only the
// leader acts on it (core/ha.ts: resign), every node reports it. No I/O, no clock: time is passed in.
//
// Verdicts (docs/design.md, "Liveness of the primary's work"):
// - ok:           it answered and committed the agent's heartbeat in time.
// - busy:         slow but progressing: a probe or the heartbeat took longer than busyMs, or one of
//                 them ran out of time while something else still answered or WAL was still written.
// - stuck:        no progress at all: its processes are stopped (state T) for frozenMs with nothing
//                 answering (the whole server: counted from the first sighting; some of them: with
//                 nothing answering in the round and no WAL written), or neither connection
//                 answered and no WAL was written for stuckMs.
// - cannot-write: it answers, but the heartbeat commit fails with an error (disk full, I/O error,
//                 out of memory) for cannotWriteMs, or commits time out and no WAL was written for
//                 stuckMs.
// - disk-full:    the file system of the data directory or of pg_wal has less than fullBytes (or
//                 fullRatio of its size, the smaller) available for diskFullMs.

import { comparePosition, type Position } from "./position.ts";
import type { Candidate } from "./switchover.ts";

export type LivenessState = "ok" | "busy" | "stuck" | "disk-full" | "cannot-write";

export interface LivenessThresholds {
  /** A probe or heartbeat slower than this makes the server "busy" (reported, never acted on). */
  busyMs: number;
  /** No answer on either connection and no WAL written for this long: "stuck". */
  stuckMs: number;
  /** Processes stopped (SIGSTOP, state T) this long with nothing answering: "stuck". */
  frozenMs: number;
  /** The heartbeat commit failing with an error for this long: "cannot-write". */
  cannotWriteMs: number;
  /** Less than min(fullBytes, fullRatio × size) available: full. */
  fullBytes: number;
  fullRatio: number;
  /** Full for this long: "disk-full". */
  diskFullMs: number;
  /** Less than this share of the size available: a warning in the status. */
  warnRatio: number;
}

/** Defaults (docs/design.md explains each; measured figures there). */
export const LIVENESS_DEFAULTS: LivenessThresholds = {
  busyMs: 1000,
  stuckMs: 3000,
  frozenMs: 1000,
  cannotWriteMs: 1000,
  fullBytes: 16 * 1024 * 1024,
  fullRatio: 0.02,
  diskFullMs: 1000,
  warnRatio: 0.1,
};

/** One query's outcome: answered (ok, or failed with a server error) or no answer in time. */
export type Attempt =
  | { kind: "ok"; ms: number }
  | { kind: "error"; ms: number; error: string; sqlstate: string | null }
  | { kind: "timeout"; ms: number; error: string };

/** A file system's size and what an unprivileged user may still write there, in bytes (statfs). */
export interface FsRoom {
  sizeBytes: number;
  availBytes: number;
}

export interface DiskUse extends FsRoom {
  /** "data" (the data directory's file system) or "pg_wal" (when it is another one). */
  what: "data" | "pg_wal";
  path: string;
}

export interface LivenessObs {
  /** When the round's observations started and ended (monotonic ms). */
  startedAt: number;
  now: number;
  /**
   * Since when the shell's samples (at the round's start, which is `startedAt`, every 100 ms while
   * its attempts run, and at its end) saw processes of this server in state T (stopped or traced)
   * without a break up to the end; null when none at the end.
   */
  stoppedSince: number | null;
  /**
   * The same for the whole server (the postmaster and every child stopped or exited: nothing of it
   * can answer), within this round only: the gap between rounds is not sampled, so this is never
   * carried over (the shell samples on past its attempts while the whole server is stopped).
   */
  allStoppedSince: number | null;
  /** Those processes at the end ("" when none), for the verdict's reason. */
  stoppedAtEnd: string;
  /** When the last of this round's attempts that got an answer (a result or a server error) got it; null: none did. */
  answeredAt: number | null;
  /** The monitoring probe on the agent's persistent connection. */
  probe: Attempt;
  /** SELECT 1 on a fresh connection (a wedged backend vs a wedged server). */
  fresh: Attempt;
  /** The agent's heartbeat commit (synchronous_commit = local) on that fresh connection; null: not tried. */
  write: Attempt | null;
  /** Newest modification time of a WAL segment (file system ms), null when unknown. */
  walWrittenAt: number | null;
  disks: readonly DiskUse[];
}

export interface Verdict {
  state: LivenessState;
  reason: string;
  /** Monotonic ms since which this state holds. */
  since: number;
}

export interface Liveness {
  /** Last time the server answered anything (a query result or a server error). */
  lastAnswerAt: number;
  /** Last time WAL was seen written (the newest segment's mtime changed). */
  lastWalAt: number;
  walWrittenAt: number | null;
  frozenSince: number | null;
  writeErrorSince: number | null;
  /**
   * Since when the heartbeat commit has not completed: set by a commit that timed out, kept while
   * none can be tried (the fresh connection failed: refused when every slot is taken, or hung),
   * cleared by one that got an answer or a round that tries none on purpose.
   */
  writeTimedOutSince: number | null;
  fullSince: number | null;
  verdict: Verdict;
}

export function initialLiveness(now: number): Liveness {
  return { lastAnswerAt: now, lastWalAt: now, walWrittenAt: null, frozenSince: null, writeErrorSince: null, writeTimedOutSince: null, fullSince: null, verdict: { state: "ok", reason: "", since: now } };
}

/** The disk that is fullest relative to its thresholds: full, low (warning) or null. */
export function diskWarning(disks: readonly DiskUse[], t: LivenessThresholds = LIVENESS_DEFAULTS): { full: boolean; text: string } | null {
  let worst: { full: boolean; text: string; share: number } | null = null;
  for (const d of disks) {
    if (d.sizeBytes <= 0) continue;
    const share = d.availBytes / d.sizeBytes;
    const full = d.availBytes < Math.min(t.fullBytes, t.fullRatio * d.sizeBytes);
    if (!full && share >= t.warnRatio) continue;
    const text = `${d.what} file system ${d.path}: ${bytes(d.availBytes)} free of ${bytes(d.sizeBytes)} (${(share * 100).toFixed(1)}%)`;
    if (!worst || (full && !worst.full) || (full === worst.full && share < worst.share)) worst = { full, text, share };
  }
  return worst ? { full: worst.full, text: worst.text } : null;
}

const answered = (a: Attempt | null) => a !== null && a.kind !== "timeout";

/**
 * Since when some of this server's processes have been stopped, as of this round: carried over from
 * the previous round (`prevSince`) when they were stopped at its end and still at this one's start
 * (the first sample, taken at `startedAt`), else as sampled (`sighted`).
 */
export function frozenSinceOf(prevSince: number | null, startedAt: number, sighted: number | null): number | null {
  if (sighted === null) return null;
  return sighted <= startedAt && prevSince !== null ? prevSince : sighted;
}

/**
 * The whole server seen stopped at every sample since `allStoppedSince`, and for frozenMs since
 * that sighting or since the last answer, the later: nothing of it can answer. An answer read after
 * the sighting was sent before the stop (no process of the server ran since), so it only moves the
 * count's start. The shell ends a round at once when this holds, without waiting out its attempts'
 * deadlines.
 */
export function frozenLongEnough(allStoppedSince: number | null, lastAnswerAt: number, now: number, t: LivenessThresholds = LIVENESS_DEFAULTS): boolean {
  return allStoppedSince !== null && now - Math.max(allStoppedSince, lastAnswerAt) >= t.frozenMs;
}

/** SQLSTATE classes that mean the server cannot write: 53 insufficient resources, 58 system error. */
const writeBroken = (a: Attempt | null) => a?.kind === "error" && (a.sqlstate === null || /^(53|58|XX)/.test(a.sqlstate));

export function stepLiveness(prev: Liveness, o: LivenessObs, t: LivenessThresholds = LIVENESS_DEFAULTS): Liveness {
  const now = o.now;
  const any = answered(o.probe) || answered(o.fresh) || answered(o.write);
  const lastAnswerAt = any ? Math.max(prev.lastAnswerAt, o.answeredAt ?? now) : prev.lastAnswerAt;
  const walMoved = o.walWrittenAt !== null && prev.walWrittenAt !== null && o.walWrittenAt !== prev.walWrittenAt;
  const lastWalAt = walMoved ? now : prev.lastWalAt;
  const frozenSince = frozenSinceOf(prev.frozenSince, o.startedAt, o.stoppedSince);
  // Counted from the first failure's answer, not the round's start: one failure after a slow
  // connection is not cannotWriteMs of failures (review: a single transient 53200 was enough).
  const writeErrorSince = writeBroken(o.write) ? (prev.writeErrorSince ?? o.answeredAt ?? now) : null;
  // Kept only while the commit could not be tried because the fresh connection failed; a round
  // that tries none on purpose (not the leader, the server in recovery) clears it.
  const writeTimedOutSince = o.write?.kind === "timeout" ? (prev.writeTimedOutSince ?? o.startedAt) : o.write === null && o.fresh.kind !== "ok" ? prev.writeTimedOutSince : null;
  const disk = diskWarning(o.disks, t);
  const fullSince = disk?.full ? (prev.fullSince ?? now) : null;
  const quietMs = now - Math.max(lastAnswerAt, lastWalAt);
  // The whole server stopped: counted from the first sighting (or a later answer). Some of its
  // processes (a backend under a debugger, the postmaster alone): only when nothing at all answered
  // in this round and no WAL was written for frozenMs.
  const all = o.allStoppedSince;
  const stoppedFor = all !== null && frozenLongEnough(all, lastAnswerAt, now, t) ? Math.max(all, lastAnswerAt)
    : frozenSince !== null && !any && now - frozenSince >= t.frozenMs && now - lastWalAt >= t.frozenMs ? frozenSince : null;

  const next = (state: LivenessState, reason: string): Liveness => ({
    lastAnswerAt, lastWalAt, walWrittenAt: o.walWrittenAt ?? prev.walWrittenAt, frozenSince, writeErrorSince, writeTimedOutSince, fullSince,
    verdict: { state, reason, since: prev.verdict.state === state ? prev.verdict.since : sinceOf(state) },
  });
  const sinceOf = (state: LivenessState): number => {
    if (state === "stuck") return stoppedFor ?? frozenSince ?? Math.max(lastAnswerAt, lastWalAt);
    if (state === "cannot-write") return writeErrorSince ?? Math.max(lastAnswerAt, lastWalAt);
    if (state === "disk-full") return fullSince ?? now;
    return now;
  };

  if (stoppedFor !== null) {
    return next("stuck", `PostgreSQL processes are stopped (${o.stoppedAtEnd}) and answer nothing for ${secs(now - stoppedFor)}`);
  }
  if (!any && quietMs >= t.stuckMs) {
    return next("stuck", `no answer on the agent's connection nor on a fresh one, and no WAL written, for ${secs(quietMs)}`);
  }
  if (fullSince !== null && now - fullSince >= t.diskFullMs) return next("disk-full", disk!.text);
  if (writeErrorSince !== null && now - writeErrorSince >= t.cannotWriteMs) {
    return next("cannot-write", `the agent's heartbeat commit fails: ${(o.write as { error: string }).error}`);
  }
  // A commit that timed out and none completed since: the commits after it could not even be tried
  // when the fresh connection is refused (every slot taken by clients waiting on their own commits)
  // or hangs (review: that read as healthy for good). "The server answers" is any answer of the
  // round, the fresh connection's too: a probe that also hangs (its monitoring backend wedged, or
  // its pg_control read waiting behind a flush of pg_control that hangs with the WAL's) is no
  // progress either (review: with the probe required that read as busy for good).
  if (writeTimedOutSince !== null && any && now - lastWalAt >= t.stuckMs) {
    const fresh = o.write === null && o.fresh.kind !== "ok" ? `; the last one tried timed out, and a fresh connection for another ${o.fresh.kind === "timeout" ? "timed out" : `failed: ${o.fresh.error}`}` : "";
    return next("cannot-write", `no commit completes${fresh} and no WAL was written for ${secs(now - lastWalAt)} although the server answers queries`);
  }
  const slow = [o.probe, o.fresh, o.write].filter((a): a is Attempt => a !== null && (a.kind === "timeout" || a.ms > t.busyMs));
  if (slow.length > 0 || writeErrorSince !== null || frozenSince !== null) {
    const what = slow.map((a) => (a === o.probe ? "probe" : a === o.fresh ? "fresh connection" : "heartbeat commit") + (a.kind === "timeout" ? " timed out" : ` ${a.ms} ms`));
    if (writeErrorSince !== null) what.push(`heartbeat commit failed: ${(o.write as { error: string }).error}`);
    if (frozenSince !== null) what.push(`processes stopped: ${o.stoppedAtEnd}`);
    return next("busy", `slow but progressing: ${what.join(", ")}`);
  }
  return next("ok", disk ? `disk space low: ${disk.text}` : "");
}

/** Whether the leader must give up its primary because of this verdict. */
export function broken(v: Pick<Verdict, "state">): boolean {
  return v.state === "stuck" || v.state === "disk-full" || v.state === "cannot-write";
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}

/**
 * The standby a leader that gives up its primary hands over to: a voter that can be promoted (not nofailover, priority above 0),
 * connected, streaming, with the highest position (the one most likely to hold every acknowledged
 * write; the voters still refuse it if it is behind them, and the election then picks another).
 */
export function successorOf(candidates: readonly Candidate[], self: string, guard?: GuardView | null): string | null {
  const ready = standbysThatCouldLead(candidates, self, guard).filter((c) => c.report!.streaming);
  ready.sort((a, b) => comparePosition(b.report!.position, a.report!.position) || a.name.localeCompare(b.name));
  return ready[0]?.id ?? null;
}

/**
 * Whether another node could take over from this leader's primary: a voter that can be promoted
 * and runs as a standby, streaming or not (once the primary stopped, none streams from it), that
 * the voters would elect: not while the durability guard blocks failover to anyone but this node,
 * nor one behind its floor (election.ts upToDate; re-review: a full disk otherwise resigned into a
 * cluster where only this node could win, again and again, its server never started).
 */
export function takeoverPossible(candidates: readonly Candidate[], self: string, guard?: GuardView | null): boolean {
  return standbysThatCouldLead(candidates, self, guard).length > 0;
}

/** What of the durability guard decides whom the voters elect (election.ts upToDate). */
type GuardView = { block: boolean; holder?: string | null; floor: Position | null };

/** Promotable voters running as standbys that the voters would elect under `guard` (the successor too: re-review). */
function standbysThatCouldLead(candidates: readonly Candidate[], self: string, guard?: GuardView | null): Candidate[] {
  return candidates.filter((c) => c.id !== self && c.voter && !c.witness && !c.neverPromoted && c.report?.up && c.report.inRecovery &&
    (!guard?.block || guard.holder === c.id) && (!guard?.floor || comparePosition(c.report.position, guard.floor) >= 0));
}
