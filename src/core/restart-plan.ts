// A rolling restart as a pure plan: from the cluster as it is now (and what this run already did)
// to the one next step. Standbys one at a time, each back to streaming before the next, then the
// primary by switchover (or in place); never more than one node down; durability honoured.
//
// PostgreSQL orders five settings between primary and standbys: a standby refuses to start (or
// pauses replay) when its value is lower than the primary's, and the primary's value reaches the
// standby through WAL (its pg_control). So an increase reaches the standbys first, a decrease the
// primary first; the rules below check the values themselves, which covers both.
import { z } from "zod";
import type { MemberRow } from "./cluster-view.ts";
import { majority } from "./quorum.ts";

/** Settings a standby must run at least as high as its primary (PostgreSQL's hot-standby check). */
export const ORDERED_SETTINGS = ["max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions", "max_locks_per_transaction"] as const;

export type OrderedName = (typeof ORDERED_SETTINGS)[number];

/**
 * A standby whose start PostgreSQL refused: the settings its configuration runs lower than its
 * pg_control holds (the primary's values, WAL-logged and replayed, or its source's for a fresh
 * clone or a rewind), raised to those for one more start. A setting lowered cluster-wide reaches
 * every node's files at once, so any standby start before the primary runs it (a switchover's old
 * primary, a rewind, a clone, a crash) is refused ("insufficient parameter settings"). The files
 * keep the configured value, in force from a later start. `next` and `control` by name; missing = unknown.
 */
export function startFloor(next: Partial<Record<OrderedName, number>>, control: Partial<Record<OrderedName, number>>): Partial<Record<OrderedName, number>> {
  const floor: Partial<Record<OrderedName, number>> = {};
  for (const name of ORDERED_SETTINGS) {
    const n = next[name];
    const c = control[name];
    if (n !== undefined && c !== undefined && n < c) floor[name] = c;
  }
  return floor;
}

const count = z.number().int().min(0).max(2 ** 31);
/** A newer peer's extra fields are dropped (docs/upgrade.md: a peer one version ahead may add fields). */
export const OrderedValueSchema = z.object({
  name: z.enum(ORDERED_SETTINGS),
  /** The value the server runs with (pg_settings). */
  running: count,
  /** The value in its configuration files, in force after a restart (pg_file_settings). */
  next: count,
  /** A standby: the primary's value as its pg_control holds it (replayed from WAL); null when not read. */
  control: count.nullable(),
});
export type OrderedValue = z.infer<typeof OrderedValueSchema>;

/**
 * A report's ordered values: one this build cannot read (a setting a newer peer added to the list)
 * is left out, not the whole message (review: every state message of an upgraded standby would be
 * dropped by a leader of the version before).
 */
export const OrderedListSchema = z.array(z.unknown()).max(32).transform((xs): OrderedValue[] => xs.flatMap((x) => {
  const r = OrderedValueSchema.safeParse(x);
  return r.success ? [r.data] : [];
}));

export interface RestartMember {
  name: string;
  role: "primary" | "standby" | "other";
  /** Up, and for a standby streaming: not down for this plan's "one node down at a time". */
  healthy: boolean;
  /** How it is when not healthy (for the messages). */
  state: string;
  pending: readonly string[];
  ordered: readonly OrderedValue[];
  /** A standby: the primary's permanent slots it holds no copy of yet (a switchover to it is refused). */
  missingSlotCopies?: readonly string[];
  /** false: never promoted (nofailover or priority 0): never the switchover's target. */
  promotable?: boolean;
}

export interface RestartInput {
  members: readonly RestartMember[];
  /** The nodes this run restarts, chosen at its start (chooseTargets). */
  targets: readonly string[];
  /** The nodes this run already restarted (a switched-over primary counts once it handed over). */
  done: readonly string[];
  /** The primary restarts in place instead of by switchover. */
  inPlace: boolean;
  /** Synchronous standbys the durability plan needs (k; 0 when async). */
  syncNeeded: number;
  /** Go on even when a standby's restart leaves fewer synchronous standbys than needed. */
  force: boolean;
}

export type RestartStep =
  | { kind: "restart"; node: string; primary: boolean; why: string }
  | { kind: "switchover"; from: string; to: string; why: string }
  | { kind: "wait"; reason: string }
  | { kind: "blocked"; reason: string }
  | { kind: "done" };

/**
 * A member as the plan sees it: witnesses are "other", and so is a node pending approval (not a
 * member the cluster counts on: it has no data yet, and the plan neither restarts it nor waits for it
 * to stream; review: it held every `pgherd restart` until its timeout); a database member not a
 * running primary counts as a standby (healthy only while streaming).
 */
