// What this node's PostgreSQL should do next, as a pure function of what the
// agent observed. One decision per monitoring round; the shell executes it,
// observes again and asks again. No I/O, no clock.
import { broken, type Verdict } from "./liveness.ts";
import { mayRestartInPlace } from "./timelines.ts";

/** The local server as observed this round. */
export interface LocalPg {
  /**
   * empty: missing or no files; present: a cluster we may use; foreign: another cluster's data;
   * unknown: a server not running, files, and no pg_control this node can read (another OS user's
   * cluster, a wrong path, a damaged directory): nothing says whose it is.
   */
  data: "empty" | "present" | "foreign" | "unknown";
  systemId: string | null;
  /** A postmaster serves the data directory (ours or adopted). */
  running: boolean;
  /** It answers queries. */
  up: boolean;
  inRecovery: boolean | null;
  /** host:port primary_conninfo points to, as we last wrote it. */
  upstream: string | null;
  /** The data was last a primary's (running: not in recovery; stopped: pg_control not "in recovery"). */
  wasPrimary: boolean;
  /** Running: the probe's. Stopped: pg_control's, or for a former primary the newest real history file's if higher. */
  timeline: number | null;
  /** A standby that has not streamed for a while although the primary is ready (diverged history). */
  stuck: boolean;
  /** Whether the running server can do its work (core/liveness.ts); null while not watched. */
  health?: Pick<Verdict, "state" | "reason"> | null;
  /** The data directory's or pg_wal's file system is full now (its description), else null. */
  diskFull?: string | null;
  /**
   * A pg_rewind of this data directory began to write and did not finish (store/rewind-marker.ts):
   * blocks of two histories, pg_control as before. It is replaced by a fresh clone, never started or rewound.
   */
  rewindUnfinished?: boolean;
  /**
   * A running standby whose replay PostgreSQL paused (14+) because its primary now runs one of the
   * ordered settings (core/restart-plan.ts) higher than this server: their names. Only a restart
   * raises them; until then it receives WAL it does not apply, and it cannot be promoted.
   */
  replayPausedFor?: readonly string[];
  /** How long the replay has been paused for those settings (ms). */
  replayPausedMs?: number;
  /**
   * A restore from a backup ([bootstrap] from_backup) whose recovery has not ended at its target
   * (store/restore-marker.ts): what it recovers to, and, when PostgreSQL ended the recovery short of
   * the target, what it said.
   */
  restore?: RestoreUnderWay | null;
  /**
   * This node created the data directory for the cluster (an initdb, a restore from a backup) and
   * the cluster's identity is not recorded yet (store/creation-marker.ts): a retry may go on with it.
   */
  createdHere?: boolean;
}

export interface RestoreUnderWay {
  /** "to <time>", "to LSN <lsn>", "to the end of the archive". */
  target: string;
  failed?: string;
}

/** The leader's PostgreSQL, from its last report over the mesh. */
export interface LeaderPg {
  id: string;
  /** host:port standbys stream from. */
  addr: string;
  /** Running, answering, not in recovery: a primary that can serve clones. */
  primaryReady: boolean;
  /** This node's slot exists on it. */
  slotReady: boolean;
  timeline: number;
  /**
   * The timeline its pg_control's last checkpoint names (its report's `checkpointTimeline`; null:
   * not reported). pg_rewind before PostgreSQL 16 takes a source's timeline from there: against a
   * primary promoted a moment ago it sees the old timeline and finds "no rewind required", so a former
   * primary would keep its diverged WAL and a stuck standby would be cloned afresh for nothing.
   */
  checkpointTimeline: number | null;
}

