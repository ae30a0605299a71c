// Which permanent slots a node creates and which it drops, from the config, the node's slots and
// the record of the slots pgherd made on this node (record.ts). Pure.
//
// A slot is dropped only when all of these hold: its name is in the record (pgherd created it here:
// on a primary, or as a copy on a standby), it is no longer in [[slots.permanent]], it is not one of
// pgherd's own standby slots (pgherd_*), and no consumer is connected to it (an active slot cannot be
// dropped; pgherd does not cut the consumer off, it retries every round). A slot an operator made
// by hand is never in the record, so it is never dropped, configured or not.
import type { PermanentSlot } from "../config/schema-backup.ts";

export interface NodeSlot {
  name: string;
  type: "physical" | "logical";
  plugin: string | null;
  database: string | null;
  active: boolean;
}

export interface SlotPlanInput {
  want: readonly PermanentSlot[];
  have: readonly NodeSlot[];
  /** Names of the permanent slots pgherd made on this node (the durable record). */
  managed: ReadonlySet<string>;
  primary: boolean;
  /** A standby whose server synchronizes the primary's failover slots itself (PostgreSQL ≥ 17). */
  serverSync: boolean;
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
  /** Standby with server synchronization: configured logical slots the server made here, recorded. */
  adopt: string[];
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
  } else if (i.serverSync) {
    for (const w of i.want) if (w.type === "logical" && have.get(w.name)?.type === "logical" && !i.managed.has(w.name)) plan.adopt.push(w.name);
  }
  for (const name of [...i.managed].sort()) {
    if (wanted.has(name) || name.startsWith(OWN_SLOT_PREFIX)) continue;
    const s = have.get(name);
    if (!s) plan.forget.push(name);
    // The server's synchronization drops its copy once the primary's slot is gone (it refuses a manual drop).
    else if (!i.primary && i.serverSync && s.type === "logical") continue;
    else if (s.active) plan.busy.push(name);
    else plan.drop.push(name);
  }
  return plan;
}
