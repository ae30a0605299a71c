// Physical replication slots on the primary, one per standby. Retained WAL is reported so the
// caller can drop slots of members that are gone before they fill the disk.
import { z } from "zod";
import type { Db } from "./sql.ts";
import { sqlState } from "./sql.ts";

export interface SlotInfo {
  name: string;
  active: boolean;
  activePid: number | null;
  restartLsn: string | null;
  /** Bytes of WAL this slot holds back (null before it reserved WAL). */
  retainedBytes: number | null;
  /** PG ≥ 13 wal_status: reserved | extended | unreserved | lost. */
  walStatus: string | null;
}

const SLOT = /^[a-z0-9_]{1,63}$/;

/** Slot name for a member name: lower-case, [a-z0-9_], at most 63 chars. */
export function slotNameFor(member: string): string {
  const s = member.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 63);
  if (!s) throw new Error(`cannot derive a slot name from ${JSON.stringify(member)}`);
  return s;
}

function check(name: string): string {
  if (!SLOT.test(name)) throw new Error(`invalid slot name ${JSON.stringify(name)}: only a-z, 0-9 and _ (max 63)`);
  return name;
}

/** Create the physical slot reserving WAL now (so a clone started later finds its WAL); true if created. */
export async function ensureSlot(db: Db, name: string): Promise<boolean> {
  check(name);
  return db.query(`ensure slot ${name}`, async (sql) => {
    const found = await sql`SELECT slot_type FROM pg_replication_slots WHERE slot_name = ${name}`;
    if (found.length) {
      if (found[0]?.slot_type !== "physical") throw new Error(`slot ${name} exists but is not physical`);
      return false;
    }
    try {
      await sql`SELECT pg_create_physical_replication_slot(${name}, true)`;
      return true;
    } catch (e) {
      if (sqlState(e) === "42710") return false; // created concurrently
      throw e;
    }
  });
}

/** Drop a slot; with `force`, terminate the walsender holding it first. True if it existed. */
export async function dropSlot(db: Db, name: string, force = false): Promise<boolean> {
  check(name);
  return db.query(`drop slot ${name}`, async (sql) => {
    const rows = await sql`SELECT active_pid FROM pg_replication_slots WHERE slot_name = ${name}`;
    if (!rows.length) return false;
    const pid = z.number().int().nullable().parse(rows[0]?.active_pid ?? null);
    if (pid && force) {
      await sql`SELECT pg_terminate_backend(${pid})`;
      // The walsender releases the slot asynchronously; wait for it (bounded by the query deadline).
      for (let i = 0; i < 100; i++) {
        const r = await sql`SELECT active FROM pg_replication_slots WHERE slot_name = ${name}`;
        if (!r[0]?.active) break;
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    try {
      await sql`SELECT pg_drop_replication_slot(${name})`;
      return true;
    } catch (e) {
      if (sqlState(e) === "42704") return false; // dropped concurrently
      throw e;
    }
  });
}

const Row = z.object({
  slot_name: z.string(),
  active: z.boolean(),
  active_pid: z.number().int().nullable(),
  restart_lsn: z.string().nullable(),
  retained: z.string().nullable(),
  wal_status: z.string().nullable(),
});

export async function listSlots(db: Db): Promise<SlotInfo[]> {
  const rows = await db.query("list slots", (sql) => sql`
    SELECT slot_name, active, active_pid, restart_lsn::text AS restart_lsn, wal_status,
      pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                      restart_lsn)::bigint::text AS retained
    FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`);
  return rows.map((r) => {
    const x = Row.parse(r);
    return {
      name: x.slot_name, active: x.active, activePid: x.active_pid, restartLsn: x.restart_lsn,
      retainedBytes: x.retained === null ? null : Number(x.retained), walStatus: x.wal_status,
    };
  });
}
