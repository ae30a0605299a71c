// Who may take the etcd leader key, and what is stored under a cluster's prefix. Pure: no I/O,
// time passed in. The rule replaces the built-in election's "a voter refuses a candidate behind
// it, after it stopped streaming from the old primary" (docs/design.md, the etcd backend):
// once the leader key of term T is gone, every member stops streaming and publishes its final
// position marked `detachedFor: T + 1`; a candidate takes the key only with such reports from a
// majority of the voters, none of them ahead of it, and in the same transaction that checks none
// of those reports (nor the membership, nor the guard) changed since it read them.
import { z } from "zod";
import { comparePosition, type Position } from "../../core/position.ts";
import { maxTimeline, withTimeline } from "../../core/timelines.ts";
import { GuardSchema, MembershipSchema, NodeIdSchema, PositionSchema, type Guard, type Membership } from "../../core/messages.ts";
import { majority } from "../../core/quorum.ts";
import { wireNodeNameSchema } from "../../config/hostport.ts";

/** Every key of one cluster, under `<prefix>/<cluster>/`. Nothing of this backend is written elsewhere. */
export function clusterKeys(prefix: string, cluster: string) {
  const root = `${prefix.replace(/\/+$/, "")}/${cluster}/`;
  return {
    root,
    leader: `${root}leader`,
    membership: `${root}membership`,
    guard: `${root}guard`,
    transfer: `${root}transfer`,
    /** Written (no lease) in the transaction that takes the leader key: its mod revision is the latest term. */
    lastLeader: `${root}last-leader`,
    members: `${root}members/`,
    member: (id: string) => `${root}members/${id}`,
  };
}
export type ClusterKeys = ReturnType<typeof clusterKeys>;

/** The cluster name of a key under `<prefix>/`, or null (for listing every cluster in an etcd). */
export function clusterOfKey(prefix: string, key: string): string | null {
  const p = `${prefix.replace(/\/+$/, "")}/`;
  if (!key.startsWith(p)) return null;
  const name = key.slice(p.length).split("/")[0] ?? "";
  return /^[a-z0-9_-]{1,63}$/.test(name) ? name : null;
}

export const MemberReportSchema = z.strictObject({
  name: wireNodeNameSchema,
  role: z.enum(["database", "witness"]),
  canLead: z.boolean(),
  priority: z.number().int().min(0).max(1000),
  position: PositionSchema,
  /** Set once streaming from the primary of term detachedFor - 1 stopped: `position` is final for it. */
  detachedFor: z.number().int().min(0).nullable(),
});
export type MemberReport = z.infer<typeof MemberReportSchema>;

export const TransferSchema = z.strictObject({ to: NodeIdSchema, term: z.number().int().min(0) });
export type Transfer = z.infer<typeof TransferSchema>;
export const LeaderValueSchema = NodeIdSchema;
export { GuardSchema, MembershipSchema };

/** One decoded snapshot of a cluster's prefix (a single range read, one revision). */
export interface Snapshot {
  revision: number;
  leader: { id: string; term: number; lease: string } | null;
  membership: { value: Membership; mod: number } | null;
  guard: { value: Guard; mod: number } | null;
  /**
   * The guard key's mod revision as read, valid or not (0: absent): what a take and the leader's
   * guard writes compare against, so a value that does not validate can be replaced, never a
   * compare that can no longer succeed. Such a value may have been a block: no automatic take on it.
   */
  guardMod: number;
  transfer: Transfer | null;
  /** The term of the latest leader ever (0: none yet), also once its key is gone. */
  lastTerm: number;
  members: Map<string, { report: MemberReport; mod: number }>;
  /** Keys that failed validation (never acted on), for a log line. */
  invalid: string[];
}

export interface RawKv { key: string; value: string; createRevision: number; modRevision: number; lease: string }

