// Permanent slots ([[slots.permanent]]): slots for consumers outside the cluster that exist on
// whichever node is primary and keep their position across failover and switchover.
//
// Primary: creates the missing ones (a logical one through a connection to its database; on
// PostgreSQL ≥ 17 with failover = true), warns before max_slot_wal_keep_size invalidates one, and
// reports where each resumes. Standbys, PostgreSQL ≥ 17: the server's own slot synchronization
// (sync_replication_slots, see walSettings) keeps the logical (failover) slots. Standbys, physical
// slots on every version and logical ones before 17: copies, moved forward to the primary's
// reported position with pg_replication_slot_advance (physical: created here; logical: the
// primary's slot state file copied into pg_replslot, loaded by a restart of the standby, as logical
// slots cannot be created on a standby before 16). A copy lags the primary by up to one round, so
// after a failover a consumer may get again what it had already confirmed during that round
// (docs/backup.md).
//
// A slot pgherd made (record.ts) and the config no longer lists is dropped on every node once its
// agent runs with that config (plan.ts); an operator's own slots are never touched, nor on a primary
// the copy of one a standby made before its promotion: the primary reports who made each slot
// (madeBy), and a standby records its copy with that.
import { constants as C } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { PermanentSlot } from "../config/schema-backup.ts";
import type { PgReport } from "../core/report.ts";
import type { Logger } from "../log.ts";
import { removeTree, SafeDir, type Owner } from "../postgres/fsutil.ts";
import { lsnCompare, lsnToBigInt } from "../postgres/lsn.ts";
import { advanceSlot, createLogicalSlot, dropSlot, ensureSlot, listAnySlots, oldestWalSegment, oldestWalSegmentOnDisk, readSlotState, type AnySlot } from "../postgres/slots.ts";
import { openDb, sqlState, type Db } from "../postgres/sql.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { planPermanentSlots, type Made, type SlotPlan } from "./plan.ts";
import { SlotRecord } from "./record.ts";

/** First PostgreSQL major version with failover slots synchronized by the server. */
export const FAILOVER_SLOTS_MAJOR = 17;

export type PermanentReport = NonNullable<PgReport["permanent"]>[number];

export interface SlotHost {
  readonly cfg: { state_dir: string; slots: { permanent: readonly PermanentSlot[] }; postgres: { port: number; superuser: string; os_user: string } };
  readonly socketDir: string;
  readonly node: { dataDir: string };
  readonly log: Logger;
  localDb(): Db;
  /** The primary's permanent slots as its last report gave them (null: no primary ready). */
  primarySlots(): PermanentReport[] | null;
  /** Fast stop, `whileStopped`, start again. */
  restartStandby(whileStopped?: () => Promise<void>): Promise<void>;
  /** Monotonic ms (injected by tests); default performance.now. */
  now?(): number;
}

/** An invalidated copy is dropped and copied again at most this often (each logical copy costs a restart of the standby). */
export const REPLACE_LOST_EVERY_MS = 10 * 60_000;

export class PermanentSlots {
  /** What this primary reports (empty on a standby). */
  report: PermanentReport[] = [];
  private readonly said = new Map<string, string>();
  private readonly record: SlotRecord;
  /** When each invalidated copy was last dropped to be copied again. */
  private readonly replacedAt = new Map<string, number>();

  constructor(private readonly h: SlotHost) {
    this.record = new SlotRecord(h.cfg.state_dir);
  }

  async maintain(primary: boolean): Promise<void> {
    const want = this.h.cfg.slots.permanent;
    const managed = await this.record.load();
    if (want.length === 0 && managed.size === 0) return;
    const { major, slots } = await listAnySlots(this.h.localDb());
    const reported = primary ? null : this.h.primarySlots();
    const origin = new Map<string, Made>();
    for (const p of reported ?? []) if (p.madeBy) origin.set(p.name, p.madeBy);
    const plan = planPermanentSlots({ want, have: slots, managed, primary, serverSync: !primary && major >= FAILOVER_SLOTS_MAJOR, origin });
    await this.dropRemoved(plan);
    const have = new Map(slots.map((s) => [s.name, s]));
    if (primary) await this.onPrimary(major, want, have, plan);
    else {
      this.report = [];
      for (const a of plan.adopt) await this.record.set(a.name, a.made);
      // PostgreSQL ≥ 17 synchronizes logical (failover) slots itself, never physical ones: those are copied here on every version.
      await this.copies(reported, major < FAILOVER_SLOTS_MAJOR ? want : want.filter((w) => w.type === "physical"), have);
    }
  }

