// Which permanent slots a node creates and which it drops, from the config, the node's slots and
// the record of the slots pgherd made on this node (record.ts). Pure.
//
// A slot is dropped only when all of these hold: its name is in the record (pgherd created it here:
// on a primary, or as a copy on a standby), it is no longer in [[slots.permanent]], it is not one of
// pgherd's own standby slots (pgherd_*), and no consumer is connected to it (an active slot cannot be
// dropped; pgherd does not cut the consumer off, it retries every round). A slot an operator made
// by hand is never in the record, so it is never dropped, configured or not.
//
// Nor is it dropped on a standby promoted since, which carries it on (review: the standbys recorded
// their copies as pgherd's, and the new primary dropped the operator's slot once it left the
// config). The record says who made the slot each name stands for: the primary reports it with each
// permanent slot (Made: "pgherd" when its record names the slot as pgherd's), a standby records its
// copy with what the primary reported, and on a primary a copy of the operator's slot is never
// dropped. On a standby it is (pgherd made that copy, and no longer moves it forward).
import type { PermanentSlot } from "../config/schema-backup.ts";

export interface NodeSlot {
  name: string;
  type: "physical" | "logical";
  plugin: string | null;
  database: string | null;
  active: boolean;
}

/**
 * Who made a permanent slot: "pgherd" (a primary created it, pgherd's agent) or "operator" (it
 * existed when it was configured: made by hand). A copy on a standby stands for the primary's slot
 * and carries its maker.
 */
export type Made = "pgherd" | "operator";

export interface SlotPlanInput {
  want: readonly PermanentSlot[];
  have: readonly NodeSlot[];
  /** The permanent slots pgherd made on this node (the durable record), each with who made the slot it stands for. */
  managed: ReadonlyMap<string, Made>;
  primary: boolean;
  /** A standby whose server synchronizes the primary's failover slots itself (PostgreSQL ≥ 17). */
  serverSync: boolean;
  /** A standby: who made each slot the primary reports (madeBy); empty while no primary reports. */
  origin?: ReadonlyMap<string, Made>;
}

export interface SlotPlan {
  /** Primary: configured slots that do not exist (recorded, then created). */
  create: PermanentSlot[];
  /** Primary: configured names taken by a slot of another type, plugin or database (left alone). */
  conflict: PermanentSlot[];
  /** pgherd's slots removed from the config, idle: dropped. */
  drop: string[];
  /** pgherd's slots removed from the config that a consumer still holds: retried next round. */
  busy: string[];
  /** Record entries with no slot left: removed from the record. */
  forget: string[];
  /**
   * Standby: record entries to write, with who made the primary's slot: a configured logical slot
   * the server synchronized here (PostgreSQL ≥ 17), and a recorded copy whose maker the primary
   * reports otherwise than the record says.
   */
  adopt: { name: string; made: Made }[];
}

export const OWN_SLOT_PREFIX = "pgherd_";

/**
 * The copies a standby holds: the configured permanent slots its server lists with the configured
 * type (a logical copy once a restart loaded it; on PostgreSQL ≥ 17 a synchronized one once it is
 * persistent).
 */
export function heldCopies(want: readonly PermanentSlot[], slots: readonly { name: string; type: string; lost?: boolean }[]): string[] {
  // An invalidated copy holds nothing a consumer could go on from (review: on PostgreSQL 16 a loaded
  // logical copy can be invalidated by a recovery conflict; a switchover to this standby then lost it).
  const have = new Map(slots.filter((s) => !s.lost).map((s) => [s.name, s.type]));
  return want.filter((w) => have.get(w.name) === w.type).map((w) => w.name).sort();
}

export function planPermanentSlots(i: SlotPlanInput): SlotPlan {
  const have = new Map(i.have.map((s) => [s.name, s]));
  const wanted = new Map(i.want.map((w) => [w.name, w]));
  const plan: SlotPlan = { create: [], conflict: [], drop: [], busy: [], forget: [], adopt: [] };
  if (i.primary) {
    for (const w of i.want) {
      const s = have.get(w.name);
      if (!s) plan.create.push(w);
      else if (s.type !== w.type || (w.type === "logical" && (s.plugin !== w.plugin || s.database !== w.database))) plan.conflict.push(w);
    }
  } else {
    for (const w of i.want) {
      const made = i.origin?.get(w.name);
      if (!made || have.get(w.name)?.type !== w.type) continue;
      const recorded = i.managed.get(w.name);
      // A slot not in the record here is the server's synchronized copy or one made by hand on this standby (left alone).
      if (recorded === undefined ? i.serverSync && w.type === "logical" : recorded !== made) plan.adopt.push({ name: w.name, made });
    }
  }
  for (const [name, made] of [...i.managed].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (wanted.has(name) || name.startsWith(OWN_SLOT_PREFIX)) continue;
    const s = have.get(name);
    if (!s) plan.forget.push(name);
    // The operator's slot, carried on by this node since a failover or switchover: kept, as on the node it was made on.
    else if (i.primary && made === "operator") continue;
    // The server's synchronization drops its copy once the primary's slot is gone (it refuses a manual drop).
    else if (!i.primary && i.serverSync && s.type === "logical") continue;
    else if (s.active) plan.busy.push(name);
    else plan.drop.push(name);
  }
  return plan;
}