export interface HaInput {
  witness: boolean;
  /** This node holds a valid leader lease. */
  leading: boolean;
  /** This node won (or resumed) the term but a majority has not acknowledged it yet. */
  acquiringLease: boolean;
  leader: LeaderPg | null;
  local: LocalPg;
  /** The cluster's system identifier once any node has data (persisted, shared over the mesh). */
  clusterSystemId: string | null;
  /** Replication passwords are known here. */
  haveSecrets: boolean;
  /** Every voter reported, recently, an empty data directory and no initdb or clone under way. */
  nobodyHasData: boolean;
  /** Some other member reported data (or is creating it): an empty leader must give way. */
  othersHaveData: boolean;
  /** This node is in the voter set. */
  member: boolean;
  fromExisting: boolean;
  /** rejoin.auto: a former primary rewinds by itself; otherwise it waits for `pgherd rejoin`. */
  rejoinAuto: boolean;
  /** A rebuild asked for: by `pgherd rejoin` (clone: skip pg_rewind), or by the loop itself (auto: a standby that failed to start three times). */
  rejoinRequested: null | RejoinRequest;
  /** Maintenance mode: monitor and report, change nothing (fencing stays: it is what keeps one primary). */
  paused: boolean;
  /** A human asked this node to take over (`pgherd failover --to`): promote even while paused. */
  promotionRequested?: boolean;
  /** The standby a resigning leader hands over to (core/liveness.ts successorOf), null: let the election choose. */
  successor?: string | null;
  /** Another voter that can be promoted runs as a standby, streaming or not (core/liveness.ts takeoverPossible). */
  takeoverPossible?: boolean;
  /** [hooks] pre_promote's verdict in this term (absent: no hook; promote). */
  prePromote?: PromoteCheck;
  /** The highest timeline number a leader reserved for a promotion (core/timelines.ts); absent: none yet. */
  reservedTimeline?: number;
  /**
   * A follower whose replay is paused for settings waits this long (ms) before its restart: its
   * place among the database members, so standbys paused together restart one after another and
   * the synchronous ones are not all down at once.
   */
  restartStagger?: number;
}

/** pre_promote: not run yet in this term, passed, or vetoed (why). */
export type PromoteCheck = "allowed" | "unchecked" | { vetoed: string };

export type HaAction =
  | { kind: "none"; role: "primary" | "standby" | "witness" }
  | { kind: "wait"; reason: string }
  | { kind: "refuse"; reason: string }
  | { kind: "initdb" }
  | { kind: "start-primary"; adopt: boolean }
  | { kind: "promote" }
  | { kind: "check-promote" }
  | { kind: "fence"; reason: string }
  | { kind: "clone"; from: string }
  | { kind: "rewind"; from: string }
  /**
   * upstream null: the leader's own stopped server, started to be promoted. ownTimeline: a former
   * primary's timeline, the only one it recovers on (PostgreSQL's walk to the newest timeline could
   * find another leader's history, forked before this server's WAL ends, and refuse to start).
   */
  | { kind: "start-standby"; upstream: string | null; ownTimeline?: number }
  | { kind: "repoint"; upstream: string }
  /**
   * A restore from a backup goes on (LocalPg.restore): a stopped server is started again with its
   * recovery target, the agent waits while the replay advances, and once PostgreSQL promoted itself
   * at the target the bootstrap ends (recovery settings removed, the cluster's identity recorded).
   */
  | { kind: "resume-restore" }
  /** A running standby's fast stop and start (replayPausedFor). */
  | { kind: "restart-standby"; reason: string }
  | { kind: "resign"; reason: string; to?: string };

export type RejoinRequest = { clone: boolean; auto?: boolean };

const UNFINISHED = "a pg_rewind of this data directory began to write and did not finish (it holds blocks of two histories)";

export function decideHa(x: HaInput): HaAction {
  const d = decideUnpaused(x);
  if (!x.paused || d.kind === "none" || d.kind === "wait" || d.kind === "refuse" || d.kind === "fence") return d;
  if (x.rejoinRequested && !x.rejoinRequested.auto && (d.kind === "rewind" || d.kind === "clone")) return d; // a human asked for it
  if (x.promotionRequested && (d.kind === "promote" || d.kind === "start-primary" || d.kind === "check-promote" || d.kind === "restart-standby" || (d.kind === "start-standby" && d.upstream === null))) return d;
  return { kind: "wait", reason: `paused: would ${d.kind}${"from" in d ? ` from ${d.from}` : "upstream" in d && d.upstream ? ` ${d.upstream}` : ""}` };
}

