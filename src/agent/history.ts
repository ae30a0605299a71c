// Role changes (promotions, switchovers, failovers, fences, rejoins) and the hook runs they
// caused, kept on every node: entries travel over the mesh and merge by id, so any agent can
// show the whole history. With a shared store (etcd) the `history` key holds the cluster's latest
// HISTORY_IN_STORE entries: the leader merges what it knows into it by compare-and-swap, every
// node merges what it reads there.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurable } from "../store/durable.ts";
import type { StateSlot } from "./cluster-state.ts";

export const HistoryEntrySchema = z.object({
  id: z.string().max(64),
  /** When (ISO 8601 in UTC, as toISOString writes it): the sort key of the capped history. */
  at: z.iso.datetime().max(40),
  term: z.number().int().min(0),
  kind: z.enum(["bootstrap", "adopt", "promote", "switchover", "failover", "fence", "rejoin", "pause", "resume", "restart", "config", "schedule", "hook", "backup"]),
  node: z.string().max(64),
  reason: z.string().max(500),
  oldPrimary: z.string().max(64).nullable(),
  newPrimary: z.string().max(64).nullable(),
  timeline: z.number().int().nullable(),
  lsn: z.string().max(17).nullable(),
});
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;

const MAX = 1000;
/** Entries the shared store keeps (the key is read by every agent every poll: kept small). */
export const HISTORY_IN_STORE = 100;
export const StoredHistorySchema = z.array(HistoryEntrySchema).max(HISTORY_IN_STORE);

const byTime = (a: HistoryEntry, b: HistoryEntry) => a.at.localeCompare(b.at) || a.id.localeCompare(b.id);

/** The store's next history: its entries and ours merged by id, the latest `max`; null when the store has them already. Pure. */
export function historyForStore(local: readonly HistoryEntry[], stored: readonly HistoryEntry[] | null, max = HISTORY_IN_STORE): HistoryEntry[] | null {
  const have = new Set((stored ?? []).map((e) => e.id));
  const merged = [...(stored ?? []), ...local.filter((e) => !have.has(e.id))].sort(byTime).slice(-max);
  const same = merged.length === (stored?.length ?? 0) && merged.every((e) => have.has(e.id));
  return same ? null : merged;
}

export class History {
  private readonly file: string;
  private entries: HistoryEntry[];
  /** The write under way (one at a time); `dirty`: entries came in since it started; `unsaved`: the last write failed. */
  private writing: Promise<void> | null = null;
  private dirty = false;
  private unsaved = false;
  /** Failover entries trimmed from `entries` since the start (failovers()). */
  private trimmedFailovers = 0;

  constructor(
    stateDir: string,
    private readonly warn: (m: string) => void = () => {},
    private readonly write: (file: string, value: unknown, mode: number) => Promise<void> = writeJsonDurable,
  ) {
    this.file = join(stateDir, "history.json");
    this.entries = readJsonSync(this.file, z.array(HistoryEntrySchema)) ?? [];
  }

  add(e: Omit<HistoryEntry, "id" | "at">): HistoryEntry {
    const entry = { id: randomUUID(), at: new Date().toISOString(), ...e };
    this.merge([entry]);
    return entry;
  }

  /** Adds the entries not known yet; returns whether anything was new. */
  merge(incoming: readonly HistoryEntry[]): boolean {
    const known = new Set(this.entries.map((e) => e.id));
    const fresh = incoming.filter((e) => !known.has(e.id));
    if (fresh.length === 0) return false;
    const all = [...this.entries, ...fresh].sort(byTime);
    // Failovers this node held and now trims stay counted; one that arrives older than the newest
    // MAX is dropped at once and not counted (it may be one this node trimmed before).
    this.trimmedFailovers += all.slice(0, -MAX).filter((e) => e.kind === "failover" && known.has(e.id)).length;
    this.entries = all.slice(-MAX);
    this.persist();
    return true;
  }