function parseJson<T>(schema: z.ZodType<T>, text: string): T | null {
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** Decodes a range of the cluster's prefix; a value that does not validate is listed, never used. */
export function decodeSnapshot(keys: ClusterKeys, revision: number, kvs: readonly RawKv[]): Snapshot {
  const s: Snapshot = { revision, leader: null, membership: null, guard: null, guardMod: 0, transfer: null, lastTerm: 0, members: new Map(), invalid: [] };
  for (const kv of kvs) {
    let ok = true;
    if (kv.key === keys.leader) {
      ok = LeaderValueSchema.safeParse(kv.value).success;
      if (ok) s.leader = { id: kv.value, term: kv.createRevision, lease: kv.lease };
    } else if (kv.key === keys.membership) {
      const m = parseJson(MembershipSchema, kv.value);
      ok = m !== null;
      if (m) s.membership = { value: m, mod: kv.modRevision };
    } else if (kv.key === keys.guard) {
      const g = parseJson(GuardSchema, kv.value);
      s.guardMod = kv.modRevision;
      ok = g !== null;
      if (g) s.guard = { value: g, mod: kv.modRevision };
    } else if (kv.key === keys.transfer) {
      s.transfer = parseJson(TransferSchema, kv.value);
      ok = s.transfer !== null;
    } else if (kv.key === keys.lastLeader) {
      s.lastTerm = kv.modRevision;
    } else if (kv.key.startsWith(keys.members)) {
      const id = kv.key.slice(keys.members.length);
      const r = parseJson(MemberReportSchema, kv.value);
      ok = r !== null && NodeIdSchema.safeParse(id).success;
      if (ok) s.members.set(id, { report: r!, mod: kv.modRevision });
    }
    if (!ok) s.invalid.push(kv.key);
  }
  return s;
}

export interface CandidacyInput {
  self: string;
  canLead: boolean;
  priority: number;
  snapshot: Snapshot;
  /** Term (create revision) of the last leader key this node saw; 0 before any. */
  vacatedTerm: number;
  /** Local ms at which this node first saw the key vacant after `vacatedTerm`. */
  vacantSince: number;
  now: number;
  /** An operator's `failover --to` this node; `force`: --accept-data-loss (the guard is ignored). */
  requested: { force: boolean } | null;
  /** This node resigned: it stands again only after this local time (or when asked to). */
  resignedUntil: number;
  /** How long the target of a transfer, and a better-placed equal candidate, get before others stand. */
  deferMs: number;
}

export type Candidacy =
  | { kind: "take"; counted: string[] }
  | { kind: "wait"; reason: string };

const wait = (reason: string): Candidacy => ({ kind: "wait", reason });

/** Ahead in (priority, then lower node id): who stands first among candidates at the same position. */
function better(a: { id: string; priority: number }, b: { id: string; priority: number }): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.id < b.id;
}