  /**
   * Slots pgherd made here that left the config: dropped, so they no longer hold WAL. One a
   * consumer is connected to cannot be dropped; the consumer is not cut off: retried every round.
   */
  private async dropRemoved(plan: SlotPlan): Promise<void> {
    const gone = [...plan.forget];
    const busy = [...plan.busy];
    for (const name of plan.drop) {
      try {
        await dropSlot(this.h.localDb(), name);
        this.h.log.warn(`dropped permanent slot ${name}: it was removed from [[slots.permanent]] (pgherd created it on this node)`);
        this.said.delete(name);
        gone.push(name);
      } catch (e) {
        if (sqlState(e) === "55006") busy.push(name); // a consumer connected since the slot was listed
        else this.once(name, "error", `permanent slot ${name} was removed from [[slots.permanent]] but cannot be dropped (retried every round): ${(e as Error).message}`);
      }
    }
    for (const name of busy) {
      this.once(name, "warn", `permanent slot ${name} was removed from [[slots.permanent]] but a consumer is connected to it: not dropped while it is in use (it keeps holding WAL); retried every round until the consumer disconnects`);
    }
    if (gone.length) await this.record.remove(gone);
  }

  /** Log `text` once per slot until it changes. */
  private once(slot: string, level: "info" | "warn" | "error", text: string): void {
    if (this.said.get(slot) === text) return;
    this.said.set(slot, text);
    this.h.log[level](text);
  }

  private async onPrimary(major: number, want: readonly PermanentSlot[], have: Map<string, AnySlot>, plan: SlotPlan): Promise<void> {
    const h = this.h;
    for (const w of plan.create) await this.create(w, major);
    for (const w of plan.conflict) {
      const s = have.get(w.name)!;
      this.once(w.name, "error", `permanent slot ${w.name}: a ${s.type} slot (${s.plugin ?? "-"}, ${s.database ?? "-"}) of that name exists, not the configured one: left alone (drop it to let pgherd create it)`);
    }
    const managed = await this.record.load(); // with the slots just created
    const report: PermanentReport[] = [];
    for (const w of want) {
      const s = have.get(w.name);
      if (!s || plan.conflict.includes(w)) continue;
      const uncopyable = s.walStatus === "lost" ? "lost" : s.type === "logical" && s.failover === false ? "not-failover" : null;
      if (s.walStatus === "lost") this.once(w.name, "error", `permanent slot ${w.name} was invalidated (its WAL exceeded max_slot_wal_keep_size): its consumer must start over`);
      else if (s.walStatus === "unreserved") this.once(w.name, "warn", `permanent slot ${w.name} holds more WAL than max_slot_wal_keep_size allows: it is invalidated at the next checkpoint unless its consumer catches up`);
      else if (s.safeWalSize !== null && s.safeWalSize < 64 * 1024 * 1024) this.once(w.name, "warn", `permanent slot ${w.name}: ${s.safeWalSize} bytes of WAL left before max_slot_wal_keep_size invalidates it`);
      else if (uncopyable === "not-failover") {
        this.once(w.name, "error", `permanent slot ${w.name} is not a failover slot (made by hand without failover?): the standbys' slot synchronization does not copy it, so a failover or switchover loses it (drop it to let pgherd create it with failover = true)`);
      } else this.said.delete(w.name);
      const state = w.type === "logical" && major < FAILOVER_SLOTS_MAJOR ? await readSlotState(h.localDb(), w.name) : null;
      // A logical copy starts from the state file, which may be older than the slot in memory: its restart_lsn counts.
      const restartLsn = state ? stateRestartLsn(Buffer.from(state, "base64")) : s.restartLsn;
      const madeBy: Made = managed.get(w.name) === "pgherd" ? "pgherd" : "operator";
      report.push({ name: w.name, type: w.type, lsn: s.lsn, restartLsn, ...(state ? { state } : {}), ...(uncopyable ? { uncopyable } : {}), madeBy });
    }
    this.report = report;
  }

