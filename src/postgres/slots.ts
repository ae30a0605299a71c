// Physical replication slots on the primary, one per standby. Retained WAL is reported so the
// caller can drop slots of members that are gone before they fill the disk.
import { readdirSync } from "node:fs";
import { join } from "node:path";
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
export async function ensureSlot(db: Db, name: string, timeoutMs?: number): Promise<boolean> {
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
  }, timeoutMs);
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
    FROM pg_catalog.pg_get_replication_slots() WHERE slot_type = 'physical' ORDER BY slot_name`); // the function, not the view, which joins pg_database (probe.ts)
  return rows.map((r) => {
    const x = Row.parse(r);
    return {
      name: x.slot_name, active: x.active, activePid: x.active_pid, restartLsn: x.restart_lsn,
      retainedBytes: x.retained === null ? null : Number(x.retained), walStatus: x.wal_status,
    };
  });
}

// ---- permanent slots (src/slots/permanent.ts): any type, on the primary and as copies on standbys ----

export interface AnySlot {
  name: string;
  type: "physical" | "logical";
  plugin: string | null;
  database: string | null;
  active: boolean;
  /** Physical: restart_lsn; logical: confirmed_flush_lsn (where a consumer resumes). */
  lsn: string | null;
  /** The oldest WAL the slot needs. */
  restartLsn: string | null;
  walStatus: string | null;
  /** Bytes of WAL left before the slot is invalidated by max_slot_wal_keep_size (null: unbounded). */
  safeWalSize: number | null;
  /** PostgreSQL ≥ 17: a failover slot (the standbys' slot synchronization copies it); null before 17. */
  failover: boolean | null;
}

const AnyRow = z.object({
  slot_name: z.string(), slot_type: z.enum(["physical", "logical"]), plugin: z.string().nullable(), database: z.string().nullable(),
  active: z.boolean(), lsn: z.string().nullable(), restart_lsn: z.string().nullable(), wal_status: z.string().nullable(), safe: z.string().nullable(),
  failover: z.boolean().nullable(),
});

/** Every slot of the server, and the server's major version (server_version_num / 10000). */
export async function listAnySlots(db: Db): Promise<{ major: number; slots: AnySlot[] }> {
  return db.query("list slots (all types)", async (sql) => {
    const v = await sql`SELECT current_setting('server_version_num')::int / 10000 AS major`;
    const rows = await sql`
      SELECT slot_name, slot_type, plugin, database, active, wal_status, safe_wal_size::text AS safe, restart_lsn::text AS restart_lsn,
        (CASE WHEN slot_type = 'logical' THEN confirmed_flush_lsn ELSE restart_lsn END)::text AS lsn,
        (to_jsonb(s) ->> 'failover')::boolean AS failover
      FROM pg_replication_slots s WHERE NOT temporary ORDER BY slot_name`;
    return {
      major: z.number().int().parse(v[0]?.major),
      slots: rows.map((r) => {
        const x = AnyRow.parse(r);
        return { name: x.slot_name, type: x.slot_type, plugin: x.plugin, database: x.database, active: x.active, lsn: x.lsn, restartLsn: x.restart_lsn, walStatus: x.wal_status, safeWalSize: x.safe === null ? null : Number(x.safe), failover: x.failover };
      }),
    };
  });
}

/** A logical slot (run on a connection to its database). PostgreSQL ≥ 17 with `failover`: synchronized to standbys. */
export async function createLogicalSlot(db: Db, name: string, plugin: string, failover: boolean): Promise<void> {
  check(name);
  await db.query(`create logical slot ${name}`, async (sql) => {
    try {
      if (failover) await sql`SELECT pg_create_logical_replication_slot(${name}, ${plugin}, false, false, true)`;
      else await sql`SELECT pg_create_logical_replication_slot(${name}, ${plugin})`;
    } catch (e) {
      if (sqlState(e) !== "42710") throw e; // created concurrently
    }
  }, 60_000);
}

/** Move a slot forward (never back: PostgreSQL ignores an older target) to at most `lsn`; the position it reached. */
export async function advanceSlot(db: Db, name: string, lsn: string): Promise<string | null> {
  check(name);
  const rows = await db.query(`advance slot ${name}`, (sql) => sql`SELECT end_lsn::text AS lsn FROM pg_replication_slot_advance(${name}, ${lsn}::pg_lsn)`, 30_000);
  return (rows[0]?.lsn as string | undefined) ?? null;
}

/** The slot's on-disk state file (pg_replslot/<name>/state), base64; null when absent. Superuser only. */
export async function readSlotState(db: Db, name: string): Promise<string | null> {
  check(name);
  const rows = await db.query(`read slot state ${name}`, async (sql) => {
    try {
      return await sql`SELECT encode(pg_read_binary_file(${`pg_replslot/${name}/state`}), 'base64') AS s`;
    } catch (e) {
      if (sqlState(e) === "58P01") return []; // no such file (not yet written by a checkpoint)
      throw e;
    }
  });
  const s = rows[0]?.s as string | undefined;
  return s ? s.replace(/\s+/g, "") : null;
}

/** The oldest WAL segment number in pg_wal and the segment size (works on a standby, unlike pg_walfile_name). */
/** Segment number of a WAL file name (TTTTTTTTXXXXXXXXYYYYYYYY) for segments of `segSize` bytes. */
export function walSegno(name: string, segSize: bigint): bigint {
  return BigInt(`0x${name.slice(8, 16)}`) * (0x100000000n / segSize) + BigInt(`0x${name.slice(16, 24)}`);
}

/** The oldest WAL segment in a stopped server's pg_wal (file names only), or null when there is none. */
export function oldestWalSegmentOnDisk(dataDir: string, segSize: bigint): bigint | null {
  const names = readdirSync(join(dataDir, "pg_wal")).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  return names.length ? names.map((n) => walSegno(n, segSize)).reduce((a, b) => (b < a ? b : a)) : null;
}

export async function oldestWalSegment(db: Db): Promise<{ segno: bigint; segSize: bigint } | null> {
  const rows = await db.query("oldest WAL segment", (sql) => sql`
    SELECT min(name) AS name, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS size
    FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'`);
  const name = rows[0]?.name as string | null | undefined;
  if (!name) return null;
  const segSize = BigInt(String(rows[0]?.size));
  return { segno: walSegno(name, segSize), segSize };
}
