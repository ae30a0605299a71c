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
  /** New versions: identifies this announcement; a new one whenever promotability may have changed (each agent start). */
  epoch?: number;
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
 * announcement carries an epoch. null without confirmed names.
 */
export function exclusionRecord(x: {
  term: number; at: Position | null; names: string; members: ReadonlyArray<{ id: string; slot: string; epoch?: number }>;
}): Exclusion | null {
  if (!x.at || x.names === "") return null;
  const excluded = x.members.filter((m) => m.epoch !== undefined && !namedIn(x.names, m.slot)).map((m) => ({ id: m.id, epoch: m.epoch! }));
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