  /** Recorded first: a crash after the creation must not leave a slot pgherd made but does not know. */
  private async create(w: PermanentSlot, major: number): Promise<void> {
    const h = this.h;
    await this.record.set(w.name, "pgherd");
    if (w.type === "physical") {
      await ensureSlot(h.localDb(), w.name);
    } else {
      const pg = h.cfg.postgres;
      const db = openDb({ host: h.socketDir, port: pg.port, user: pg.superuser, database: w.database!, log: h.log, applicationName: "pgherd", settings: { synchronous_commit: "local" } });
      try {
        await createLogicalSlot(db, w.name, w.plugin!, major >= FAILOVER_SLOTS_MAJOR);
      } finally {
        await db.close();
      }
    }
    h.log.info(`created permanent ${w.type} slot ${w.name}${w.type === "logical" ? ` (${w.plugin} on ${w.database}${major >= FAILOVER_SLOTS_MAJOR ? ", failover" : ""})` : ""}`);
  }

  /** PostgreSQL < 17 standby: a copy of each permanent slot, moved up to where the primary's is. */
  private async copies(primary: PermanentReport[] | null, want: readonly PermanentSlot[], have: Map<string, AnySlot>): Promise<void> {
    const h = this.h;
    if (!primary) return;
    const toCopy: PermanentReport[] = [];
    for (const p of primary) {
      if (!want.some((w) => w.name === p.name && w.type === p.type) || p.lsn === null || p.uncopyable) continue;
      let local = have.get(p.name);
      if (local?.walStatus === "lost") {
        // Invalidated (on 16 a logical copy loaded from an older state file, by a recovery conflict;
        // max_slot_wal_keep_size): it can never move again, and a failover to this standby would
        // lose the slot. Dropped; copied again below as a missing one; at most every
        // REPLACE_LOST_EVERY_MS, as the same conflict may invalidate the new copy at once and each
        // logical copy restarts the standby (re-review).
        const now = h.now?.() ?? performance.now();
        if (now - (this.replacedAt.get(p.name) ?? -Infinity) < REPLACE_LOST_EVERY_MS) continue;
        this.replacedAt.set(p.name, now);
        this.once(p.name, "warn", `permanent slot ${p.name}: this standby's copy was invalidated by PostgreSQL (wal_status lost): dropped, copied again from the primary (at most every ${REPLACE_LOST_EVERY_MS / 60_000} min)`);
        await dropSlot(h.localDb(), p.name, true);
        local = undefined;
      }
      if (!local) {
        if (p.type === "physical") {
          await this.record.set(p.name, madeBy(p));
          await ensureSlot(h.localDb(), p.name);
          h.log.info(`permanent slot ${p.name}: copy created on this standby`);
        } else if (p.state && (await this.haveWalFrom(p.name, p.restartLsn ?? null))) {
          toCopy.push(p);
        }
        continue;
      }
      if (local.lsn !== null && lsnCompare(local.lsn, p.lsn) >= 0) continue;
      try {
        await advanceSlot(h.localDb(), p.name, p.lsn);
        this.said.delete(p.name);
      } catch (e) {
        this.once(p.name, "warn", `permanent slot ${p.name}: cannot advance this standby's copy to ${p.lsn}: ${(e as Error).message}`);
      }
    }
    if (toCopy.length === 0) return;
    // The state files go in while the server is stopped: its shutdown restartpoint removes WAL that
    // no loaded slot needs, which could be what a copy written before it needs (seen: "requested
    // WAL segment … has already been removed" at every advance). So: stop, check pg_wal again, copy, start.
    const segSize = (await oldestWalSegment(h.localDb()))?.segSize ?? null;
    if (segSize === null) return;
    h.log.info(`copying permanent logical slot(s) ${toCopy.map((p) => p.name).join(", ")} from the primary: restarting this standby to load them`);
    await h.restartStandby(async () => {
      const oldest = oldestWalSegmentOnDisk(h.node.dataDir, segSize);
      for (const p of toCopy) {
        if (oldest === null || lsnToBigInt(p.restartLsn!) / segSize < oldest) {
          this.once(p.name, "info", `permanent slot ${p.name}: not copied to this standby yet: the restart removed the WAL from ${p.restartLsn} it needs; copied once its consumer moves it on`);
          continue;
        }
        await this.record.set(p.name, madeBy(p));
        await this.writeState(p.name, Buffer.from(p.state!, "base64"));
      }
    });
  }