function decideUnpaused(x: HaInput): HaAction {
  if (x.witness) return { kind: "none", role: "witness" };
  const l = x.local;
  if (l.data === "foreign") {
    const why = `the data directory holds another cluster (system identifier ${l.systemId ?? "unknown"}, this cluster's is ${x.clusterSystemId})`;
    // Its leadership would keep the cluster without a primary: a node with the cluster's data leads (review).
    if (x.leading) return { kind: "resign", reason: `${why}: another node must lead`, ...(x.successor ? { to: x.successor } : {}) };
    return { kind: "refuse", reason: `${why}: refusing to touch it` };
  }
  if (l.data === "unknown") {
    // Never rewound, nor cloned over (a failed rewind falls back to a clone, which moves the
    // directory aside and prunes it with the old copies): only an operator's `rejoin --force-clone`.
    const cloneAsked = x.rejoinRequested && !x.rejoinRequested.auto && x.rejoinRequested.clone;
    if (!cloneAsked || x.leading) {
      const why = "the data directory holds files but no pg_control this node can read (another OS user's cluster, a wrong data_dir, a damaged directory)";
      if (x.leading && x.clusterSystemId !== null) return { kind: "resign", reason: `${why}: another node must lead`, ...(x.successor ? { to: x.successor } : {}) };
      return { kind: "refuse", reason: `${why}: refusing to touch it; empty it, or run \`pgherd rejoin --force-clone\` to replace it with a clone` };
    }
  }
  if (x.leading) return asLeader(x);
  // An agent restarted on the primary's host resumes its term and needs one heartbeat round
  // before it may act: leave the server alone meanwhile (the lease rule still bounds this).
  if (x.acquiringLease) return { kind: "wait", reason: "leader of this term, waiting for a majority to acknowledge" };
  return asFollower(x);
}

function asLeader(x: HaInput): HaAction {
  const l = x.local;
  if (l.data === "empty") {
    if (x.clusterSystemId !== null || x.othersHaveData) return { kind: "resign", reason: "this node has no data but the cluster has: another node must lead" };
    if (x.fromExisting) return { kind: "wait", reason: "bootstrap.from_existing is set but the data directory is empty" };
    if (!x.nobodyHasData) return { kind: "wait", reason: "waiting for every voter to report its data directory before creating the cluster" };
    return { kind: "initdb" };
  }
  if (x.clusterSystemId === null && !x.fromExisting && !(x.nobodyHasData && (l.createdHere || l.restore))) {
    // Data here but the cluster never recorded one: only adopt when told to, or go on with the
    // creation this node began (its initdb's start or role creation failed, the agent was killed in
    // between). Review: any directory was taken once the other voters reported empty ones, so a
    // stray cluster in data_dir became the cluster's primary without bootstrap.from_existing.
    return { kind: "refuse", reason: "the data directory holds a cluster that pgherd did not create; set bootstrap.from_existing = true to adopt it" };
  }
  if (x.clusterSystemId === null && x.fromExisting && !x.nobodyHasData) {
    // Adopted only while every other voter reported an empty data directory: one that has data too
    // (a copy of this server, a second host given from_existing) makes the choice a guess. Review:
    // the first leader adopted its own, a replica was promoted, and the real primary, serving as a
    // standalone server meanwhile, was fenced and rewound onto it (its writes since lost).
    if (x.othersHaveData) return { kind: "refuse", reason: "bootstrap.from_existing: another node holds data too (or is creating it), and only one server may be adopted: empty the data directories of the others (and set from_existing on the adopted one only)" };
    return { kind: "wait", reason: "bootstrap.from_existing: waiting for every voter to report an empty data directory before adopting this one" };
  }
  // Before any promotion, start as the primary and health rule: a restore from a backup ends only
  // where PostgreSQL's own recovery ends it, at its target (review: a bootstrap cut short was
  // promoted as a standby, which dropped its target, and the next start replayed past it).
  if (l.restore) return restoring(l, l.restore);
  const handOver = x.successor ? { to: x.successor } : {};
  if (!l.running && l.rewindUnfinished) return { kind: "resign", reason: `${UNFINISHED}: another node must lead`, ...handOver };
  if (!l.running) {
    // A server that stopped on a full disk would only stop again: a standby with its own disk takes
    // over (streaming or not: none streams from a stopped primary: re-review). Without one, this node
    // would win again and resign again, never starting the server, whose start is what removes the
    // temporary files a killed query left (review): start it.
    if (l.diskFull && x.clusterSystemId !== null && (x.successor || x.takeoverPossible)) return { kind: "resign", reason: `PostgreSQL stopped and its disk is full (${l.diskFull})`, ...handOver };
    // A stopped standby's data is not started as the primary: without standby.signal PostgreSQL
    // only finishes crash recovery and writes on the old primary's timeline, whose WAL past this
    // point (the old primary's, never acknowledged) then shares timeline and LSNs with different
    // data: positions compare as equal histories and pg_rewind finds "no rewind required". It starts
    // as a standby with no upstream and the next round promotes it (pre_promote first): a new timeline.
    if (!l.wasPrimary && x.clusterSystemId !== null) return { kind: "start-standby", upstream: null };
    // A former primary whose timeline a later reservation went past is promoted the same way: its
    // WAL on the old timeline must not compare as part of another leader's history.
    if (x.clusterSystemId !== null && !mayRestartInPlace(l.timeline, x.reservedTimeline)) return { kind: "start-standby", upstream: null, ...(l.timeline !== null ? { ownTimeline: l.timeline } : {}) };
    return { kind: "start-primary", adopt: x.clusterSystemId === null && x.fromExisting };
  }
  // Alive but unable to work (stuck, disk full, cannot write): a standby holding every acknowledged
  // write takes over; losing the lease fences this server (killed if it does not react).
  // A full disk with no standby running to take over: the fence would only stop the server (and
  // its queries' temporary files stay until a start), and this node would lead again (review).
  if (l.health?.state === "disk-full" && !x.successor && !x.takeoverPossible) return { kind: "wait", reason: `PostgreSQL disk-full: ${l.health.reason}; no standby runs to take over, so it keeps running: free space on this host` };
  if (l.health && broken(l.health)) return { kind: "resign", reason: `PostgreSQL ${l.health.state}: ${l.health.reason}`, ...handOver };
  if (!l.up) return { kind: "wait", reason: "PostgreSQL is starting or does not answer (watching whether it is stuck)" };
  // A paused replay cannot be promoted (PostgreSQL refuses until the settings are raised): restart first.
  if (l.inRecovery && l.replayPausedFor?.length) return restartPaused(l.replayPausedFor);
  if (l.inRecovery) return promoteStep(x.prePromote ?? "allowed");
  return { kind: "none", role: "primary" };
}