export function restartMember(m: MemberRow): RestartMember {
  const role = m.role === "witness" || (m.membership === "pending" && m.role !== "primary") ? "other" : m.role === "primary" ? "primary" : "standby";
  const healthy = role === "primary" ? m.state === "running" : role === "standby" ? m.state === "streaming" : true;
  return { name: m.name, role, healthy, state: `${m.role}, ${m.state}`, pending: m.pendingRestart ?? [], ordered: m.ordered ?? [], missingSlotCopies: m.missingSlotCopies ?? [], promotable: m.promotable !== false };
}

/**
 * One member's restart asked of the leader (POST /node/restart): the rule "never more than one node
 * down" holds for it too, so another restart under way or another database member not healthy
 * refuses it; the member itself may be down (restarting it is how it comes back). null: allowed.
 */
export function restartRefusal(members: readonly RestartMember[], node: string, underWay: string | null): string | null {
  if (underWay !== null) return `the restart of ${underWay} is under way: one node down at a time`;
  if (!members.some((m) => m.name === node)) return `${node} is not in the leader's view of the cluster`;
  const down = members.filter((m) => m.role !== "other" && m.name !== node && !m.healthy);
  if (down.length === 0) return null;
  return `${down.map((m) => `${m.name} is ${m.state}`).join(", ")}: restarting ${node} now would take a second node down (never more than one node down; force to restart it anyway)`;
}

/** k of the durability plan: synchronous standbys a commit needs with these voters (witnesses count). */
export function syncNeeded(voters: number, async: boolean): number {
  return async ? 0 : voters - majority(voters);
}

/** The nodes a run restarts: --member X, else --pending (those with a pending restart), else every database member. */
export function chooseTargets(members: readonly RestartMember[], o: { member?: string; pending: boolean }): { ok: true; targets: string[] } | { ok: false; reason: string } {
  const db = members.filter((m) => m.role !== "other");
  if (o.member) {
    const m = members.find((x) => x.name === o.member);
    if (!m) return { ok: false, reason: `no member named ${o.member}` };
    if (m.role === "other") return { ok: false, reason: `${o.member} runs no PostgreSQL this plan can restart (${m.state})` };
    if (o.pending && m.pending.length === 0) return { ok: true, targets: [] };
    return { ok: true, targets: [m.name] };
  }
  return { ok: true, targets: db.filter((m) => !o.pending || m.pending.length > 0).map((m) => m.name).sort() };
}

/** The first ordered setting for which `v` would be below `floor`, described; null when none. */
function below(values: readonly OrderedValue[], floorOf: (name: string) => number | null, pick: (v: OrderedValue) => number): { name: string; value: number; floor: number } | null {
  for (const v of values) {
    const f = floorOf(v.name);
    if (f !== null && pick(v) < f) return { name: v.name, value: pick(v), floor: f };
  }
  return null;
}

const valueOf = (m: RestartMember, name: string, pick: (v: OrderedValue) => number): number | null => {
  const v = m.ordered.find((x) => x.name === name);
  return v ? pick(v) : null;
};
const running = (v: OrderedValue) => v.running;
/** The primary's value a standby must match: what its pg_control holds, else what the primary runs. */
const primaryValueAt = (s: RestartMember, p: RestartMember, name: string): number | null =>
  s.ordered.find((v) => v.name === name)?.control ?? valueOf(p, name, running);
const next = (v: OrderedValue) => v.next;

