// When a primary lists its members' replication slots, and which it drops and makes then
// (src/agent/pg/slots.ts). Pure.
//
// The listing (pg_replication_slots with activity and retained WAL) makes missing slots, drops
// those of members that left or stayed down past slots.retain_minutes, and makes again those
// PostgreSQL invalidated (planMemberSlots). The round's probe already
// names every slot, so the listing is needed at once only when those names disagree with the
// members' (a slot to make or to drop), the members changed since the last listing, or the report
// does not say what the members need; otherwise once every `every` rounds, for what only the
// listing tells (a member down too long, an invalidated slot, the retained bytes for /metrics).
import { OWN_SLOT_PREFIX } from "./plan.ts";

export interface MemberListInput {
  /** The members' slot names now. */
  wanted: readonly string[];
  /** pgherd's physical member slots the round's probe found; null: no probe result. */
  found: readonly string[] | null;
  /** The members' slot names at the last listing; null: none yet. */
  listedFor: readonly string[] | null;
  /** The physical slots the primary reports (the last listing's): the members' and any other (a permanent slot, an operator's). */
  reported: readonly string[];
  /** Rounds skipped since the last listing. */
  skipped: number;
  every: number;
}

export function memberListDue(x: MemberListInput): boolean {
  const key = (names: readonly string[]) => [...names].sort().join();
  const want = key(x.wanted);
  if (x.found === null || x.listedFor === null) return true;
  // Only the member slots of the report count (review: a permanent physical slot or an operator's
  // in it had the member slots listed every round).
  const reported = key(x.reported.filter((n) => n.startsWith(OWN_SLOT_PREFIX)));
  return !(key(x.found) === want && key(x.listedFor) === want && reported === want && x.skipped < x.every - 1);
}

/** pgherd's physical member slots among a server's slots (by the name prefix every member slot has). */
export function memberSlotNames(slots: readonly { name: string; type: string }[]): string[] {
  return slots.filter((s) => s.type === "physical" && s.name.startsWith(OWN_SLOT_PREFIX)).map((s) => s.name);
}

export interface MemberSlot {
  name: string;
  active: boolean;
  /** pg_replication_slots.wal_status (null: unknown). */
  walStatus: string | null;
}

export interface MemberSlotInput {
  /** The server's physical slots named pgherd_* (the operator's others are never touched). */
  slots: readonly MemberSlot[];
  /** The standby members' slot names and their ids. */
  wanted: ReadonlyMap<string, string>;
  /** Members whose slot is kept while it exists, but not made (data the last report could not read). */
  kept?: ReadonlyMap<string, string>;
  /** How long a member's slot has been idle: the member down or its server stopped (ms; 0 while it runs). */
  downForMs(id: string): number;
  retainMs: number;
  /** Members whose slot was dropped for being down too long and that have not been back since. */
  droppedFor: ReadonlySet<string>;
}

export type MemberSlotDrop =
  /** Its member left the cluster, or has been down longer than retainMs (the WAL it holds could fill the disk). */
  | { name: string; why: "left" }
  | { name: string; why: "down"; id: string; downMs: number }
  /**
   * PostgreSQL invalidated it (wal_status lost): it reserves no WAL any more; made again below. A
   * standby connected to it (PostgreSQL before 18 lets one) is cut off and reconnects to the new one.
   */
  | { name: string; why: "lost" };

export interface MemberSlotPlan {
  drop: MemberSlotDrop[];
  /** Member slots to make: missing, or dropped as lost. */
  create: string[];
  /** Members whose drop-for-down mark ends: back, so their slot is made again. */
  forgive: string[];
}

/**
 * A down member keeps its slot for retainMs (so it catches up without a clone); then the idle slot
 * is dropped and made again only once the member is back. A member's slot that PostgreSQL
 * invalidated is dropped, in use or not, and made again. Pure.
 */
export function planMemberSlots(i: MemberSlotInput): MemberSlotPlan {
  const plan: MemberSlotPlan = { drop: [], create: [], forgive: [] };
  const kept = new Set<string>();
  for (const slot of i.slots) {
    const id = i.wanted.get(slot.name) ?? i.kept?.get(slot.name);
    if (id === undefined) plan.drop.push({ name: slot.name, why: "left" });
    else if (!slot.active && i.downForMs(id) > i.retainMs) plan.drop.push({ name: slot.name, why: "down", id, downMs: i.downForMs(id) });
    else if (slot.walStatus === "lost") plan.drop.push({ name: slot.name, why: "lost" });
    else kept.add(slot.name);
  }
  const downNow = new Set(plan.drop.flatMap((d) => (d.why === "down" ? [d.id] : [])));
  for (const [name, id] of i.wanted) {
    if (kept.has(name) || downNow.has(id)) continue;
    if (i.droppedFor.has(id)) {
      if (i.downForMs(id) > 0) continue; // still away: its slot waits for its return
      plan.forgive.push(id);
    }
    plan.create.push(name);
  }
  return plan;
}
