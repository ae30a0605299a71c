// Deterministic simulator for the election core: a seeded schedule of message
// loss, delay, reordering, duplication, (asymmetric) partitions, crashes with
// restarts from persisted state, frozen processes, persists that hold the
// process for seconds (an fsync on a busy disk), clock-rate drift and membership changes. Invariants are checked after every step; a violation
// throws SimViolation carrying the seed and the trace tail.
//
// Replication is modelled apart from the election, as PostgreSQL runs it: a standby
// streams from its upstream over its own connection (cut by partitions, not by a
// frozen agent) until the shell detaches it (Ready.detach, which takes 0–detachMaxMs
// and sometimes fails or hangs past the core's bound) or re-points it to the leader
// its election core follows; a primary takes client writes while its lease interval
// is open, also while its agent is frozen (the unfenced worst case).
import type { Consensus } from "../../src/agent/election-driver.ts";
import { SyncCap } from "../../src/agent/sync-cap.ts";
import type { Logger } from "../../src/log.ts";
import { Election, type Persistent, type Ready } from "../../src/core/election.ts";
import { newerReport, syncSet as factsSyncSet, standbyMembers, type FactsSnapshot, type PeerReport } from "../../src/core/cluster-facts.ts";
import { syncNamesFor } from "../../src/core/durability.ts";
import { exclusionRecord, type Exclusion, type Heard, type SyncSet } from "../../src/core/sync-exclusion.ts";
import type { ElectionMsg, Guard, Membership } from "../../src/core/messages.ts";
import { bigIntToLsn, lsnToBigInt, type Position, comparePosition, ZERO_POSITION } from "../../src/core/position.ts";
import { quorumMin } from "../../src/core/quorum.ts";

/** A position's LSN as a number, parsed once per position (positions are never changed in place). */
const lsns = new WeakMap<Position, bigint>();
function lsnOf(p: Position): bigint {
  let v = lsns.get(p);
  if (v === undefined) lsns.set(p, (v = lsnToBigInt(p.lsn)));
  return v;
}

export interface SimParams {
  seed: number;
  initial: number;       // voters at start
  spares: number;        // extra nodes that may be added
  witnesses: number;     // how many of the initial voters are witnesses
  /** How many of the initial voters after the witnesses hold data but cannot lead (nofailover, priority 0). */
  nofailover: number;
  faultMs: number;       // simulated time with faults
  settleMs: number;      // bound for a leader after faults stop
  heartbeatMs: number; leaseMs: number; timeoutMs: number; jitterMs: number;
  maxDrift: number;      // clock rate in [1-maxDrift, 1+maxDrift]
  fenceMs: number;       // fencing time budget added after an expired lease
  detachMaxMs: number;   // a detach takes uniform [0, detachMaxMs]; the standby streams meanwhile
  detachFailRate: number; // share of detaches that fail (replication may go on)
  detachHangRate: number; // share that report only after the core's detachTimeoutMs
  detachTimeoutMs: number;
  /** A new agent's first monitoring round reports its position after uniform [0, firstRoundMaxMs] (probe deadline, pg_controldata). */
  firstRoundMaxMs: number;
  /**
   * Deliberate defects, to show the invariants catch them: "vote-before-detach" reports `detached` at
   * once; "no-timeline-reservation" promotes without reserving its timeline number first, so
   * PostgreSQL's rule (the highest number the node knows + 1) may give two histories one number;
   * "zero-position-at-boot" feeds the core ZERO as a new agent's position before its first round
   * (what the core assumed before it waited for the first report); "name-without-echo": the fill
   * names a standby that cannot lead as soon as it wants it, without waiting for its echo of a
   * message whose record no longer names it (core/sync-exclusion.ts mayNameCannotLead), so the
   * standby may still vote capped below commits it acknowledged; "async-before-block-stored": a
   * primary the agent already counts degraded (a voter change marks it so first) runs with "" before
   * a majority stored its block (core/durability.ts planDurability before 5 December).
   */
  mutation?: "vote-before-detach" | "no-timeline-reservation" | "zero-position-at-boot" | "name-without-echo" | "confirm-before-walsenders" | "cannot-lead-votes-zero" | "async-before-block-stored";
}

export const DEFAULT_PARAMS: Omit<SimParams, "seed"> = {
  initial: 3, spares: 2, witnesses: 0, nofailover: 0, faultMs: 40_000, settleMs: 20_000,
  heartbeatMs: 150, leaseMs: 1000, timeoutMs: 1500, jitterMs: 300, maxDrift: 0.02, fenceMs: 400,
  detachMaxMs: 150, detachFailRate: 0.05, detachHangRate: 0.03, detachTimeoutMs: 3000, firstRoundMaxMs: 3500,
};

export class SimViolation extends Error {}

/**
 * Vary the cluster shape with the seed so one run covers 3 and 5 voters, witnesses and spares,
 * standbys that cannot lead (none in three quarters of the schedules; one, or two of five; in 3-voter
 * clusters also two, or one beside a witness: every standby cannot lead, the fill names them); and
 * the first monitoring round of a new agent: slow (up to firstRoundMaxMs) in half the schedules,
 * at once in the other half. A slow first round also keeps a restarted voter out of elections, so
 * the restart quiet periods (S5) are put to the test only where it is quick.
 */
export function paramsFor(seed: number): SimParams {
  const shape = seed % 4;
  return {
    ...DEFAULT_PARAMS,
    seed,
    initial: shape === 3 ? 5 : 3,
    spares: shape === 3 ? 1 : 2,
    witnesses: shape === 1 ? 1 : 0,
    nofailover: [0, 0, 0, 0, 0, 0, shape === 3 ? 2 : 1, shape === 3 ? 1 : shape === 1 ? 1 : 2][Math.floor(seed / 8) % 8]!,
    firstRoundMaxMs: Math.floor(seed / 4) % 2 === 0 ? DEFAULT_PARAMS.firstRoundMaxMs : 0,
  };
}

/** mulberry32: small, fast, good enough for schedules. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One timeline of a history: its number (what positions compare), identity, start and the term that made it. */
interface Seg { uid: number; tl: number; from: bigint; term: number }
/** A write: where it went, on which timeline instance. */
interface Write { pos: Position; uid: number }

/**
 * synchronous_standby_names as PostgreSQL holds it: `ANY k (list)`, or "" (`async`: a degraded
 * primary, or k = 0), under which no walsender is synchronous.
 */
interface Names { list: string[]; k: number; async: boolean }
const namesKey = (x: Names) => (x.async ? "" : `${x.k}:${x.list.join()}`);
/** Whether a walsender of standby `sb` that took `v` counts itself synchronous (its sync_priority > 0). */
const countsItself = (v: Names | undefined, sb: string) => !!v && !v.async && v.list.includes(sb);

/** The agents' state message, as far as the rule for standbys that cannot lead reads it (src/agent/agent.ts broadcastState). */
interface SimState { t: "sim-state"; role: "database" | "witness"; nofailover: boolean; promotable: boolean; epoch: number; seq: number; heard?: Heard; exclusion: Exclusion | null }