  /**
   * Written off the event loop: an fsync waits for the file system's journal, which right after
   * heavy writes (a backup, a checkpoint) took a second in CI, and a synchronous one there held
   * a leader's heartbeats until its lease ran out. One write at a time; entries that come in
   * meanwhile go into the next. A crash may lose the newest entries, never the file.
   */
  private persist(): void {
    this.dirty = true;
    if (!this.writing) this.writing = this.writeAll();
  }

  /** Writes until nothing new came in. `writing` is cleared in the same turn as the last check of `dirty`: a merge cannot fall between them. */
  private async writeAll(): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        try {
          await this.write(this.file, this.entries, 0o600);
          this.unsaved = false;
        } catch (e) {
          this.unsaved = true;
          this.warn(`history not written to ${this.file}: ${(e as Error).message}`);
        }
      }
    } finally {
      this.writing = null;
    }
  }

  /** Resolves once every entry merged so far is on disk, a failed last write tried once more (the agent's stop). */
  async flushed(): Promise<void> {
    if (this.unsaved && !this.writing) this.persist();
    while (this.writing) await this.writing;
  }

  list(): HistoryEntry[] {
    return [...this.entries];
  }

  /**
   * Failovers this process has known of (pgherd_failovers_total): those in the history and those
   * trimmed from it since the agent started, so the count never falls while it runs (a restart
   * starts from the kept history, as a Prometheus counter may).
   */
  failovers(): number {
    return this.trimmedFailovers + this.entries.filter((e) => e.kind === "failover").length;
  }

  private shared: { slot: StateSlot<HistoryEntry[]>; leaderTerm(): number | null; warn(m: string): void; writing: boolean } | null = null;

  /** From now on the store holds the cluster's history: merge what it holds. */
  share(slot: StateSlot<HistoryEntry[]>, leaderTerm: () => number | null, warn: (m: string) => void): void {
    this.shared = { slot, leaderTerm, warn, writing: false };
    slot.onChange((v) => this.merge(v.value));
  }

  /** Leader housekeeping: entries the store lacks are merged into it (compare-and-swap; a refusal is retried at the next call). */
  sync(): void {
    const sh = this.shared;
    const term = sh?.leaderTerm() ?? null;
    if (!sh || term === null || sh.writing || sh.slot.current() === undefined) return;
    const next = historyForStore(this.entries, sh.slot.current()?.value ?? null);
    if (!next) return;
    sh.writing = true;
    void sh.slot.write(next, sh.slot.revision(), term).then(
      (r) => (r.ok ? undefined : sh.slot.read().then(() => undefined)),
      (e: Error) => sh.warn(`history write to etcd failed: ${e.message}`),
    ).catch((e: Error) => sh.warn(`history: etcd: ${e.message}`)).finally(() => {
      sh.writing = false;
    });
  }
}

/** The history entry for this node becoming the primary: why, and whom it replaced. Pure. */
export function primaryEntry(o: {
  how: "bootstrap" | "adopt" | "promote"; term: number; node: string; timeline: number | null; lsn: string | null;
  /** The last primary in the history (null: none yet). */
  previous: string | null;
  /** The switchover's old primary when this promotion was handed over (null: a failover). */
  handedOverBy: string | null;
}): Omit<HistoryEntry, "id" | "at"> {
  const base = { term: o.term, node: o.node, newPrimary: o.node, timeline: o.timeline, lsn: o.lsn };
  if (o.how === "bootstrap") return { ...base, kind: "bootstrap", reason: "new cluster: initdb on the first leader", oldPrimary: null };
  if (o.how === "adopt") return { ...base, kind: "adopt", reason: "existing server adopted (bootstrap.from_existing)", oldPrimary: null };
  if (o.handedOverBy) return { ...base, kind: "switchover", reason: `planned switchover from ${o.handedOverBy}`, oldPrimary: o.previous };
  const prev = o.previous ? ` (${o.previous})` : "";
  return { ...base, kind: "failover", reason: `elected leader of term ${o.term} after the previous primary${prev} lost its lease`, oldPrimary: o.previous };
}
