// Cluster-wide flags the leader decides and every node keeps on disk (flags.json): maintenance
// mode and a scheduled switchover. (The durability mode moved into the cluster-wide configuration,
// src/agent/dynamic-config.ts; a flags.json written before keeps it and seeds that document.)
// Built-in backend: the leader sends them with its state messages; a follower adopts what the
// current leader says, so a new leader already has them. Shared store (etcd): the `flags` key is
// the cluster's copy, written by the leader by compare-and-swap; every node adopts what it reads
// there and ignores the flags in state messages.
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";
import { casRefusal, type StateSlot } from "./cluster-state.ts";

export const DurabilitySchema = z.enum(["quorum", "strict", "async"]);
export type Durability = z.infer<typeof DurabilitySchema>;

/** `pgherd switchover --at`: stored through the leader, run by whichever node leads at that time (a newer peer's extra fields dropped). */
export const ScheduledSwitchoverSchema = z.object({
  /** Wall-clock time, ISO 8601. */
  at: z.string().max(40).refine((s) => Number.isFinite(Date.parse(s)), "not a date/time"),
  /** Target node id, or null: the best candidate at that time. */
  to: z.string().max(64).nullable(),
  /** When the operator asked (ISO 8601), to tell two schedules apart. */
  requestedAt: z.string().max(40),
  force: z.boolean(),
  /** The leader it was scheduled on (the primary it switches over from); absent in one an earlier version stored. */
  from: z.string().max(64).optional(),
});
export type ScheduledSwitchover = z.infer<typeof ScheduledSwitchoverSchema>;

const FlagsSchema = z.strictObject({
  paused: z.boolean(),
  durability: DurabilitySchema.optional(),
  scheduled: ScheduledSwitchoverSchema.nullable().optional(),
});

export interface Flags {
  paused: boolean;
  scheduled: ScheduledSwitchover | null;
}

/** The flags as the shared store keeps them (the `flags` key). */
export const SharedFlagsSchema = z.strictObject({ paused: z.boolean(), scheduled: ScheduledSwitchoverSchema.nullable() });
export type SharedFlags = z.infer<typeof SharedFlagsSchema>;

type FlagsLog = { info(m: string): void; warn(m: string): void };

interface Shared {
  slot: StateSlot<SharedFlags>;
  /** The leader term this node holds with a lease, or null. */
  leaderTerm(): number | null;
  log: FlagsLog;
  chain: Promise<void>;
  /** Writes queued and not answered yet. */
  writing: number;
  /** The last etcd error of a write (logged once while it repeats). */
  lastError: string;
  /** Why the last write was refused since the last flush (null: none). */
  refused: { status: 409 | 503; message: string } | null;
  /** A write failed without an answer: the store may hold this node's value or the one before; read again (sync). */
  unsure: boolean;
}

export class FlagsStore {
  readonly file: string;
  private cur: Flags;
  /** The durability a flags.json of an earlier version kept (seeds the cluster-wide configuration). */
  readonly legacyDurability: Durability | undefined;

  constructor(stateDir: string) {
    this.file = join(stateDir, "flags.json");
    const f = readJsonSync(this.file, FlagsSchema);
    this.legacyDurability = f?.durability;
    this.cur = { paused: f?.paused ?? false, scheduled: f?.scheduled ?? null };
  }

  get(): Readonly<Flags> {
    return this.cur;
  }

  private shared: Shared | null = null;
  /** The leader's changes so far (set): a re-read of the store that one overtook must not undo it. */
  private leaderChanges = 0;

  /** From now on the cluster's copy is the store's: adopt what it holds, write changes to it. */
  share(slot: StateSlot<SharedFlags>, leaderTerm: () => number | null, log: FlagsLog): void {
    this.shared = { slot, leaderTerm, log, chain: Promise.resolve(), refused: null, writing: 0, lastError: "", unsure: false };
    // While this node's own writes or re-read are on their way, their outcome decides (a write that
    // lands is read back here first, and would put back what a change made since then undid:
    // re-review); once they are done, the store's copy is adopted as it comes.
    slot.onChange((v) => {
      if (this.shared!.writing === 0) this.fromLeader(v.value, log);
    });
  }

  /** A follower keeps what the current leader says for the cluster (so a next leader has it already); with a shared store, the store says it. */
  adopt(from: { paused?: boolean; scheduled?: ScheduledSwitchover | null }, log: FlagsLog): void {
    if (this.shared) return;
    this.fromLeader(from, log);
  }

