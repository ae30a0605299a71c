// Role changes (promotions, switchovers, failovers, fences, rejoins) and the hook runs they
// caused, kept on every node: entries travel over the mesh and merge by id, so any agent can
// show the whole history.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";

export const HistoryEntrySchema = z.object({
  id: z.string().max(64),
  at: z.string().max(40),
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

export class History {
  private readonly file: string;
  private entries: HistoryEntry[];

  constructor(stateDir: string) {
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
    this.entries = [...this.entries, ...fresh].sort((a, b) => a.at.localeCompare(b.at)).slice(-MAX);
    writeJsonDurableSync(this.file, this.entries, 0o600);
    return true;
  }

  list(): HistoryEntry[] {
    return [...this.entries];
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