export function planRestart(x: RestartInput): RestartStep {
  const db = x.members.filter((m) => m.role !== "other");
  // Rule: never more than one node down. Whatever is not healthy (the one just restarted, or a
  // node down for another reason) is waited for before anything else goes down.
  const down = db.find((m) => !m.healthy);
  if (down) return { kind: "wait", reason: `${down.name} is ${down.state}: waiting until it ${down.role === "standby" ? "streams" : "runs"} again (never more than one node down)` };
  const primary = db.find((m) => m.role === "primary");
  if (!primary) return { kind: "wait", reason: "there is no primary: waiting for one" };
  const left = x.targets.filter((t) => !x.done.includes(t));
  if (left.length === 0) return { kind: "done" };
  // Rule: a member restarted in this run runs its configured values, yet the leader's view may
  // still hold its report from before the restart (a standby reads its settings every few rounds):
  // a value there below the configured one is that old report, waited for, never taken as what it
  // runs (review: right after the last standby's restart, --in-place stopped with "restart the
  // standbys first"). A value above the configured one (a start raised to pg_control's) is real.
  for (const m of db) {
    const old = x.done.includes(m.name) ? m.ordered.find((v) => v.running < v.next) : undefined;
    if (old) return { kind: "wait", reason: `${m.name} was restarted in this run, but its report still says ${old.name} = ${old.running} (configured ${old.next}): waiting for its next report` };
  }
  const standbys = db.filter((m) => m.role === "standby");
  const todo = standbys.filter((s) => left.includes(s.name)).sort((a, b) => a.name.localeCompare(b.name));

  // Rule: standbys first, one at a time, each only when its new values are at least the primary's
  // (as its pg_control holds them: a lower one would refuse to start).
  const waits: string[] = [];
  for (const s of todo) {
    const low = below(s.ordered, (n) => primaryValueAt(s, primary, n), next);
    if (low) {
      const primaryNow = valueOf(primary, low.name, running);
      // The primary already runs the lower value (or was restarted with it in this run, and the
      // reports have not caught up): the standby has not replayed it yet.
      if ((primaryNow !== null && low.value >= primaryNow) || x.done.includes(primary.name)) waits.push(`${s.name} has not replayed the primary's ${low.name} = ${primaryNow} yet (its pg_control says ${low.floor})`);
      continue;
    }
    // Any other standby counts: one that cannot lead fills the synchronous set while fewer than k
    // promotable ones stream (core/sync-exclusion.ts syncSet).
    const streamingOthers = standbys.filter((o) => o.name !== s.name).length;
    if (streamingOthers < x.syncNeeded) {
      const why = `restarting ${s.name} leaves ${streamingOthers} of the ${x.syncNeeded} synchronous standby${x.syncNeeded > 1 ? "s" : ""} the durability plan needs: writes wait (strict) or the cluster degrades (quorum) while it restarts`;
      if (!x.force) return { kind: "blocked", reason: `${why}; --force to restart it anyway` };
      return { kind: "restart", node: s.name, primary: false, why: `forced: ${why}` };
    }
    return { kind: "restart", node: s.name, primary: false, why: "standbys first, one at a time" };
  }
  if (waits.length) return { kind: "wait", reason: waits[0]! };

  if (left.includes(primary.name)) {
    // Rule: in place, the primary's new values must not exceed any standby's (they replay them).
    const inPlaceLow = standbys.map((s) => ({ s, low: below(s.ordered, (n) => valueOf(primary, n, next), running) })).find((r) => r.low);
    const inPlaceWhy = inPlaceLow ? `${inPlaceLow.low!.name} rises to ${inPlaceLow.low!.floor} on the primary ${primary.name} while ${inPlaceLow.s.name} runs ${inPlaceLow.low!.value}: restart the standbys first` : null;
    if (!x.inPlace) {
      // Rule: by switchover, the new primary keeps its running values (they go into WAL at its
      // promotion): the old primary's new values and every other standby's must be at least those.
      const fits = (t: RestartMember) =>
        !below(primary.ordered, (n) => valueOf(t, n, running), next) &&
        standbys.every((u) => u === t || !below(u.ordered, (n) => valueOf(t, n, running), running));
      const missing = (t: RestartMember) => t.missingSlotCopies?.length ?? 0;
      const to = standbys.filter((t) => t.promotable !== false && fits(t)).sort((a, b) => missing(a) - missing(b) || Number(x.done.includes(b.name)) - Number(x.done.includes(a.name)) || a.name.localeCompare(b.name))[0];
      // Rule: the switchover's target holds a copy of every permanent slot (core/switchover.ts refuses it otherwise): wait for one.
      if (to && missing(to)) return { kind: "wait", reason: `no standby holds a copy of every permanent slot yet (${to.name} lacks ${to.missingSlotCopies!.join(", ")}): waiting before the switchover` };
      if (to) return { kind: "switchover", from: primary.name, to: to.name, why: "the primary last, by switchover: it comes back as a standby with its new settings" };
      if (standbys.length > 0 && !inPlaceWhy) {
        const low = below(primary.ordered, (n) => valueOf(standbys[0]!, n, running), next);
        const what = low ? `${low.name} falls to ${low.value} on ${primary.name}: PostgreSQL needs the primary to run the lower value before any standby does, and a switchover would leave the standbys' ${low.floor} in force` : standbys.every((t) => t.promotable === false) ? "no standby can be promoted (nofailover or priority 0)" : "no standby can take over with these settings";
        return { kind: "restart", node: primary.name, primary: true, why: `${what}: restarting the primary in place` };
      }
    }
    if (inPlaceWhy) return { kind: "blocked", reason: inPlaceWhy };
    return { kind: "restart", node: primary.name, primary: true, why: standbys.length ? "the primary in place (--in-place)" : "no standby to switch over to: the primary in place" };
  }
  // Standbys left that need the primary to run a lower value first, and the primary is not part of this run.
  const stuck = todo[0];
  if (stuck) {
    const low = below(stuck.ordered, (n) => primaryValueAt(stuck, primary, n), next)!;
    return { kind: "blocked", reason: `${stuck.name} would run ${low.name} = ${low.value} below the primary's ${low.floor}: PostgreSQL refuses to start it; restart the primary ${primary.name} first` };
  }
  // A target that is neither the primary nor a standby now (it changed role meanwhile).
  return { kind: "blocked", reason: `${left.join(", ")} ${left.length > 1 ? "are" : "is"} neither the primary nor a streaming standby now` };
}