  /**
   * A copy of a logical slot can move forward only by decoding from its restart_lsn: copy it only
   * once this standby still has that WAL (a slot nobody consumed yet may need WAL older than the
   * standby's clone).
   */
  private async haveWalFrom(name: string, restartLsn: string | null): Promise<boolean> {
    if (!restartLsn) return false;
    const oldest = await oldestWalSegment(this.h.localDb());
    const ok = !!oldest && lsnToBigInt(restartLsn) / oldest.segSize >= oldest.segno;
    if (ok) this.said.delete(name);
    else this.once(name, "info", `permanent slot ${name}: not copied to this standby yet: it needs WAL from ${restartLsn}, older than this standby's; copied once its consumer moves it on`);
    return ok;
  }

  /**
   * pg_replslot/<name>/state, as PostgreSQL makes a slot: the file written and fsync'd in
   * pg_replslot/<name>.tmp, that directory renamed to <name>, pg_replslot fsync'd. The server's
   * start PANICs on a slot directory whose state file is missing or short, and removes a
   * <name>.tmp left behind: a write cut short (disk full, the agent killed, a host crash) must leave
   * no <name> (review: it left one, and the standby could not start). The OS user's files, never
   * through a link; kept when <name> is already there.
   */
  private async writeState(name: string, bytes: Buffer): Promise<void> {
    const u = await lookupOsUser(this.h.cfg.postgres.os_user);
    const owner: Owner = { uid: u.uid, gid: u.gid };
    const slots = join(this.h.node.dataDir, "pg_replslot");
    const tmp = `${name}.tmp`;
    const dir = await SafeDir.open(slots, { osUser: owner });
    try {
      if (await dir.has(name)) return;
      await removeTree(join(slots, tmp)); // an earlier attempt's, cut short
      try {
        await dir.ensureSubdir(tmp, 0o700, owner);
        const sub = await SafeDir.open(join(slots, tmp), { osUser: owner });
        try {
          const fh = await open(sub.at("state"), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
          try {
            await fh.writeFile(bytes);
            if (process.getuid?.() === 0) await fh.chown(owner.uid, owner.gid);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await sub.sync();
        } finally {
          await sub.close();
        }
        await dir.rename(tmp, name);
      } catch (e) {
        await removeTree(join(slots, tmp)).catch(() => {}); // else the server's start removes it
        throw e;
      }
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/** Who made the primary's slot a standby copies; a primary of an earlier pgherd does not say: the operator (its copy is then never dropped on a primary). */
function madeBy(p: PermanentReport): Made {
  return p.madeBy ?? "operator";
}

/** On-disk slot state (ReplicationSlotOnDisk, PostgreSQL 12-16): magic, then restart_lsn at byte 96 (little-endian). */
const SLOT_MAGIC = 0x1051ca1;
const RESTART_LSN_OFFSET = 96;

export function stateRestartLsn(b: Buffer): string | null {
  if (b.length < RESTART_LSN_OFFSET + 8 || b.readUInt32LE(0) !== SLOT_MAGIC) return null;
  const v = b.readBigUInt64LE(RESTART_LSN_OFFSET);
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}