/** May this node take the vacant leader key now? */
export function decideCandidacy(i: CandidacyInput): Candidacy {
  const s = i.snapshot;
  if (s.leader) return wait("there is a leader");
  if (!i.canLead) return wait("this node does not stand (witness, nofailover or priority 0)");
  const m = s.membership?.value;
  if (!m) return wait("no membership yet");
  if (!m.voters.includes(i.self)) return wait("not a voter");
  if (!i.requested && i.now < i.resignedUntil) return wait("resigned recently");
  const need = i.vacatedTerm + 1;
  // Final for this vacancy: marked for it, and written after the last take etcd shows (its mod
  // revision above the last leader's term, as every final position for the vacancy after that term
  // is). A report written before that take is left from before an etcd restore (term-core.ts): a
  // node that has since died never wrote it again, and its position may be behind acknowledged writes.
  const final = (r: { report: MemberReport; mod: number } | undefined) =>
    r !== undefined && r.report.detachedFor !== null && r.report.detachedFor >= need && r.mod > s.lastTerm;
  const own = s.members.get(i.self);
  if (!own || !final(own)) return wait("own final position not published yet");
  const g = s.guard?.value ?? null;
  const force = i.requested?.force === true;
  if (g?.block && g.holder !== i.self && !force) return wait("automatic failover is blocked by the durability guard (the last primary ran without enough synchronous standbys)");
  // A guard that does not validate may have been a block: automatic failover waits for an operator
  // (forced), whose leader's first guard write then replaces it (it compares the revision as read).
  if (!g && s.guardMod !== 0 && !force) return wait("the durability guard in etcd does not validate: automatic failover waits for an operator (pgherd failover --accept-data-loss)");
  if (g?.floor && !force && comparePosition(own.report.position, g.floor) < 0) return wait(`behind the durability floor ${g.floor.timeline}/${g.floor.lsn}`);
  const fresh = m.voters.filter((v) => final(s.members.get(v)));
  const q = majority(m.voters.length);
  if (fresh.length < q) return wait(`final positions from ${fresh.length} of ${m.voters.length} voters, ${q} needed`);
  for (const v of fresh) {
    const r = s.members.get(v)!.report;
    if (comparePosition(r.position, own.report.position) > 0) return wait(`${r.name} is ahead (${r.position.timeline}/${r.position.lsn})`);
  }
  if (!i.requested && i.now < i.vacantSince + i.deferMs) {
    const transfer = s.transfer && s.transfer.term === i.vacatedTerm ? s.transfer.to : null;
    if (transfer && transfer !== i.self) return wait("leadership is being handed to another node");
    if (transfer === i.self) return { kind: "take", counted: fresh };
    const me = { id: i.self, priority: i.priority };
    const first = fresh.find((v) => {
      const r = s.members.get(v)!.report;
      return v !== i.self && r.canLead && comparePosition(r.position, own.report.position) === 0 && better({ id: v, priority: r.priority }, me);
    });
    if (first) return wait(`${s.members.get(first)!.report.name} is as advanced and stands first`);
  }
  return { kind: "take", counted: fresh };
}

/**
 * A read shows the leader key with this node's id while this process does not lead on it.
 * It is this node's only when its term is the one this node recorded taking (`held`: the state
 * directory's record, src/store/election-state.ts etcdKey, kept until a read shows that key gone or
 * another's), or, on this process's own lease, a take of this process whose answer was lost
 * (`lostTake`: the revision of the read that take was decided on; its key's term is above it).
 * Any other key with this node's id was brought back by an etcd restore from a snapshot (review: a
 * standby took back its key of an earlier term and promoted without the final positions, the guard
 * or the floor): on this process's lease it is deleted ("drop": nobody leads on it, and the vacancy
 * then runs the election), on another lease it is left to run out like another node's ("ignore").
 * This node's key:
 * - on a lease of a previous run (an agent restart): "resume" (take the lease back; lease.ts takeBack);
 * - on its own lease: "win", unless this node resigned from that very key and its delete did not get
 *   through: then "release" (send the delete again) and stay out until the resign pause is over; a
 *   resign because PostgreSQL could not start or promote must not loop back into leading at the next
 *   read. After the pause it leads on it again (the key never left, no one else could lead
 *   meanwhile) rather than leave the cluster without a leader while etcd refuses the delete.
 */
export type OwnKeyAction = "win" | "release" | "resume" | "drop" | "ignore";
export function ownKeyAction(i: {
  keyTerm: number; onOwnLease: boolean; held: number | null; lostTake: number | null;
  resigned: { term: number; until: number } | null; now: number;
}): OwnKeyAction {
  const ours = i.held === i.keyTerm || (i.onOwnLease && i.lostTake !== null && i.keyTerm > i.lostTake);
  if (!ours) return i.onOwnLease ? "drop" : "ignore";
  if (!i.onOwnLease) return "resume";
  return i.resigned !== null && i.resigned.term === i.keyTerm && i.now < i.resigned.until ? "release" : "win";
}

/** The record of the leader key this node holds after a read showing `leader`: kept while the read shows that key as this node's, else none. */
export function heldAfterRead(held: number | null, leader: Snapshot["leader"], self: string): number | null {
  return held !== null && leader !== null && leader.id === self && leader.term === held ? held : null;
}