/**
 * A leader's data directory under a restore from a backup. No other node has data to take over (the
 * cluster is being created), so a server that does not work is waited for or refused, never resigned.
 */
function restoring(l: LocalPg, r: RestoreUnderWay): HaAction {
  const what = `the restore from the backup (recovering ${r.target}) has not ended here`;
  // Out of recovery: PostgreSQL ended it itself, which it does only at the target (the end of the
  // archive when that is the target; a target not reached is a FATAL, below). The bootstrap's rest follows.
  if (l.running && l.up && l.inRecovery === false) return { kind: "resume-restore" };
  if (r.failed) {
    return {
      kind: "refuse",
      reason: `${what}: ${r.failed}. Neither started again nor promoted (a start without its target would replay past it): to restore again, set [bootstrap] target_time or target_lsn to a point the archive reaches, empty the data directory and restart the agent`,
    };
  }
  if (l.running && !l.up) return { kind: "wait", reason: `${what}: PostgreSQL replays the archive and answers once consistent; nothing promotes it before its target` };
  // Running in recovery: waited for while the replay advances. Stopped (an agent or host restart):
  // started again with the same target.
  return { kind: "resume-restore" };
}

function restartPaused(names: readonly string[]): HaAction {
  return { kind: "restart-standby", reason: `replay paused: the primary runs ${names.join(", ")} higher than this standby, which only a restart raises` };
}

/** A standby this leader would promote: pre_promote first, and its veto hands the leadership on. */
function promoteStep(c: PromoteCheck): HaAction {
  if (c === "allowed") return { kind: "promote" };
  if (c === "unchecked") return { kind: "check-promote" };
  return { kind: "resign", reason: `${c.vetoed}: vetoed this node's promotion, another standby must take over` };
}

