// Standbys that can never lead (tag nofailover, priority 0) are never synchronous standbys, and
// stop holding back failover once the primary confirmed they no longer acknowledge commits
// (docs/design.md, "Durability": "Standbys that cannot lead").
//
// Primary side: the synchronous set is taken only from standbys whose latest state message said
// they are promotable. Standby side: a node that cannot lead votes with min(its position, cap),
// cap = the primary's position at which names without it were confirmed in force: every commit
// after the cap was acknowledged by promotable standbys only, so the holders of those commits are
// the ones that compare positions; every commit up to the cap is still defended by this node.
import { z } from "zod";
import { comparePosition, type Position } from "./position.ts";
import { NodeIdSchema, PositionSchema } from "./messages.ts";

/** What a state message says about a peer's promotability (fields absent on an older version). */
export interface Announcement {
  role: "database" | "witness";
  nofailover: boolean;
  /** New versions: database && !nofailover && priority > 0. */
  promotable?: boolean;
  /** New versions: this agent run's epoch, higher at each start (store/run-epoch.ts); promotability changes only with a restart. */
  epoch?: number;
  /** New versions: the last leader state message this node processed (its echo; see syncSet). */
  heard?: Heard;
}

/**
 * A node's echo of the last leader state message it processed: the leader, the epoch of that
 * leader's run (its own announcement's epoch) and the message's number in that run. Every state
 * message a node sends is numbered (`seq`, increasing for the whole run of its agent).
 */
export const HeardSchema = z.object({ leader: NodeIdSchema, epoch: z.number().int().min(0), seq: z.number().int().min(0) });
export type Heard = z.infer<typeof HeardSchema>;

/**
 * Whether a state message (`seq` of the run `epoch` of `from`) comes after the last one processed
 * from that leader: an older message arriving late (another connection, or the leader's previous
 * run: a restarted leader resumes its term) is ignored, or a record the leader has since withdrawn
 * would cap this node again. Run epochs are ordered across a node's runs (store/run-epoch.ts), so
 * (epoch, seq) orders every message of one leader.
 */
export function laterMessage(last: Heard | null, from: string, epoch: number | undefined, seq: number | undefined): boolean {
  if (!last || epoch === undefined || seq === undefined || last.leader !== from) return true;
  return epoch > last.epoch || (epoch === last.epoch && seq > last.seq);
}

/** How long, at most, a new run of a standby that cannot lead keeps its state messages back (withholdState). */
export const WITHHOLD_STATE_MS = 3_000;

/**
 * Whether a new run of a database node that cannot lead keeps its state messages back: until it
 * processed a message of the leader it follows (its echo; an older leader's carries none, and ends
 * the wait too), at most WITHHOLD_STATE_MS after start.
 * Its first message would replace its last run's report at the leader, one with no echo, and a
 * leader that names it through the fill would drop it from the names until the echo came (writes
 * waiting, or quorum degrading, for an agent restart). Its last run's report, kept meanwhile,
 * still names it safely: the new run holds no record, and a record can name its new epoch only
 * once the leader has heard that epoch.
 */
export function withholdState(x: { canLead: boolean; role: "database" | "witness"; echoed: boolean; sinceStartMs: number }): boolean {
  return !x.canLead && x.role === "database" && !x.echoed && x.sinceStartMs < WITHHOLD_STATE_MS;
}

/** Whether this node may ever be promoted: the sender's own answer for `promotable`. */
export function canLead(self: { role: "database" | "witness"; nofailover: boolean; priority: number }): boolean {
  return self.role === "database" && !self.nofailover && self.priority > 0;
}

/**
 * Whether the primary may count `a` as a synchronous standby: only when known promotable. Unknown
 * (no state message yet) is left out. An older peer without the field: !nofailover (an older agent
 * compares its full position when voting, so counting it is safe; priority 0 it does not announce).
 */
export function knownPromotable(a: Announcement | undefined): boolean {
  if (!a || a.role !== "database") return false;
  return a.promotable ?? !a.nofailover;
}

/** The standby members that may be synchronous standbys (ids, in the order given). */
export function syncCandidates(members: readonly string[], announced: (id: string) => Announcement | undefined): string[] {
  return members.filter((id) => knownPromotable(announced(id)));
}

/** This leader's run: its node id and the epoch of its announcement (a new one at every agent start). */
export interface LeaderRun { id: string; epoch: number }

/**
 * Whether the leader `run` may name `a`, a standby that cannot lead, as a synchronous standby: only
 * once it can no longer hold a cap. An older peer (no epoch) never caps: free. A new one may still
 * hold a record of this leader naming it (its copy lingers until it processes a later message), so
 * only when its echo says it processed a state message of this run newer than the last one whose
 * record named it (`lastNamed`, undefined: none did). Processing a message without a record naming
 * it ends its cap (heardRecord/capFor), and it ignores older ones (laterMessage).
 */
export function mayNameCannotLead(a: Announcement, run: LeaderRun | null, lastNamed: number | undefined): boolean {
  if (a.epoch === undefined) return true;
  const h = a.heard;
  return !!h && !!run && h.leader === run.id && h.epoch === run.epoch && h.seq > (lastNamed ?? -1);
}

export interface SyncSet {
  /** The standby members to name: the promotable ones, filled with standbys that cannot lead when fewer than k. */
  names: string[];
  /** Standbys that cannot lead which the fill wants: the leader's record leaves them out (else they never drop their cap). */
  wanted: string[];
  /** Of those, the ones not nameable yet (no fresh echo) that still report: the primary waits for their echo. */
  pending: string[];
}

