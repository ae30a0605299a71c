// Cluster-wide flags the leader decides and every node keeps on disk (flags.json): maintenance
// mode and a scheduled switchover. (The durability mode moved into the cluster-wide configuration,
// src/agent/dynamic-config.ts; a flags.json written before keeps it and seeds that document.) The leader sends them with its state
// messages; a follower adopts what the current leader says, so a new leader already has them.
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";

export const DurabilitySchema = z.enum(["quorum", "strict", "async"]);
export type Durability = z.infer<typeof DurabilitySchema>;

/** `pgherd switchover --at`: stored through the leader, run by whichever node leads at that time. */
export const ScheduledSwitchoverSchema = z.strictObject({
  /** Wall-clock time, ISO 8601. */
  at: z.string().max(40).refine((s) => Number.isFinite(Date.parse(s)), "not a date/time"),
  /** Target node id, or null: the best candidate at that time. */
  to: z.string().max(64).nullable(),
  /** When the operator asked (ISO 8601), to tell two schedules apart. */
  requestedAt: z.string().max(40),
  force: z.boolean(),
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

  /** A follower keeps what the current leader says for the cluster (so a next leader has it already). */
  adopt(from: { paused?: boolean; scheduled?: ScheduledSwitchover | null }, log: { info(m: string): void; warn(m: string): void }): void {
    const next: Partial<Flags> = {};
    if (from.paused !== undefined) next.paused = from.paused;
    if (from.scheduled !== undefined) next.scheduled = from.scheduled;
    const changed = this.set(next);
    if (changed.includes("paused")) log.warn(from.paused ? "the leader paused the cluster: no automatic actions" : "the leader resumed the cluster");
    if (changed.includes("scheduled")) log.info(from.scheduled ? `switchover scheduled for ${from.scheduled.at}` : "no switchover scheduled");
  }

  /** Writes durably when something changed; returns the keys that changed. */
  set(next: Partial<Flags>): (keyof Flags)[] {
    const merged = { ...this.cur, ...next };
    const changed = (Object.keys(next) as (keyof Flags)[]).filter((k) => JSON.stringify(this.cur[k]) !== JSON.stringify(merged[k]));
    if (changed.length === 0) return [];
    writeJsonDurableSync(this.file, { ...merged, ...(this.legacyDurability ? { durability: this.legacyDurability } : {}) }, 0o600);
    this.cur = merged;
    return changed;
  }
}