/**
 * The leader key of `vacatedTerm` is gone: the term whose final position this node should stop
 * streaming for and publish now, or null. Not while a detach runs, nor once done for that term,
 * nor under a failsafe promise (the final position is this node's vote for the next term), nor on
 * a database node whose own PostgreSQL position this process has not reported yet: a detach of a
 * server the agent has not looked at may report no position, and the report would count, with
 * ZERO, among a majority's final positions, behind a candidate that lacks this node's WAL.
 */
export function finalPositionDue(i: { vacatedTerm: number; detaching: boolean; detachedFor: number | null; promised: boolean; positionKnown: boolean }): number | null {
  const term = i.vacatedTerm + 1;
  if (i.detaching || (i.detachedFor ?? -1) >= term || i.promised || !i.positionKnown) return null;
  return term;
}

/**
 * Whether a read shows the leader key as this node's, bound to its lease `leaseId` (and of `term`,
 * when given): a leader's fencing deadline moves with a renewal only on such a read (backend.ts
 * tick), and it stops leading on any other.
 */
export function ownsKey(leader: Snapshot["leader"], self: string, leaseId: string | null, term?: number): boolean {
  return leader !== null && leader.id === self && leader.lease === leaseId && (term === undefined || leader.term === term);
}

/** The guard the leader publishes: seq one past the stored one; the timeline reservation is kept. */
export function nextGuard(current: Guard | null, term: number, self: string, block: boolean, floor: Position | null): Guard {
  return withTimeline<Guard>({ term, seq: (current?.seq ?? 0) + 1, block, holder: block ? self : null, floor }, current?.timeline);
}

/**
 * A guard in etcd that does not validate holds every automatic take (decideCandidacy): the leader
 * holding its key writes a valid one over it at once, without a block and with its floor at the
 * leader's own position, as after a resync (every acknowledged commit is at or below it). null:
 * nothing to repair (a valid guard, none at all, or this node does not lead).
 */
export function guardRepair(s: Pick<Snapshot, "guard" | "guardMod">, x: { leading: boolean; position: Position }): { block: false; floor: Position } | null {
  return x.leading && s.guard === null && s.guardMod !== 0 ? { block: false, floor: x.position } : null;
}

/** The stored guard with timeline `n` reserved (core/timelines.ts): block, holder and floor as they are. */
export function reservedGuard(current: Guard | null, term: number, n: number): Guard {
  const g = current ?? { seq: 0, block: false, holder: null, floor: null };
  return withTimeline<Guard>({ ...g, term, seq: g.seq + 1 }, maxTimeline(g.timeline, n));
}

/** A member report is written again at most this often when only its position moved. */
export const REPORT_EVERY_MS = 1000;

/**
 * Whether this node writes its member report `report` now. `shown`: its report in the last read
 * (null: none); `bound`: one was written under this lease already; `sinceMs`: since that write.
 * Whenever the read shows another report than this one, whatever was written last: a write
 * sent without an answer may apply after a later one (an older position without `detachedFor`
 * over the final one), and a detached node's report changes no more by itself. At once when the
 * read lacks it, or shows another `detachedFor` or a position ahead of it; else at most every
 * REPORT_EVERY_MS.
 */
export function reportDue(i: { report: MemberReport; shown: MemberReport | null; bound: boolean; sinceMs: number }): boolean {
  const { report: r, shown: s } = i;
  if (!i.bound) return true;
  if (s && s.name === r.name && s.role === r.role && s.canLead === r.canLead && s.priority === r.priority && s.detachedFor === r.detachedFor && comparePosition(s.position, r.position) === 0) return false;
  const urgent = !s || s.detachedFor !== r.detachedFor || comparePosition(s.position, r.position) > 0;
  return urgent || i.sinceMs >= REPORT_EVERY_MS;
}