interface Node {
  id: string;
  canLead: boolean;
  witness: boolean;                                             // votes, holds no data
  /** The agent's cap on its voting position and its state messages' numbers (the real src/agent/sync-cap.ts); null while crashed. */
  cap: SyncCap | null;
  lastLeadership: string;                                       // leader/term last seen: the agent refeeds its position on a change
  reports: Map<string, PeerReport>;                             // peers' last state messages (this agent run's)
  bootLocal: number;                                            // this agent's start (local ms)
  roundAt: number;                                              // next agent round: state message out, a primary's names
  /** PostgreSQL's synchronous_standby_names as planned, with its generation (a new one at every change, start, promotion). */
  names: Names & { gen: number };
  /** The standbys the last primary round planned to name (what counts as streaming, also while the names in force are ""). */
  planned: string[];
  /** Degraded, enough planned standbys stream again: the names go back in force before the block lifts (the agent's barrier). */
  resyncing: boolean;
  /** The names each walsender of this primary took last (the reload it processed, or its start): what it counts by. */
  wsView: Map<string, Names>;
  /** The agent's confirmation that names of one generation are in force for every walsender, at this position. */
  confirmed: { gen: number; at: Position } | null;
  pgRun: number;                                                // PostgreSQL's run (its walsenders): a new one at each start and promotion
  disk: Persistent;
  el: Election | null;     // null while crashed
  offset: number; rate: number;
  pausedUntil: number;
  wakeGen: number;
  lease: { term: number; start: number; end: number } | null;   // open lease interval (real ms)
  acksSeen: Map<string, number>; ackTerm: number;               // independent lease bookkeeping
  data: Position;                                               // the node's data position: survives crashes, like PGDATA
  /** The history `data` lies on: each promotion's timeline with a unique uid (numbers may repeat). */
  line: Seg[];
  /** A promotion waiting for its timeline reservation to be stored by a majority (the shell's promote). */
  reserving: { term: number; next: number } | null;
  lastHb: { from: string; at: number } | null;                  // last WAL received, from whom
  upstream: string | null;                                      // PostgreSQL streams from it (primary_conninfo): survives crashes
  inc: number;                                                  // agent process incarnation
  fed: Position | null;                                         // the position last fed to the core (null: none yet by this agent)
  /** PostgreSQL is not running: a crashed host's, until its new agent's first monitoring round starts it. */
  pgDown: boolean;
  feedAt: number;                                               // next monitoring round (real ms)
  detaching: number;                                            // detaches in flight: they hold the monitoring round
  /** The furthest data received from each node streamed from directly: what this standby reported
   *  to that walsender. A cascaded copy counts for no primary's synchronous commit (PostgreSQL). */
  recv: Map<string, Write>;
  degraded: boolean;                                            // leader emulation: writes acked without k standbys
}

type QEvent =
  | { k: "msg"; to: string; from: string; msg: ElectionMsg | SimState; inc?: number }  // inc: held by a frozen process
  | { k: "ws"; id: string; standby: string; pg: number }                   // a walsender of id's PostgreSQL (run pg) takes the reload
  | { k: "wake"; id: string; gen: number }
  | { k: "detached"; id: string; inc: number; term: number; ok: boolean }
  | { k: "sent"; id: string; inc: number }                                     // the shell's report after a persist
  | { k: "repl"; id: string }
  | { k: "fault" };

interface Interval { node: string; term: number; start: number; end: number }

export interface SimResult {
  seed: number; leadersElected: number; maxTerm: number; minGapMs: number;
  settleMs: number; steps: number; membershipChanges: number; violationsChecked: number;
  ackedWrites: number; leadersChecked: number;
  detaches: number; detachesFailed: number; detachesHung: number; votesRefusedForDetach: number;
  /** Votes and pre-votes refused because the voter's agent had not reported its position yet. */
  votesRefusedPositionUnknown: number;
  /** Promotions, and those that went past a timeline number reserved by another leader (placeholders). */
  promotions: number; promotionsAboveReservation: number;
  /** Persists that held their process (SLOW_PERSIST), and candidacies among them: the shell's `sent` moved their round. */
  slowPersists: number; slowCandidacies: number;
  /** Positions a standby that cannot lead fed capped below its own; primary rounds that named one through the fill; records sent. */
  cappedFeeds: number; fillNamed: number; records: number;
  /** Resigns that named a target, and those after which the target was the next leader elected. */
  transfers: number; transfersToTarget: number;
}