function asFollower(x: HaInput): HaAction {
  const l = x.local;
  if (l.running && l.up && l.inRecovery === false) {
    // A standalone server waiting to be adopted is not the cluster's yet: leave it serving.
    if (x.fromExisting && x.clusterSystemId === null) return { kind: "wait", reason: "standalone server to adopt (bootstrap.from_existing): waiting for the leadership" };
    // A primary without the lease accepts writes nobody may acknowledge any more.
    return { kind: "fence", reason: "this node is not the leader but its PostgreSQL runs as a primary" };
  }
  if (!x.leader) return l.running ? { kind: "wait", reason: "no leader: keeping PostgreSQL as it is" } : { kind: "wait", reason: "no leader elected yet" };
  if (!x.member) return { kind: "wait", reason: "waiting for the leader to add this node as a voter" };
  if (!x.haveSecrets) return { kind: "wait", reason: "waiting for the replication credentials from the leader" };
  if (l.data === "empty") {
    if (!x.leader.primaryReady) return { kind: "wait", reason: "waiting for the leader's primary before cloning" };
    if (!x.leader.slotReady) return { kind: "wait", reason: "waiting for the primary to create this node's replication slot" };
    return { kind: "clone", from: x.leader.addr };
  }
  if (x.clusterSystemId !== null && l.systemId !== null && l.systemId !== x.clusterSystemId) {
    return { kind: "refuse", reason: `the data directory holds system identifier ${l.systemId}, the cluster's is ${x.clusterSystemId}` };
  }
  // A rebuild the loop asked for by itself (a standby whose starts fail) is an automatic one: only
  // with rejoin.auto, like every other rebuild nobody asked for (review: it replaced the data
  // directory of a node whose operator had turned rejoin.auto off).
  const asked = x.rejoinRequested && (!x.rejoinRequested.auto || x.rejoinAuto) ? x.rejoinRequested : null;
  if (l.rewindUnfinished) {
    // Not rewound again either: pg_rewind would read the old pg_control and trust the mixed blocks.
    if (!x.leader.primaryReady) return { kind: "wait", reason: `${UNFINISHED}: waiting for the leader's primary to clone from` };
    if (!x.rejoinAuto && !asked) return { kind: "wait", reason: `${UNFINISHED}: rejoin.auto is off, run \`pgherd rejoin --force-clone\`` };
    return { kind: "clone", from: x.leader.addr };
  }
  if (asked) {
    if (!x.leader.primaryReady) return { kind: "wait", reason: "rejoin requested: waiting for the leader's primary" };
    if (asked.clone) return { kind: "clone", from: x.leader.addr };
    return rewindSourceWait(x.leader) ?? { kind: "rewind", from: x.leader.addr };
  }
  // A former primary may hold WAL the new primary never had: never start it as a standby
  // before pg_rewind checked the histories (it says "no rewind required" when they agree).
  const diverged = (!l.running && l.wasPrimary) || (l.running && l.stuck);
  if (diverged) {
    if (!x.leader.primaryReady) return { kind: "wait", reason: "former primary: waiting for the new primary before rewinding" };
    if (!x.rejoinAuto) return { kind: "wait", reason: "former primary: rejoin.auto is off, run `pgherd rejoin`" };
    return rewindSourceWait(x.leader) ?? { kind: "rewind", from: x.leader.addr };
  }
  if (!l.running) return { kind: "start-standby", upstream: x.leader.addr };
  if (!l.up) return { kind: "wait", reason: "PostgreSQL is starting" };
  if (l.replayPausedFor?.length) {
    const left = (x.restartStagger ?? 0) - (l.replayPausedMs ?? 0);
    if (left > 0) return { kind: "wait", reason: `replay paused: the primary runs ${l.replayPausedFor.join(", ")} higher than this standby; restarting in turn, in ${Math.ceil(left / 1000)} s` };
    return restartPaused(l.replayPausedFor);
  }
  if (l.upstream !== x.leader.addr) return { kind: "repoint", upstream: x.leader.addr };
  return { kind: "none", role: "standby" };
}

/** A wait while the leader's primary is no source pg_rewind reads right yet (its checkpoint names an older timeline). */
function rewindSourceWait(leader: LeaderPg): HaAction | null {
  if (leader.checkpointTimeline === null || leader.checkpointTimeline >= leader.timeline) return null;
  return { kind: "wait", reason: `waiting to rewind: the new primary's last checkpoint still names timeline ${leader.checkpointTimeline}, not its ${leader.timeline} (pg_rewind would read that)` };
}