/**
 * The synchronous set of the leader `run` needing `k` standbys. The standby members known
 * promotable first; only when fewer than k of them are known and reporting, every database standby that cannot
 * lead is wanted too (as before this rule: a primary + DR replica + witness, or two tagged
 * replicas, would otherwise run `ANY k ("pgherd_none")` for good), and named once it cannot hold
 * a cap (mayNameCannotLead). Unknown members (no state message) are never named.
 */
export function syncSet(x: {
  k: number; members: readonly string[]; announced: (id: string) => Announcement | undefined; run: LeaderRun | null; lastNamed: (id: string) => number | undefined;
  /**
   * Some standby member not heard yet, shortly after this agent started (cluster-facts.ts): it may
   * be promotable, so nobody is named by the fill yet. A standby that cannot lead named first would
   * hold the newest commits, and when the primary died it would refuse the promotable one.
   */
  hearing?: boolean;
  /**
   * Whether a member still reports (its last state message younger than freshMs; absent: all do).
   * Only reporting promotable standbys count toward k: a dead one's last announcement stays known,
   * and counting it would keep the standbys that cannot lead out while it cannot acknowledge
   * anything (it stays named). Not the connection: a dropped link (an agent restart, a blip) must
   * not take the cap off at once, only a silence of freshMs (at least 5 s).
   */
  reporting?: (id: string) => boolean;
}): SyncSet {
  const names = syncCandidates(x.members, x.announced);
  const live = x.reporting ? names.filter(x.reporting).length : names.length;
  if (x.k <= 0 || live >= x.k) return { names, wanted: [], pending: [] };
  const wanted = x.members.filter((id) => x.announced(id)?.role === "database" && !names.includes(id));
  const ok = x.hearing ? [] : wanted.filter((id) => mayNameCannotLead(x.announced(id)!, x.run, x.lastNamed(id)));
  // Pending: waited for (its echo). Not one that no longer reports: it cannot echo, and writes must not wait for it.
  return { names: [...names, ...ok], wanted, pending: wanted.filter((id) => !ok.includes(id) && (x.reporting?.(id) ?? true)) };
}

/** The leader's statement: names without the `excluded` standbys confirmed in force at `at`, in term `term`. */
export const ExclusionSchema = z.object({
  term: z.number().int().min(0),
  at: PositionSchema,
  /** Each excluded standby with the epoch of the announcement the leader computed this for. */
  excluded: z.array(z.object({ id: NodeIdSchema, epoch: z.number().int().min(0) })).max(64),
});
export type Exclusion = z.infer<typeof ExclusionSchema>;

/**
 * The leader's record once `names` (synchronous_standby_names in force, confirmed: no excluded
 * standby's walsender counts any more) held at `at`: every standby member not named in them whose
 * announcement carries an epoch, except those in `keepOut` (the fill wants them, syncSet: a record
 * naming one would keep its cap, and it is never named while it may hold one). null without
 * confirmed names.
 */
export function exclusionRecord(x: {
  term: number; at: Position | null; names: string; members: ReadonlyArray<{ id: string; slot: string; epoch?: number }>; keepOut?: readonly string[];
}): Exclusion | null {
  if (!x.at || x.names === "") return null;
  const excluded = x.members
    .filter((m) => m.epoch !== undefined && !namedIn(x.names, m.slot) && !x.keepOut?.includes(m.id))
    .map((m) => ({ id: m.id, epoch: m.epoch! }));
  return excluded.length === 0 ? null : { term: x.term, at: x.at, excluded };
}

/** Whether synchronous_standby_names `names` (as syncStandbyNames writes them) names `slot`. */
export function namedIn(names: string, slot: string): boolean {
  return names.includes(`"${slot}"`);
}

/** A record as a standby holds it: from leader `from`, heard while that node led in `term`. */
export interface HeldRecord { from: string; term: number; exclusion: Exclusion | null }

/** What this node knows of leadership now: the leader it follows (null: none, an election) and its current term. */
export interface Leadership { leader: string | null; term: number }

/**
 * The record to hold after a state message from `from`. Only the current leader's counts, and its
 * exclusion only for this node's current term (a record computed in another term says nothing
 * about the names in force now: held as none). A message from anyone else changes nothing.
 */
export function heardRecord(held: HeldRecord | null, from: string, exclusion: Exclusion | null, now: Leadership): HeldRecord | null {
  if (now.leader !== from) return keepRecord(held, now);
  return { from, term: now.term, exclusion: exclusion && exclusion.term === now.term ? exclusion : null };
}

/**
 * The record a standby keeps: the one from leader L of term T holds while L leads in T, and for the
 * votes of every later term until a leader of a later term is heard. The election that follows the
 * primary's death (no leader, the term moving past T, perhaps more than once) keeps it: the cap is
 * what this node votes with for the next term. Any leader heard in another term (L again included:
 * its primary may name this node in the new term), or another leader, ends it: from then on the
 * old record says nothing, even once that leader is gone too.
 */
export function keepRecord(record: HeldRecord | null, now: Leadership): HeldRecord | null {
  if (!record || now.leader === null) return record;
  return now.leader === record.from && now.term === record.term ? record : null;
}

/**
 * The cap this node applies to the position it votes with, or null (vote with the full position).
 * Only a node that cannot lead caps; only with a record kept (keepRecord) naming this node with the
 * epoch of its own current announcement.
 */
export function capFor(x: { canLead: boolean; self: string; epoch: number; record: HeldRecord | null; now: Leadership }): Position | null {
  const kept = keepRecord(x.record, x.now);
  if (x.canLead || !kept?.exclusion) return null;
  const r = kept.exclusion;
  return r.excluded.some((e) => e.id === x.self && e.epoch === x.epoch) ? r.at : null;
}

/** The position to vote (or publish, on etcd) with: min(position, cap). */
export function votingPosition(position: Position, cap: Position | null): Position {
  return cap && comparePosition(cap, position) < 0 ? cap : position;
}