export function runSim(p: SimParams): SimResult {
  const r = rng(p.seed);
  const trace: string[] = [];
  const log = (s: string) => { trace.push(`${t.toFixed(1)} ${s}`); if (trace.length > 400) trace.shift(); };
  const fail = (what: string): never => {
    const states = [...nodes.values()].map((n) => {
      if (!n.el) return `${n.id}: crashed`;
      const st = n.el.status(localOf(n, t));
      return `${n.id}: ${st.role} term=${st.term} voted=${st.votedFor} leader=${st.leader} members=v${st.membership?.term}.${st.membership?.index}[${st.membership?.voters.join(",")}] pos=${st.position.timeline}/${st.position.lsn} guard=${JSON.stringify(st.guard)}`;
    });
    throw new SimViolation(`seed ${p.seed}: ${what}\n  nodes:\n    ${states.join("\n    ")}\n  replay: SIM_SEED=${p.seed} npx bun test test/core/election.sim.test.ts\n  trace tail:\n    ${trace.slice(-60).join("\n    ")}`);
  };

  // ---- event queue (binary heap on (time, seq))
  let t = 0;
  let seq = 0;
  const heap: Array<{ at: number; s: number; ev: QEvent }> = [];
  const push = (at: number, ev: QEvent) => {
    heap.push({ at, s: seq++, ev });
    let i = heap.length - 1;
    while (i > 0) {
      const j = (i - 1) >> 1;
      const a = heap[i]!, b = heap[j]!;
      if (b.at < a.at || (b.at === a.at && b.s < a.s)) break;
      heap[i] = b; heap[j] = a; i = j;
    }
  };
  const pop = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, rr = l + 1;
        let m = i;
        const lt = (x: number, y: number) => heap[x]!.at < heap[y]!.at || (heap[x]!.at === heap[y]!.at && heap[x]!.s < heap[y]!.s);
        if (l < heap.length && lt(l, m)) m = l;
        if (rr < heap.length && lt(rr, m)) m = rr;
        if (m === i) break;
        const tmp = heap[i]!; heap[i] = heap[m]!; heap[m] = tmp; i = m;
      }
    }
    return top;
  };

  // ---- nodes
  // Real node ids (16 hex characters): the leader refuses to add anything else.
  const ids = Array.from({ length: p.initial + p.spares }, (_, i) => String(i + 1).padStart(16, "0"));
  const initialVoters = ids.slice(0, p.initial);
  const membership0: Membership = { term: 0, index: 1, voters: initialVoters };
  const nodes = new Map<string, Node>();
  const localOf = (n: Node, real: number) => n.offset + n.rate * real;
  const realOf = (n: Node, local: number) => (local - n.offset) / n.rate;
  const newClock = (n: Node) => {
    n.rate = 1 - p.maxDrift + 2 * p.maxDrift * r();
    n.offset = Math.floor(r() * 1e6);
  };
  const boot = (n: Node) => {
    newClock(n);
    n.el = new Election(
      {
        id: n.id, canLead: n.canLead, heartbeatMs: p.heartbeatMs, leaseMs: p.leaseMs, timeoutMs: p.timeoutMs, jitterMs: p.jitterMs, fenceMs: p.fenceMs, maxDrift: p.maxDrift, random: r,
        detachBeforeVote: !n.witness, detachTimeoutMs: p.detachTimeoutMs,
      },
      structuredClone(n.disk), localOf(n, t));
    n.acksSeen = new Map(); n.ackTerm = -1; n.inc++; n.detaching = 0;
    // The agent's own state: the run's epoch is its incarnation (above every earlier run's, store/run-epoch.ts).
    const el = n.el;
    const consensus = {
      status: () => el.status(localOf(n, t)),
      setPosition: (position: Position) => { if (n.el === el) schedule(n, el.step({ type: "position", now: localOf(n, t), position })); return Promise.resolve(); },
    } as unknown as Consensus;
    const quiet = () => undefined;
    const capLog = { debug: quiet, info: (m: string) => log(`${n.id} ${m}`), warn: (m: string) => log(`${n.id} ${m}`), error: quiet, success: quiet } as unknown as Logger;
    n.cap = new SyncCap({ role: n.witness ? "witness" : "database", tags: { nofailover: !n.canLead && !n.witness }, priority: 1 } as unknown as ConstructorParameters<typeof SyncCap>[0], n.id, n.inc, () => consensus, capLog, () => localOf(n, t));
    n.lastLeadership = "";
    n.reports = new Map(); n.bootLocal = localOf(n, t); n.roundAt = t + r() * 500; n.confirmed = null;
    n.pausedUntil = -1; // a new process, not the frozen one
    // its first monitoring round reports the position (replicate()), and starts a crashed host's PostgreSQL
    n.fed = null;
    n.feedAt = t + r() * p.firstRoundMaxMs;
    if (p.mutation === "zero-position-at-boot") schedule(n, n.el.step({ type: "position", now: localOf(n, t), position: ZERO_POSITION }));
  };
  for (const [i, id] of ids.entries()) {
    const n: Node = {
      id, canLead: i >= p.witnesses + p.nofailover || i >= p.initial, witness: i < p.witnesses, cap: null, lastLeadership: "", reports: new Map(), bootLocal: 0, roundAt: 0,
      names: { list: [], k: 0, async: true, gen: 0 }, planned: [], resyncing: false, wsView: new Map(), confirmed: null, pgRun: 0, disk: { term: 0, votedFor: null, membership: i < p.initial ? membership0 : null },
      el: null, offset: 0, rate: 1, pausedUntil: -1, wakeGen: 0, lease: null, acksSeen: new Map(), ackTerm: -1, data: { timeline: 1, lsn: "0/0" }, line: [{ uid: 0, tl: 1, from: 0n, term: 0 }], reserving: null, lastHb: null, degraded: false, upstream: null, inc: 0, fed: null, feedAt: 0, pgDown: false, detaching: 0, recv: new Map(),
    };
    nodes.set(id, n);
  }

  // ---- network faults
  const blocked = new Set<string>(); // "a>b"
  let loss = 0, dup = 0, longDelay = 0;
  /** Share of persists that hold the process for up to 3 s while faults run. */
  const SLOW_PERSIST = 0.1;
  let faultsOn = true;

  // ---- invariants state
  const leaderOfTerm = new Map<number, string>();
  const votes = new Map<string, string>(); // `${term}/${voter}` -> candidate
  const closed: Interval[] = [];
  let minGap = Infinity;
  let steps = 0, checks = 0, membershipChanges = 0;
  let maxTerm = 0;
  /** The newest guard (by term, seq) a leader saw stored by a majority. */
  let committedGuard: Guard | null = null;

  const closeLease = (n: Node, end: number, expired: boolean) => {
    if (!n.lease) return;
    const iv: Interval = { node: n.id, term: n.lease.term, start: n.lease.start, end: Math.min(n.lease.end, end) + (expired ? p.fenceMs : 0) };
    n.lease = null;
    checkOverlap(iv);
    closed.push(iv);
  };
  const checkOverlap = (iv: Interval) => {
    for (const o of [...closed, ...openIntervals()]) {
      if (o.node === iv.node && o.term === iv.term) continue;
      checks++;
      const gap = Math.max(iv.start - o.end, o.start - iv.end);
      if (gap < 0) fail(`lease overlap: ${o.node}@${o.term} [${o.start.toFixed(1)}, ${o.end.toFixed(1)}] and ${iv.node}@${iv.term} [${iv.start.toFixed(1)}, ${iv.end.toFixed(1)}]`);
      minGap = Math.min(minGap, gap);
    }
  };
  const openIntervals = (): Interval[] => {
    const out: Interval[] = [];
    for (const n of nodes.values()) if (n.lease) out.push({ node: n.id, term: n.lease.term, start: n.lease.start, end: n.lease.end + p.fenceMs });
    return out;
  };

  function schedule(n: Node, ready: Ready) {
    const local = localOf(n, t);
    steps++;
    // persist first (the shell's contract), then check, then send
    let hold = 0; // how long the persist holds the process: its messages leave after it, then the shell reports `sent`
    if (ready.persist) {
      if (faultsOn && r() < SLOW_PERSIST) {
        hold = r() * 3000;
        n.pausedUntil = Math.max(n.pausedUntil, t + hold);
        log(`FAULT slow persist ${n.id}: ${hold.toFixed(0)} ms`);
        slowPersists++;
        if (ready.persist.votedFor === n.id && ready.send.some((x) => x.msg.t === "vote")) slowCandidacies++;
      }
      const prev = n.disk;
      if (ready.persist.term < prev.term) fail(`${n.id} persisted a lower term ${ready.persist.term} < ${prev.term}`);
      if (ready.persist.term === prev.term && prev.votedFor && ready.persist.votedFor !== prev.votedFor)
        fail(`${n.id} changed its vote in term ${prev.term} from ${prev.votedFor} to ${ready.persist.votedFor}`);
      // Within a term a node's membership only moves forward (a new leader re-stamps it in its own term).
      const [pm, nm] = [prev.membership, ready.persist.membership];
      if (ready.persist.term === prev.term && pm && (!nm || nm.term < pm.term || (nm.term === pm.term && nm.index < pm.index)))
        fail(`${n.id} took its membership back in term ${prev.term} from v${pm.term}.${pm.index} to ${nm ? `v${nm.term}.${nm.index}` : "none"}`);
      n.disk = structuredClone(ready.persist);
      maxTerm = Math.max(maxTerm, n.disk.term);
    }
    for (const no of ready.notices) {
      log(`${n.id} ${no.kind}: ${no.detail}`);
      if (no.kind === "became-leader") {
        const term = n.el!.status(local).term;
        // durability: the new leader holds every write acknowledged up to its term. One of a later term
        // was acknowledged under a lease that this leader can never get (a majority moved past its
        // term first): a candidate frozen while its last vote was on its way wins an old term late.
        const lost = acked_.find((a) => a.term <= term && !holds(n.line, n.data, a.w));
        if (lost) {
          fail(`${n.id} won term ${term} at ${n.data.timeline}/${n.data.lsn} but a write at ${lost.w.pos.timeline}/${lost.w.pos.lsn} (uid ${lost.w.uid}) was acknowledged by ${lost.by} (${lost.how})`);
        }
        leadersChecked++;
        if (handedTo && term > handedTo.term) {
          if (n.id === handedTo.to) transfersToTarget++;
          handedTo = null;
        }
        electedWith.set(term, { id: n.id, data: n.data, line: n.line });
        const other = leaderOfTerm.get(term);
        if (other && other !== n.id) fail(`two leaders in term ${term}: ${other} and ${n.id}`);
        leaderOfTerm.set(term, n.id);
        if (!n.canLead) fail(`${n.id}, which cannot lead, became leader`);
        // The newest guard a majority stored is carried on (or a later one): the new leader re-stamps
        // the guard it holds with seq + 1, and every guard made since that one has a higher seq. Not a
        // late win of a term older than that guard's (as above: it never gets a lease).
        const g = n.el!.status(local).guard;
        const c = committedGuard;
        if (c && (c.term ?? 0) < term && (!g || g.seq - 1 < c.seq))
          fail(`${n.id} won term ${term} with guard ${JSON.stringify(g)}, older than the guard a majority stored: ${JSON.stringify(c)}`);
        n.upstream = null; // promotion ends streaming
      }
      if (no.kind === "membership-changed") membershipChanges++;
      // a shell may also stop streaming when its node stands, to campaign with a position that holds
      if (no.kind === "campaign" && no.detail.startsWith("election") && candidateDetaches) n.upstream = null;
      // resign: the shell stops writes on this host before the resign messages leave, which
      // also ends what an earlier process of this node (crashed, watchdog still armed) had left
      if (no.kind === "stepped-down" && no.detail.startsWith("resigned")) {
        closeLease(n, t, false);
        for (const iv of closed) if (iv.node === n.id && iv.end > t) iv.end = t;
      }
    }
    {
      const st = n.el!.status(local);
      const g = st.guard;
      if (st.role === "leader" && g && st.guardCommitted >= g.seq && (!committedGuard || (g.term ?? 0) > (committedGuard.term ?? 0) || ((g.term ?? 0) === (committedGuard.term ?? 0) && g.seq > committedGuard.seq))) committedGuard = g;
    }
    // lease intervals
    if (ready.leading) {
      // independent check: the lease must follow from acks this node really received
      const st = n.el!.status(local);
      if (n.ackTerm !== ready.leading.term) { n.acksSeen = new Map(); n.ackTerm = ready.leading.term; }
      const vals = new Map(n.acksSeen); vals.set(n.id, local);
      const indep = Math.max(quorumMin(st.membership!.voters, vals), st.prevVoters ? quorumMin(st.prevVoters, vals) : -Infinity) + p.leaseMs;
      if (ready.leading.until > indep + 1e-6 || indep <= local) fail(`${n.id} claims lease until ${ready.leading.until} but acks support ${indep} (now ${local})`);
      const end = realOf(n, ready.leading.until);
      if (!n.lease || n.lease.term !== ready.leading.term) {
        closeLease(n, t, false);
        n.lease = { term: ready.leading.term, start: t, end };
        checkOverlap({ node: n.id, term: ready.leading.term, start: t, end: end + p.fenceMs });
      } else {
        n.lease.end = Math.max(n.lease.end, end);
      }
    } else if (n.lease) {
      const expired = n.lease.end <= t;
      closeLease(n, t, expired);
      // A step-down before expiry means the shell stopped writes on this host now, which also
      // ends what an earlier process of this node (crashed, watchdog still armed) had left.
      if (!expired) for (const iv of closed) if (iv.node === n.id && iv.end > t) iv.end = t;
    }
    for (const s of ready.send) {
      if ((s.msg.t === "vote-resp" || s.msg.t === "prevote-resp") && !s.msg.granted && s.msg.reason?.startsWith("own position not known")) refusedPositionUnknown++;
      if (s.msg.t === "vote-resp" && s.msg.granted) {
        const key = `${s.msg.term}/${n.id}`;
        const prev = votes.get(key);
        if (prev && prev !== s.to) fail(`${n.id} voted twice in term ${s.msg.term}: ${prev} and ${s.to}`);
        votes.set(key, s.to);
        if (n.disk.votedFor !== s.to || n.disk.term !== s.msg.term) fail(`${n.id} granted a vote in term ${s.msg.term} to ${s.to} before persisting it`);
      }
      sendMsg(n.id, s.to, s.msg, hold);
    }
    if (ready.detach) startDetach(n, ready.detach.term);
    if (ready.persist) push(t + hold, { k: "sent", id: n.id, inc: n.inc });
    for (const no of ready.notices) if (no.kind === "vote-refused" && /replication|stopping/.test(no.detail)) refusedForDetach++;
    n.wakeGen++;
    if (Number.isFinite(ready.wakeAt)) push(Math.max(t, realOf(n, ready.wakeAt)) + 0.001, { k: "wake", id: n.id, gen: n.wakeGen });
    // The agent feeds its position again when the leader or the term changes: a cap holds for one leader's term only.
    if (n.el && n.cap) {
      const st = n.el.status(local);
      const key = `${st.leader}/${st.term}`;
      if (key !== n.lastLeadership) { n.lastLeadership = key; n.cap.refeed(); }
    }
  }

  /** The shell's monitoring round tells the core where its data ends. */
  function feedPosition(n: Node) {
    n.fed = n.data;
    if (n.pgDown) { n.pgDown = false; newPgRun(n); }
    const position = zeroVote(n) ?? (n.cap ? n.cap.position(n.data) : n.data);
    if (position !== n.data) cappedFeeds++;
    schedule(n, n.el!.step({ type: "position", now: localOf(n, t), position }));
  }

  // ---- the agents' state messages and the rule for standbys that cannot lead (docs/design.md, S27)
  /** The message router (src/agent/message-router.ts onState): newer messages only; the leader's record goes to the cap. */
  function onState(n: Node, from: string, m: SimState) {
    if (!newerReport(n.reports.get(from), from, m)) return;
    n.reports.set(from, { report: null, role: m.role, at: localOf(n, t), nofailover: m.nofailover, promotable: m.promotable, epoch: m.epoch, seq: m.seq, ...(m.heard ? { heard: m.heard } : {}) });
    if (n.el!.status(localOf(n, t)).leader !== from) return;
    n.cap!.heard(from, m.exclusion, m);
  }

  function factsOf(n: Node): FactsSnapshot {
    const st = n.el!.status(localOf(n, t));
    return {
      self: { id: n.id, name: n.id, role: n.witness ? "witness" : "database", neverPromoted: !n.canLead && !n.witness, report: null },
      now: localOf(n, t), startedAt: n.bootLocal, freshMs: 5000, voters: st.membership?.voters ?? [], leader: st.leader, reports: n.reports,
      peers: all().filter((m) => m !== n).map((m) => ({ id: m.id, name: m.id, role: m.witness ? "witness" as const : "database" as const, mesh: "", address: "", connected: true })),
    };
  }

  /**
   * A primary's part of its round (src/agent/pg/durability.ts plan, sync-exclusion.ts step): the
   * names from the synchronous set, each walsender taking a change on its own schedule, and the
   * exclusion confirmed once every walsender counts only the names, at the primary's position then.
   * Returns the synchronous set (the record leaves out what the fill wants).
   */
  function primaryRound(n: Node): SyncSet {
    const k = kOf(n);
    const facts = factsOf(n);
    // The mutation: an announcement without an epoch is free to name (an older version never caps).
    const set = p.mutation === "name-without-echo"
      ? factsSyncSet({ ...facts, reports: new Map([...n.reports].map(([id, a]) => [id, { ...a, epoch: undefined }])) }, { k, run: { id: n.id, epoch: n.inc }, lastNamed: () => undefined })
      : n.cap!.syncSet(facts, k);
    const list = [...set.names].sort();
    if (list.some((id) => !nodes.get(id)!.canLead)) fillNamed++;
    // A degraded primary runs with "" once a majority stored its block (core/durability.ts
    // planDurability), as does one that needs no standby (k = 0).
    const st = n.el!.status(localOf(n, t));
    const stored = !!st.guard?.block && st.guard.holder === n.id && st.guardCommitted >= st.guard.seq;
    n.planned = list;
    const want: Names = { list, k, async: (n.degraded && (stored || p.mutation === "async-before-block-stored") && !n.resyncing) || k === 0 };
    if (namesKey(want) !== namesKey(n.names)) {
      n.names = { ...want, gen: n.names.gen + 1 };
      log(`${n.id} names '${namesKey(want)}' (generation ${n.names.gen})${set.pending.length > 0 ? `, waiting for the echo of ${set.pending.join(",")}` : ""}`);
      for (const sb of n.wsView.keys()) push(t + (faultsOn ? r() * 300 : 0), { k: "ws", id: n.id, standby: sb, pg: n.pgRun });
    }
    if (n.confirmed?.gen !== n.names.gen) {
      n.confirmed = null;
      // No walsender counts itself unless the names do (pg_stat_replication.sync_priority; src/postgres/sync-candidates.ts).
      if (!n.names.async && (p.mutation === "confirm-before-walsenders" || [...n.wsView].every(([sb, v]) => !countsItself(v, sb) || list.includes(sb)))) {
        n.confirmed = { gen: n.names.gen, at: n.data };
        log(`${n.id} names of generation ${n.names.gen} confirmed in force from ${n.data.timeline}/${n.data.lsn}`);
      }
    }
    return set;
  }

  /** The agent's round: a primary's names, then its state message to every peer (agent.ts broadcastState). */
  function agentRound(n: Node) {
    const st = n.el!.status(localOf(n, t));
    const primary = quorumMode && !!n.lease && n.lease.term === st.term && !n.pgDown && n.line[n.line.length - 1]!.term === st.term;
    if (!primary) n.confirmed = null;
    const set = primary ? primaryRound(n) : null;
    if (n.cap!.withholding()) return;
    const k = kOf(n, st);
    const exclusion = set && n.confirmed ? exclusionRecord({
      term: st.term, at: n.confirmed.at, names: syncNamesFor(k, n.names.list),
      members: standbyMembers(factsOf(n)).map((id) => ({ id, slot: id, epoch: n.reports.get(id)?.epoch })), keepOut: set.wanted,
    }) : null;
    if (exclusion) records++;
    const seq = n.cap!.stamp(exclusion);
    const msg: SimState = { t: "sim-state", role: n.witness ? "witness" : "database", nofailover: !n.canLead && !n.witness, seq, exclusion, ...n.cap!.announce() };
    for (const m of all()) if (m !== n) sendMsg(n.id, m.id, msg);
  }

  /** The mutation "cannot-lead-votes-zero": a standby that cannot lead defends nothing when it votes. */
  function zeroVote(n: Node): Position | null {
    return p.mutation === "cannot-lead-votes-zero" && !n.canLead && !n.witness ? ZERO_POSITION : null;
  }

  function namesOf(n: Node): Names {
    return { list: n.names.list, k: n.names.k, async: n.names.async };
  }

  /** PostgreSQL (re)started or promoted: new walsenders, names of a new generation (PgHost.syncNamesGen). */
  function newPgRun(n: Node) {
    n.pgRun++;
    n.wsView = new Map();
    n.names = { ...n.names, gen: n.names.gen + 1 };
  }

  function sendMsg(from: string, to: string, msg: ElectionMsg | SimState, after = 0) {
    if (!nodes.has(to)) return;
    const copies = faultsOn && r() < dup ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      if (blocked.has(`${from}>${to}`)) return;
      if (faultsOn && r() < loss) continue;
      let delay = 0.2 + r() * 3;
      if (faultsOn && r() < 0.2) delay += r() * 40;
      if (faultsOn && r() < longDelay) delay += r() * 4000;
      push(t + after + delay, { k: "msg", to, from, msg });
    }
  }

  function deliver(n: Node, ev: QEvent) {
    if (!n.el) return; // crashed: lost
    // what a frozen process had received dies with it: a restarted one has new connections
    if (ev.k === "msg" && ev.inc !== undefined && ev.inc !== n.inc) return;
    if (t < n.pausedUntil) { push(n.pausedUntil + r() * 0.01, ev.k === "msg" ? { ...ev, inc: n.inc } : ev); return; } // frozen: waits, order may shuffle a bit
    const now = localOf(n, t);
    if (ev.k === "msg" && ev.msg.t === "sim-state") {
      onState(n, ev.from, ev.msg);
    } else if (ev.k === "msg") {
      const msg = ev.msg as ElectionMsg; // sim-state went above
      if (msg.t === "hb-resp" && msg.ok && msg.term === n.el.status(now).term && n.el.status(now).role === "leader") {
        if (n.ackTerm !== msg.term) { n.acksSeen = new Map(); n.ackTerm = msg.term; }
        if (msg.seq <= now) n.acksSeen.set(ev.from, Math.max(n.acksSeen.get(ev.from) ?? -Infinity, msg.seq));
      }
      schedule(n, n.el.step({ type: "recv", now, from: ev.from, msg }));
      // the shell points a database standby at the leader its core follows (a witness holds no data)
      if (msg.t === "hb" && n.el && !n.witness && n.el.status(localOf(n, t)).leader === ev.from) n.upstream = ev.from;
    } else if (ev.k === "wake") {
      if (ev.gen !== n.wakeGen) return;
      schedule(n, n.el.step({ type: "tick", now }));
      // a fresh leader with its lease starts a new timeline (promotion); writes follow (replicate())
      promoteIfLeading(n);
      if (n.el && quorumMode) leaderDurability(n);
    } else if (ev.k === "sent") {
      if (ev.inc === n.inc) schedule(n, n.el.step({ type: "sent", now }));
    } else if (ev.k === "detached") {
      if (ev.inc !== n.inc) return; // the process that asked died: nobody reports, PostgreSQL unchanged
      n.detaching--;
      if (ev.ok) n.upstream = null;
      const error = ev.ok ? undefined : "sim: reload failed, still streaming";
      // the shell reads the server afresh: one not running has nothing to stop, and says no position
      const position = zeroVote(n) ?? n.cap!.detached({ ok: ev.ok, position: ev.ok && !n.pgDown ? n.data : null }).position;
      if (position && position !== n.data) cappedFeeds++;
      schedule(n, n.el.step({ type: "detached", now, term: ev.term, ok: ev.ok, position, ...(error ? { error } : {}) }));
    }
  }

  /**
   * The shell's promotion (src/agent/pg/primary.ts): PostgreSQL numbers the new timeline the highest
   * it knows + 1 (here: the numbers on the node's own history); the shell first reserves the number
   * above the cluster's reservation (core/timelines.ts) and promotes once a majority stored it.
   */
  function promoteIfLeading(n: Node) {
    const st = n.el!.status(localOf(n, t));
    const last = n.line[n.line.length - 1]!;
    if (st.role !== "leader" || st.leaseUntil === null || st.leaseUntil <= localOf(n, t) || last.term >= st.term) return;
    const known = Math.max(...n.line.map((x) => x.tl));
    let next = known + 1;
    if (p.mutation !== "no-timeline-reservation") {
      if (n.reserving?.term !== st.term) {
        const want = Math.max(known, st.guard?.timeline ?? 0) + 1;
        schedule(n, n.el!.step({ type: "reserve-timeline", now: localOf(n, t), timeline: want }));
        n.reserving = { term: st.term, next: want };
        return;
      }
      if (st.timelineCommitted < n.reserving.next) return;
      next = n.reserving.next;
    }
    n.reserving = null;
    // Invariant: every timeline number belongs to one history (positions compare numbers).
    const owner = timelineOwner.get(next);
    if (owner !== undefined) fail(`${n.id} promoted to timeline ${next} in term ${st.term}, a number another history (uid ${owner}) has`);
    timelineOwner.set(next, uids + 1);
    promotions++;
    if (next > known + 1) promotionsAboveReservation++;
    n.data = { timeline: next, lsn: n.data.lsn };
    n.line = [...n.line, { uid: ++uids, tl: next, from: lsnOf(n.data), term: st.term }];
    log(`${n.id} promotes to timeline ${next} (uid ${uids}) at ${n.data.lsn} in term ${st.term}`);
    // Promoted with the names its files held (written each round as a standby from the same set): new walsenders.
    newPgRun(n);
    if (quorumMode) primaryRound(n);
    feedPosition(n);
  }

  /** Whether the history `line` ending at `at` holds `w`: w's timeline instance is on it, up to w's LSN. */
  function holds(line: Seg[], at: Position, w: Write): boolean {
    const i = line.findIndex((x) => x.uid === w.uid);
    if (i < 0) return false;
    const end = i === line.length - 1 ? lsnOf(at) : line[i + 1]!.from;
    return end >= lsnOf(w.pos);
  }

  /** The shell's part of Ready.detach: stop streaming (after a delay, or never), then report. */
  function startDetach(n: Node, term: number) {
    detaches++;
    n.detaching++;
    const x = faultsOn ? r() : 1;
    const hang = x < p.detachHangRate, ok = x >= p.detachHangRate + p.detachFailRate;
    if (!ok) detachesFailed++;
    if (hang) detachesHung++;
    const delay = hang ? realOf(n, p.detachTimeoutMs) - realOf(n, 0) + r() * 1500 : r() * p.detachMaxMs;
    push(t + delay, { k: "detached", id: n.id, inc: n.inc, term, ok: ok || hang });
    log(`${n.id} detach for term ${term}: ${hang ? "hangs" : ok ? "ok" : "fails"} after ${delay.toFixed(0)} ms`);
    if (p.mutation === "vote-before-detach") {
      // the defect: report the detach as done before replication has stopped
      schedule(n, n.el!.step({ type: "detached", now: localOf(n, t), term, ok: true, position: null }));
    }
  }

  /**
   * PostgreSQL, every 20–60 ms: client writes on a primary, WAL to standbys. The shell's monitoring
   * round tells the core its position every 100–500 ms, not while a detach holds the executor.
   */
  function replicate(n: Node) {
    push(t + 20 + r() * 40, { k: "repl", id: n.id });
    if (!n.el) return; // host down
    if (n.lease && !n.pgDown && n.line[n.line.length - 1]!.term === n.lease.term && r() < writeRate) {
      n.data = { timeline: n.data.timeline, lsn: bigIntToLsn(lsnToBigInt(n.data.lsn) + BigInt(1 + Math.floor(r() * 5000))) };
      pending.push({ node: n.id, term: n.lease.term, w: { pos: n.data, uid: n.line[n.line.length - 1]!.uid } });
    }
    const u = n.upstream ? nodes.get(n.upstream) : undefined;
    if (u?.el && !n.pgDown && !u.pgDown && !blocked.has(`${u.id}>${n.id}`) && !blocked.has(`${n.id}>${u.id}`) && !(faultsOn && r() < loss)) {
      n.lastHb = { from: u.id, at: t };
      if (!u.wsView.has(n.id)) u.wsView.set(n.id, namesOf(u)); // a new walsender takes the names in force
      // as the agent follows (rewound or cloned when it diverged): the upstream's history, when ahead
      if (comparePosition(u.data, n.data) > 0) {
        n.data = u.data;
        n.line = u.line;
      }
      // what n now holds of u's WAL (n on another history, ahead: nothing of u's)
      const had = n.recv.get(u.id);
      const uid = u.line[u.line.length - 1]!.uid;
      if (n.line[n.line.length - 1]!.uid === uid && (!had || had.uid !== uid || comparePosition(u.data, had.pos) > 0)) n.recv.set(u.id, { pos: u.data, uid });
    }
    if (t >= n.pausedUntil && t >= n.roundAt) {
      n.roundAt = t + 400 + r() * 200;
      agentRound(n);
    }
    if (t >= n.pausedUntil && t >= n.feedAt && n.detaching === 0 && n.fed !== n.data) {
      n.feedAt = t + 100 + r() * 400;
      feedPosition(n);
    }
  }

  // ---- durability (quorum commit), as the agent runs it on the primary
  function votersOf(n: Node): string[] {
    return n.el!.status(localOf(n, t)).membership?.voters ?? [];
  }
  function kOf(n: Node, st = n.el!.status(localOf(n, t))): number {
    // until a membership change commits, elections may still use the previous set: take the larger k
    const v = Math.max(st.membership?.voters.length ?? 0, st.prevVoters?.length ?? 0);
    return v - (Math.floor(v / 2) + 1);
  }
  function leaderDurability(n: Node) {
    const st = n.el!.status(localOf(n, t));
    // as the agent's plan: only a primary running in this leader's term (a leader not promoted yet plans nothing)
    if (st.role !== "leader" || !n.lease || n.lease.term !== st.term || n.pgDown || n.line[n.line.length - 1]!.term !== st.term) return;
    const streaming = votersOf(n).filter((v) => v !== n.id && n.planned.includes(v) && nodes.get(v)?.lastHb?.from === n.id && t - nodes.get(v)!.lastHb!.at < 600).length;
    const k = kOf(n);
    n.resyncing &&= streaming >= k;
    if (streaming >= k) {
      if (n.degraded) {
        // The names in force first (the agent lifts the block only once its checkpointer took them):
        // under "" commits go without waiting, and a lifted block would no longer cover them.
        if (n.names.async) { n.resyncing = true; return; }
        n.degraded = false;
        n.resyncing = false;
        log(`${n.id} re-enables synchronous standbys: guard floor ${n.data.timeline}/${n.data.lsn}`);
        schedule(n, n.el!.step({ type: "guard", now: localOf(n, t), block: false, floor: n.data }));
      } else if (st.guard?.block) schedule(n, n.el!.step({ type: "guard", now: localOf(n, t), block: false, floor: null }));
      return;
    }
    if (n.degraded) return;
    if (st.guard?.block && st.guard.holder === n.id && st.guardCommitted >= st.guard.seq) {
      n.degraded = true;
      log(`${n.id} degrades: block guard seq ${st.guard.seq} stored by a majority`);
    }
    else if (!st.guard?.block || st.guard.holder !== n.id) schedule(n, n.el!.step({ type: "guard", now: localOf(n, t), block: true, floor: null }));
  }
  /** Acknowledge pending writes: k standbys have them, or the primary runs degraded behind a committed block guard. */
  function ackWrites() {
    // Nothing steps an election here: each leader's status is read once per call.
    const views = new Map<string, { k: number; blocked: boolean }>();
    const viewOf = (L: Node) => {
      let v = views.get(L.id);
      if (!v) {
        const st = L.el!.status(localOf(L, t));
        v = { k: kOf(L, st), blocked: !!st.guard?.block && st.guard.holder === L.id && st.guardCommitted >= st.guard.seq };
        views.set(L.id, v);
      }
      return v;
    };
    for (let i = pending.length - 1; i >= 0; i--) {
      const w = pending[i]!;
      const L = nodes.get(w.node)!;
      const open = L.el && L.lease && L.lease.term === w.term;
      if (!open) { pending.splice(i, 1); continue; }
      // a standby acknowledges what it received from L itself: L's timeline, at or past the write
      const has = (d: Write | undefined) => !!d && d.uid === w.w.uid && lsnOf(d.pos) >= lsnOf(w.w.pos);
      const { k, blocked } = viewOf(L);
      // ... and only standbys whose walsender counts itself (named in the names it took last, a voter
      // or not: one just removed may still be named), as many as some such walsender's names ask
      // for (PostgreSQL releases a commit on any synchronous walsender's reply, by its own num_sync)
      let holders = 0, need = Infinity;
      for (const [v, view] of L.wsView) {
        if (v === L.id || !countsItself(view, v)) continue;
        need = Math.min(need, view.k);
        if (has(nodes.get(v)!.recv.get(L.id))) holders++;
      }
      // Under "" (a degraded primary's names) no commit waits at all, whatever the agent's state.
      const how = k === 0 || holders >= need ? `${holders} standbys` : L.names.async ? (blocked ? "degraded" : "names '' before the block was stored") : null;
      if (!how) continue;
      // ... and no write is acknowledged that a leader of a later term, already elected, lacks
      for (const [term, e] of electedWith) {
        if (term > w.term && !holds(e.line, e.data, w.w)) fail(`${L.id} acknowledged a write at ${w.w.pos.timeline}/${w.w.pos.lsn} (uid ${w.w.uid}, term ${w.term}, ${how}) that ${e.id}, elected in term ${term} at ${e.data.timeline}/${e.data.lsn}, lacks`);
      }
      acked_.push({ w: w.w, term: w.term, by: L.id, how });
      acked++;
      pending.splice(i, 1);
    }
  }

  // ---- fault injection
  const all = () => [...nodes.values()];
  const pick = <T,>(xs: T[]): T | undefined => xs[Math.floor(r() * xs.length)];
  const currentLeader = () => all().find((n) => n.el && n.pausedUntil <= t && n.el.status(localOf(n, t)).role === "leader");
  function injectFault() {
    const x = r();
    const n = pick(all())!;
    if (x < 0.15) {
      blocked.clear();
      const side = new Set(all().filter(() => r() < 0.5).map((m) => m.id));
      for (const a of nodes.keys()) for (const b of nodes.keys()) if (side.has(a) !== side.has(b)) blocked.add(`${a}>${b}`);
      log(`FAULT partition {${[...side].join(",")}} | rest`);
    } else if (x < 0.27) {
      const m = pick(all())!;
      if (m !== n) { blocked.add(`${n.id}>${m.id}`); log(`FAULT one-way cut ${n.id}>${m.id}`); }
    } else if (x < 0.4) {
      blocked.clear(); log("FAULT heal");
    } else if (x < 0.5) {
      crashHost(n);
    } else if (x < 0.6) {
      if (n.el && n.pausedUntil <= t) {
        n.pausedUntil = t + 500 + r() * 9000;
        log(`FAULT pause ${n.id} until ${n.pausedUntil.toFixed(0)}`);
        push(n.pausedUntil + 0.0005, { k: "wake", id: n.id, gen: n.wakeGen });
      }
    } else if (x < 0.75) {
      const L = currentLeader();
      const st = L?.el!.status(localOf(L, t));
      // as the agent does (membership.ts): voter changes only once the leader's own primary runs
      if (L && st && L.line[L.line.length - 1]!.term === st.term) {
        const voters = st.membership?.voters ?? [];
        const add = ids.filter((i) => !voters.includes(i));
        const removable = voters.filter((v) => v !== L.id);
        const op = add.length > 0 && (voters.length <= 2 || r() < 0.5) ? "add" : "remove";
        const target = op === "add" ? pick(add) : voters.length > 2 ? pick(removable) : undefined;
        if (target && quorumMode && !(st.guard?.block && st.guard.holder === L.id && st.guardCommitted >= st.guard.seq)) {
          // as the agent does: a membership change changes k, so automatic failover is suspended
          // (guard block, stored by a majority) before it; the normal re-sync lifts it afterwards
          log(`FAULT propose ${op} ${target} at ${L.id}: blocking failover first`);
          L.degraded = true;
          schedule(L, L.el!.step({ type: "guard", now: localOf(L, t), block: true, floor: null }));
        } else if (target) { log(`FAULT propose ${op} ${target} at ${L.id}`); schedule(L, L.el!.step({ type: "propose", now: localOf(L, t), op, node: target })); }
      }
    } else if (x < 0.8) {
      const L = currentLeader();
      if (L) {
        const voters = L.el!.status(localOf(L, t)).membership?.voters ?? [];
        const to = r() < 0.5 ? pick(voters.filter((v) => v !== L.id)) : undefined;
        log(`FAULT resign ${L.id}${to ? ` transfer to ${to}` : ""}`);
        if (to) {
          transfers++;
          handedTo = { to, term: L.el!.status(localOf(L, t)).term };
        }
        schedule(L, L.el!.step({ type: "resign", now: localOf(L, t), reason: "sim", transferTo: to }));
      }
    } else if (x < 0.84) {
      // The nasty one for leases: cut the leader from one follower and restart
      // another follower whose acks the leader's lease is counting on.
      const L = currentLeader();
      if (L) {
        const voters = L.el!.status(localOf(L, t)).membership?.voters.filter((v) => v !== L.id) ?? [];
        const w = pick(voters), v = pick(voters.filter((x) => x !== w));
        const V = v ? nodes.get(v) : undefined;
        if (w && V?.el) {
          blocked.add(`${L.id}>${w}`); blocked.add(`${w}>${L.id}`);
          log(`FAULT cut ${L.id}<>${w}, restart ${v}`);
          V.el = null; V.wakeGen++;
          pendingRestarts.push({ at: t + 20 + r() * 300, id: v! });
        }
      }
    } else if (x < 0.9) {
      loss = r() < 0.5 ? 0 : r() * 0.3; dup = r() * 0.1; longDelay = r() < 0.5 ? 0 : r() * 0.02;
      log(`FAULT loss=${loss.toFixed(2)} dup=${dup.toFixed(2)} long=${longDelay.toFixed(3)}`);
    } else if (x < 0.94) {
      // The nasty one for durability: the leader's agent freezes while its PostgreSQL goes on taking
      // writes (nothing fences it), and one standby stops receiving them: the others must not elect
      // that standby once they acknowledged writes it lacks.
      const L = currentLeader();
      const voters = L?.el!.status(localOf(L, t)).membership?.voters.filter((v) => v !== L.id && !nodes.get(v)!.witness) ?? [];
      const behind = r() < 0.5 ? pick(voters) : undefined;
      if (L) {
        L.pausedUntil = t + 3000 + r() * 6000;
        if (behind) blocked.add(`${L.id}>${behind}`);
        log(`FAULT pause ${L.id} until ${L.pausedUntil.toFixed(0)} (its PostgreSQL goes on)${behind ? `, its WAL no longer reaches ${behind}` : ""}`);
        push(L.pausedUntil + 0.0005, { k: "wake", id: L.id, gen: L.wakeGen });
      }
    } else {
      if (x < 0.97 && p.nofailover > 0 && quorumMode && cannotLeadScenario()) return;
      // restart a healthy node (clean process restart)
      if (n.el) {
        log(`FAULT restart ${n.id}`);
        closeLease(n, Infinity, true);
        n.el = null; n.wakeGen++;
        pendingRestarts.push({ at: t + 50 + r() * 500, id: n.id });
      }
    }
  }
  /**
   * The nasty one for standbys that cannot lead: a promotable standby's agent freezes long enough
   * for its reports to go stale (freshMs, 5 s) while its PostgreSQL goes on streaming, so the fill
   * names the standbys that cannot lead beside it; then its WAL stops, the standbys that cannot lead
   * acknowledge commits alone, and the primary's host crashes. The frozen standby lacks those
   * commits: when it wakes it must not be elected. False: it cannot be set up now.
   */
  function cannotLeadScenario(): boolean {
    const L = currentLeader();
    const c = L ? pick(votersOf(L).filter((v) => v !== L.id && nodes.get(v)!.canLead)) : undefined;
    const C = c ? nodes.get(c) : undefined;
    if (!L || !C?.el || C.pausedUntil > t) return false;
    const cutAt = t + 5500 + r() * 2000, at = cutAt + 100 + r() * 700;
    C.pausedUntil = at + r() * 1000;
    push(C.pausedUntil + 0.0005, { k: "wake", id: C.id, gen: C.wakeGen });
    pendingCrashes.push({ at, id: L.id, cut: C.id, cutAt, added: [] });
    log(`FAULT pause ${C.id} until ${C.pausedUntil.toFixed(0)} (its PostgreSQL goes on), its WAL cut at ${cutAt.toFixed(0)}, crash ${L.id} at ${at.toFixed(0)}`);
    return true;
  }
  const pendingRestarts: Array<{ at: number; id: string }> = [];
  /** A primary's host to crash at `at`, after its WAL to `cut` stops at `cutAt` (the cut ends with the crash). */
  const pendingCrashes: Array<{ at: number; id: string; cut: string; cutAt: number; added: string[] }> = [];
  function crashHost(n: Node) {
    if (!n.el) return;
    log(`FAULT crash ${n.id}`);
    closeLease(n, Infinity, true);
    n.el = null; n.wakeGen++;
    n.pgDown = true; // the host went down: its PostgreSQL starts again with the new agent's first round
    push(t + 200 + r() * 6000, { k: "fault" });
    pendingRestarts.push({ at: t + 100 + r() * 8000, id: n.id });
  }
  const pending: Array<{ node: string; term: number; w: Write }> = [];
  /** Acknowledged writes, the newest per history line end is enough but all are kept: a few thousand. */
  const acked_: Array<{ w: Write; term: number; by: string; how: string }> = [];
  let uids = 0, promotions = 0, promotionsAboveReservation = 0;
  const timelineOwner = new Map<number, number>([[1, 0]]); // timeline number -> uid of the history that made it
  const electedWith = new Map<number, { id: string; data: Position; line: Seg[] }>();
  let acked = 0, leadersChecked = 0;
  let cappedFeeds = 0, fillNamed = 0, records = 0;
  let transfers = 0, transfersToTarget = 0;
  let handedTo: { to: string; term: number } | null = null;
  let detaches = 0, detachesFailed = 0, detachesHung = 0, refusedForDetach = 0, refusedPositionUnknown = 0, slowPersists = 0, slowCandidacies = 0;
  const quorumMode = r() < 0.7;
  // how often the leader's data moves on; idle clusters are where only the timers protect the lease
  const writeRate = r() < 0.2 ? 0 : r() * 0.5;
  const candidateDetaches = r() < 0.75;

  for (const n of nodes.values()) { boot(n); push(r() * 40, { k: "repl", id: n.id }); }
  push(200 + r() * 2000, { k: "fault" });

  const end = p.faultMs + p.settleMs;
  let settledAt = -1;
  while (heap.length > 0) {
    const top = pop();
    t = top.at;
    if (t > end) break;
    // restarts due
    for (let i = pendingRestarts.length - 1; i >= 0; i--) {
      const pr = pendingRestarts[i]!;
      if (pr.at <= t || !faultsOn) {
        pendingRestarts.splice(i, 1);
        const n = nodes.get(pr.id)!;
        if (!n.el) { log(`restart ${n.id} term=${n.disk.term} votedFor=${n.disk.votedFor}`); boot(n); }
      }
    }
    for (let i = pendingCrashes.length - 1; i >= 0; i--) {
      const pc = pendingCrashes[i]!;
      if (pc.cutAt <= t && pc.cutAt >= 0 && faultsOn) {
        pc.added = [`${pc.id}>${pc.cut}`, `${pc.cut}>${pc.id}`].filter((b) => !blocked.has(b)); // the crash heals only what it cut
        for (const b of pc.added) blocked.add(b);
        log(`FAULT cut ${pc.id}<>${pc.cut}`);
        pc.cutAt = -1;
      }
      if (pc.at > t && faultsOn) continue;
      pendingCrashes.splice(i, 1);
      if (!faultsOn) continue;
      for (const b of pc.added) blocked.delete(b);
      crashHost(nodes.get(pc.id)!);
    }
    if (faultsOn && t >= p.faultMs) {
      faultsOn = false;
      blocked.clear(); loss = 0; dup = 0; longDelay = 0;
      log("FAULTS STOP: heal, restart, unpause");
      for (const n of all()) {
        if (n.pausedUntil > t) { n.pausedUntil = t; push(t + 0.0005, { k: "wake", id: n.id, gen: n.wakeGen }); }
        if (!n.el) boot(n);
      }
    }
    const ev = top.ev;
    // No other fault while the scenario for standbys that cannot lead plays out (it would mostly undo it).
    if (ev.k === "fault") { if (faultsOn) { if (pendingCrashes.length === 0) injectFault(); push(t + 100 + r() * 3000, { k: "fault" }); } continue; }
    const n = nodes.get(ev.k === "msg" ? ev.to : ev.id)!;
    if (ev.k === "repl") replicate(n);
    else if (ev.k === "ws") { if (ev.pg === n.pgRun) n.wsView.set(ev.standby, namesOf(n)); } // PostgreSQL's: it takes the names in force now
    else deliver(n, ev);
    if (quorumMode) ackWrites();
    if (!faultsOn && settledAt < 0 && all().some((m) => m.lease && m.lease.end > t)) { settledAt = t; break; }
  }
  if (settledAt < 0) fail(`liveness: no leader with a valid lease within ${p.settleMs} ms after faults stopped`);
  return {
    seed: p.seed, leadersElected: leaderOfTerm.size, maxTerm, minGapMs: minGap, settleMs: settledAt - p.faultMs,
    steps, membershipChanges, violationsChecked: checks, ackedWrites: acked, leadersChecked,
    detaches, detachesFailed, detachesHung, votesRefusedForDetach: refusedForDetach, votesRefusedPositionUnknown: refusedPositionUnknown, promotions, promotionsAboveReservation, slowPersists, slowCandidacies,
    cappedFeeds, fillNamed, records, transfers, transfersToTarget,
  };
}