  private fromLeader(from: { paused?: boolean; scheduled?: ScheduledSwitchover | null }, log: FlagsLog): void {
    const next: Partial<Flags> = {};
    if (from.paused !== undefined) next.paused = from.paused;
    if (from.scheduled !== undefined) next.scheduled = from.scheduled;
    const changed = this.setLocal(next);
    if (changed.includes("paused")) log.warn(from.paused ? "the leader paused the cluster: no automatic actions" : "the leader resumed the cluster");
    if (changed.includes("scheduled")) log.info(from.scheduled ? `switchover scheduled for ${from.scheduled.at}` : "no switchover scheduled");
  }

  /** The leader's change: written durably here and, with a shared store, by compare-and-swap there (flush() tells how that went). Returns the keys that changed. */
  set(next: Partial<Flags>): (keyof Flags)[] {
    this.leaderChanges++;
    const changed = this.setLocal(next);
    if (changed.length > 0 && this.shared) this.queueWrite(this.shared, true);
    return changed;
  }

  private setLocal(next: Partial<Flags>): (keyof Flags)[] {
    const merged = { ...this.cur, ...next };
    const changed = (Object.keys(next) as (keyof Flags)[]).filter((k) => JSON.stringify(this.cur[k]) !== JSON.stringify(merged[k]));
    if (changed.length === 0) return [];
    writeJsonDurableSync(this.file, { ...merged, ...(this.legacyDurability ? { durability: this.legacyDurability } : {}) }, 0o600);
    this.cur = merged;
    return changed;
  }

  /** Waits for the writes to the shared store queued so far; the reason one was refused, or null. */
  async flush(): Promise<{ status: 409 | 503; message: string } | null> {
    const sh = this.shared;
    if (!sh) return null;
    await sh.chain;
    const r = sh.refused;
    sh.refused = null;
    return r;
  }

  /**
   * Leader housekeeping: a store without the key (a cluster new to it) gets this node's flags, so
   * every node follows one copy; after a write that failed without an answer, this node takes the
   * store's copy again (review: a scheduled switchover's clear lost that way stayed in the store,
   * unseen here, and the next leader ran it again).
   */
  sync(): void {
    const sh = this.shared;
    if (!sh || sh.leaderTerm() === null || sh.writing) return;
    if (sh.unsure) {
      sh.unsure = false;
      sh.writing++;
      sh.chain = sh.chain.then(async () => {
        const before = this.leaderChanges;
        const now = await sh.slot.read();
        // A change made while the read was out is this node's newer word (its write follows on
        // the chain): not undone by the older copy (re-review: a pause answered "paused" was lost).
        if (now && this.leaderChanges === before) this.fromLeader(now.value, sh.log);
      }).catch(() => {
        sh.unsure = true;
      }).finally(() => {
        sh.writing--;
        this.settled(sh);
      });
      return;
    }
    if (sh.slot.current() !== null || sh.slot.revision() !== 0) return;
    this.queueWrite(sh, false);
  }

  /**
   * This node's writes and re-reads are done: one that does not lead (any more) takes the store's copy
   * as last read, which its listener skipped while they were on their way (re-review: a leader that
   * lost the key mid-write kept stale flags for good, later polls seeing no change to announce). A
   * leader's copy is settled by its own writes and re-read (sync).
   */
  private settled(sh: Shared): void {
    if (sh.writing !== 0 || sh.leaderTerm() !== null) return;
    const cur = sh.slot.current();
    if (cur) this.fromLeader(cur.value, sh.log);
  }

  /** `operator`: an action's change, whose refusal its answer reports (flush); else housekeeping's, retried by the next call. */
  private queueWrite(sh: Shared, operator: boolean): void {
    sh.writing++;
    sh.chain = sh.chain.then(() => this.write(sh, operator)).catch((e: Error) => {
      const r = { status: 503 as const, message: `cluster flags write failed: etcd: ${e.message}` };
      sh.unsure = true;
      if (operator) sh.refused = r;
      if (operator || sh.lastError !== r.message) sh.log.warn(r.message);
      sh.lastError = r.message;
    }).finally(() => {
      sh.writing--;
      this.settled(sh);
    });
  }

  private async write(sh: Shared, operator: boolean): Promise<void> {
    const term = sh.leaderTerm();
    const value: SharedFlags = { paused: this.cur.paused, scheduled: this.cur.scheduled };
    const stored = sh.slot.current();
    if (stored && JSON.stringify(stored.value) === JSON.stringify(value)) return;
    const r = term === null ? { ok: false as const, why: "not-leader" as const } : await sh.slot.write(value, sh.slot.revision(), term);
    sh.lastError = "";
    if (r.ok) return;
    const refused = casRefusal("cluster flags", r);
    if (operator) sh.refused = refused;
    sh.log.warn(refused.message);
    // The store keeps the cluster's copy: go back to it (the last one read, then a fresh read).
    const known = sh.slot.current();
    if (known) this.fromLeader(known.value, sh.log);
    const now = await sh.slot.read().catch(() => null);
    if (now) this.fromLeader(now.value, sh.log);
  }
}