/**
 * Whether a stopped server's pg_control says it last ran as a primary. Only a standby is ever in
 * archive recovery (standby.signal) or shuts down in recovery; "in crash recovery" is a primary
 * that crashed and did not finish recovering (it has WAL no standby may have): it must be rewound
 * before it follows anyone, like one "in production" or "shut down".
 */
export function controlSaysPrimary(state: string): boolean {
  return state !== "in archive recovery" && state !== "shut down in recovery";
}

/**
 * A stopped server's data was last a primary's, from durable facts only: a standby's data always
 * holds standby.signal (pgherd writes it before every standby start, pg_rewind leaves "in archive
 * recovery") and a pg_control state only a standby reaches. Anything else (no standby.signal, or a
 * primary's state whatever the signal file says: a start as a standby that never happened) is
 * rewound before it follows anyone. With pg_control unreadable (null: pg_controldata failed or
 * timed out on a stalled disk) the signal file alone says it: no standby.signal is a primary's data.
 * One exception: standby.signal with backup_label is a copy that has not started yet (a clone,
 * a restore, a rewound directory: pgherd writes standby.signal into each before it is used), whose
 * pg_control holds its source's state ("in production" for a clone): a standby's data. (A primary
 * that crashed during an exclusive backup, PostgreSQL ≤ 14, also leaves backup_label; pgherd takes
 * none, and standby.signal is written only where pgherd decided a standby start.)
 * ownTimelineStart: a former primary this node started as a standby on its own timeline, to promote
 * it, and did not see run as a primary (store/own-timeline-marker.ts): "in archive recovery" and
 * standby.signal since that start, it is still a former primary's data (review: a start after a
 * restart followed the newest timeline over pages flushed past the fork).
 */
export function dataWasPrimary(controlState: string | null, standbySignal: boolean, backupLabel = false, ownTimelineStart = false): boolean {
  // A copy not started yet first: a clone swapped in before the marker of the directory it
  // replaced was removed (an agent killed in between) is a standby's data (re-review).
  if (standbySignal && backupLabel) return false;
  if (ownTimelineStart) return true;
  return !standbySignal || (controlState !== null && controlSaysPrimary(controlState));
}

/**
 * Whether `d` follows the leader it was decided on: a repoint to it, a start as its standby, a rewind
 * or a clone from it (each ends streaming from it). The round carries such a decision out only while
 * that node still leads and no detach for a vote holds following back (src/agent/pg/round.ts): the
 * leader was read before the round's observations, and leadership may have moved meanwhile.
 */
export function followsLeader(d: HaAction): boolean {
  return d.kind === "repoint" || d.kind === "rewind" || d.kind === "clone" || (d.kind === "start-standby" && d.upstream !== null);
}

/**
 * Whether the round after `d` (carried out) runs at once instead of a period later: the server runs as
 * the primary now (a start in place, a promotion, a restore from a backup that ended at its target)
 * or is about to be promoted (a leader's stopped standby started without an upstream). The report then says so at once: the standbys that wait for
 * the leader's primary to be ready, and what points clients at it ([pgpool], the API's role checks),
 * do not wait a period for it.
 */
export function roundAgainAfter(d: HaAction): boolean {
  return d.kind === "start-primary" || d.kind === "promote" || d.kind === "resume-restore" || (d.kind === "start-standby" && d.upstream === null);
}

/** Whether the backoff after a failed action may hold `d` back: never a fence (a primary without the lease stops now). */
export function waitsForBackoff(d: HaAction): boolean {
  return d.kind !== "fence";
}

/**
 * Whether a failed `d` may have left a server that becomes a primary: a start as the primary whose
 * pg_ctl timed out while crash recovery goes on, a promotion whose pg_promote went through before a
 * later step failed, a restore's recovery that PostgreSQL ends with its own promotion. The fence that follows (a resign, a lost lease) must then stop the server,
 * whatever the round observed before it acted. A promotion that failed before pg_promote was sent
 * (`beforePromote`: the timeline reservation, the files, the synchronous names' barrier) left the
 * standby it was: a fence that stopped it would take a healthy standby down for nothing.
 */
export function failureMayLeavePrimary(d: HaAction, beforePromote = false): boolean {
  if (d.kind === "promote") return !beforePromote;
  return d.kind === "start-primary" || d.kind === "resume-restore" || (d.kind === "start-standby" && d.upstream === null);
}
