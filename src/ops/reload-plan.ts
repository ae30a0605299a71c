// What a SIGHUP reload changes: the keys whose value differs between the running config and the
// file, split into those the agent applies live and those that take effect at its next restart.
// Pure; key names only, never values (the secret and the token are keys too).
import { deepFreeze } from "../config/freeze.ts";
import type { Config } from "../config/schema.ts";

/** Keys (dotted, or a prefix ending in ".") the running agent applies without a restart. */
export const LIVE_KEYS: readonly string[] = ["log.level", "log.format", "api.", "access", "postgres.parameters.", "shutdown.handover"];

export interface ReloadPlan {
  /** Every key whose value changed (dotted; a [postgres.parameters] entry is postgres.parameters.<name>), sorted. */
  changed: string[];
  live: string[];
  restart: string[];
}

function isTable(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Leaf values (JSON) and their paths by dotted key; arrays are leaves (compared whole). */
function leaves(v: unknown, path: string[] = [], out = new Map<string, { path: string[]; json: string }>()): Map<string, { path: string[]; json: string }> {
  if (isTable(v)) {
    for (const [k, x] of Object.entries(v)) leaves(x, [...path, k], out);
  } else if (path.length) out.set(path.join("."), { path, json: JSON.stringify(v) });
  return out;
}

/** Leaf values by dotted key; arrays are leaves (compared whole). A key may hold dots of its own (a parameter such as pg_stat_statements.max). */
export function flatten(v: unknown): Map<string, string> {
  return new Map([...leaves(v)].map(([k, l]) => [k, l.json]));
}

export const isLive = (key: string) => LIVE_KEYS.some((k) => (k.endsWith(".") ? key.startsWith(k) : key === k));

export function planReload(running: Config, next: Config): ReloadPlan {
  const a = flatten(running);
  const b = flatten(next);
  const changed = [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort();
  return { changed, live: changed.filter(isLive), restart: changed.filter((k) => !isLive(k)) };
}

/** The config now in effect: `running` with the live keys taken from `next` (restart keys keep their running value). */
export function applyLive(running: Config, next: Config): Config {
  const out = structuredClone(running) as Record<string, unknown>;
  const src = leaves(next);
  const have = leaves(running);
  for (const key of new Set([...src.keys(), ...have.keys()])) {
    if (!isLive(key)) continue;
    // The path the key came from, never the key split at its dots: a parameter's name may hold dots
    // (review: pg_stat_statements.max changed on SIGHUP kept its old value, and a nested
    // {pg_stat_statements: {max}} went into the parameters).
    const leaf = src.get(key);
    const path = (leaf ?? have.get(key)!).path;
    let t = out;
    for (const p of path.slice(0, -1)) t = (t[p] ??= {}) as Record<string, unknown>;
    const last = path.at(-1)!;
    if (leaf) t[last] = JSON.parse(leaf.json) as unknown;
    else delete t[last];
  }
  return deepFreeze(out) as unknown as Config;
}

/** One line for the log: what was applied and what waits for a restart. */
export function describePlan(p: ReloadPlan): string {
  if (p.changed.length === 0) return "no setting changed";
  const parts: string[] = [];
  if (p.live.length) parts.push(`applied ${p.live.join(", ")}`);
  if (p.restart.length) parts.push(`${p.restart.join(", ")} changed: ${p.restart.length === 1 ? "it takes" : "they take"} effect when the agent restarts`);
  return parts.join("; ");
}
