// Decisions about the cluster-wide configuration, pure (no I/O, time and names passed in): a
// change checked against the schema and the version it was based on (compare-and-set), the
// ordering of two versions, the first version seeded from the leader's own pgherd.toml, and what
// a node runs with when its pgherd.toml says something else (the cluster wins; the difference is
// reported as a conflict, never applied).
import { configErrorMap, issueLines } from "./errors.ts";
import { type DynamicDoc, type DynamicSettings, dynamicSettings } from "./schema-dynamic.ts";
import { HOST_ONLY_KEYS, LIBRARY_KEYS, namesLibraryPath } from "./pg-values.ts";
import { shadowedAccessRule } from "./schema-access.ts";

/** A change: keys to set (dotted; "" or null removes a parameter), or a whole new document (config edit). */
export interface DynamicChange {
  /** The version the change was based on (compare-and-set); absent: apply on top of whatever is current. */
  base?: number;
  set?: Readonly<Record<string, unknown>>;
  replace?: unknown;
}

export type ChangeResult =
  | { ok: true; doc: DynamicDoc; changed: string[] }
  | { ok: false; status: 400 | 409; error: string };

const PARAM = "postgres.parameters.";

/** Every leaf by dotted key (a parameter is postgres.parameters.<name>; access is one leaf). */
export function flattenSettings(s: DynamicSettings): Map<string, string> {
  const m = new Map<string, string>();
  m.set("durability", JSON.stringify(s.durability));
  m.set("failover.max_lag_bytes", JSON.stringify(s.failover.max_lag_bytes));
  for (const [k, v] of Object.entries(s.postgres.parameters)) m.set(`${PARAM}${k}`, JSON.stringify(v));
  m.set("access", JSON.stringify(s.access));
  return m;
}

/** Keys whose value differs, sorted. */
export function changedKeys(a: DynamicSettings | null, b: DynamicSettings): string[] {
  const x = a ? flattenSettings(a) : new Map<string, string>();
  const y = flattenSettings(b);
  return [...new Set([...x.keys(), ...y.keys()])].filter((k) => x.get(k) !== y.get(k)).sort();
}

/** Human diff, one line per changed key: "- key = old" / "+ key = new". */
export function diffLines(a: DynamicSettings | null, b: DynamicSettings): string[] {
  const x = a ? flattenSettings(a) : new Map<string, string>();
  const y = flattenSettings(b);
  return changedKeys(a, b).flatMap((k) => [
    ...(x.has(k) ? [`- ${k} = ${x.get(k)}`] : []),
    ...(y.has(k) ? [`+ ${k} = ${y.get(k)}`] : []),
  ]);
}

/** The schema check of a whole document; lines name the key ("postgres.parameters.port is managed…"). */
export function checkSettings(raw: unknown, label = "cluster configuration"): { ok: true; settings: DynamicSettings } | { ok: false; error: string } {
  const r = dynamicSettings.safeParse(raw, { error: configErrorMap });
  if (r.success) return { ok: true, settings: r.data };
  return { ok: false, error: issueLines(label, r.error.issues).join("; ") };
}

/** `config set` text: "KEY=VALUE" → key and value (access as JSON, a number where the schema wants one). */
export function parseAssignment(text: string): { key: string; value: unknown } | string {
  const i = text.indexOf("=");
  if (i <= 0) return `expected KEY=VALUE, got ${JSON.stringify(text.slice(0, 100))}`;
  const key = text.slice(0, i).trim();
  const raw = text.slice(i + 1);
  if (key === "access") {
    try {
      return { key, value: JSON.parse(raw) as unknown };
    } catch {
      return "access=… must be a JSON array of rules (or use `pgherd config edit`)";
    }
  }
  if (key === "failover.max_lag_bytes") return { key, value: /^\d+$/.test(raw) ? Number(raw) : raw };
  return { key, value: raw };
}

/** Settings with the keys of `set` applied; a string naming the key when a key is unknown. */
export function applySet(cur: DynamicSettings, set: Readonly<Record<string, unknown>>): unknown {
  const next = structuredClone(cur) as unknown as { durability: unknown; failover: Record<string, unknown>; postgres: { parameters: Record<string, unknown> }; access: unknown };
  for (const [key, value] of Object.entries(set)) {
    if (key.startsWith(PARAM) && key.length > PARAM.length) {
      const name = key.slice(PARAM.length);
      // Names are case-insensitive: one entry per setting.
      for (const k of Object.keys(next.postgres.parameters)) if (k.toLowerCase() === name.toLowerCase()) delete next.postgres.parameters[k];
      if (value !== "" && value !== null) next.postgres.parameters[name] = value;
    } else if (key === "durability") next.durability = value;
    else if (key === "access") next.access = value;
    else if (key === "failover.max_lag_bytes") next.failover.max_lag_bytes = value;
    else return `unknown cluster-wide key ${JSON.stringify(key)} (known: durability, postgres.parameters.<name>, access, failover.max_lag_bytes)`;
  }
  return next;
}

/**
 * The leader's decision on a change: refused when it names another base version than the current
 * one (409) or when the result breaks the schema (400, naming the key); else the next version.
 */
export function decideChange(cur: DynamicDoc | null, change: DynamicChange, meta: { term: number; at: string; by: string; replUser?: string }): ChangeResult {
  const version = cur?.version ?? 0;
  if (!cur) return { ok: false, status: 409, error: "the cluster has no cluster-wide configuration yet (the leader creates it from its pgherd.toml within seconds): try again" };
  if (change.base !== undefined && change.base !== version) {
    return { ok: false, status: 409, error: `the change was based on version ${change.base}, the cluster is at version ${version}: someone else changed it meanwhile (show it again and redo the change)` };
  }
  if ((change.set === undefined) === (change.replace === undefined)) return { ok: false, status: 400, error: "a change has either keys to set or a whole document to replace" };
  let raw: unknown = change.replace;
  if (change.set) {
    raw = applySet(cur.settings, change.set);
    if (typeof raw === "string") return { ok: false, status: 400, error: raw };
  }
  const c = checkSettings(raw);
  if (!c.ok) return { ok: false, status: 400, error: c.error };
  const before = cur.settings.postgres.parameters;
  const hostOnly = Object.entries(c.settings.postgres.parameters).find(([k, v]) => HOST_ONLY_KEYS.has(k.toLowerCase()) && before[k] !== v);
  if (hostOnly) {
    return { ok: false, status: 400, error: `postgres.parameters.${hostOnly[0]} runs a program, loads a library from a path or writes a file where it says (the server's log, its pid file), as the PostgreSQL user on every host: set it in each host's pgherd.toml [postgres.parameters], not through the cluster-wide configuration (removing it is allowed)` };
  }
  const byPath = Object.entries(c.settings.postgres.parameters).find(([k, v]) => LIBRARY_KEYS.has(k.toLowerCase()) && namesLibraryPath(v) && before[k] !== v);
  if (byPath) {
    return { ok: false, status: 400, error: `postgres.parameters.${byPath[0]} names a library by its path, which the server would load from there as the PostgreSQL user on every host: name libraries only (installed in PostgreSQL's library directory, or found through dynamic_library_path in each host's pgherd.toml)` };
  }
  // A new rule that could never admit anyone (one a document holds already stays: it was taken
  // before). The leader knows its repl_user; the CLI's own check, which may not, leaves it to the leader.
  const held = new Set(cur.settings.access.map((r) => JSON.stringify(r)));
  for (const [i, r] of c.settings.access.entries()) {
    const why = held.has(JSON.stringify(r)) || !meta.replUser ? null : shadowedAccessRule(r, meta.replUser);
    if (why) return { ok: false, status: 400, error: `access[${i}].user ${why}` };
  }
  const changed = changedKeys(cur.settings, c.settings);
  if (changed.length === 0) return { ok: true, doc: cur, changed };
  return { ok: true, doc: { version: version + 1, term: meta.term, at: meta.at, by: meta.by, settings: c.settings }, changed };
}

/** Whether `a` is a later version than `b` (version, then the term of the leader that made it). */
export function isNewer(a: { version: number; term: number } | null | undefined, b: { version: number; term: number } | null | undefined): boolean {
  if (!a) return false;
  if (!b) return true;
  return a.version !== b.version ? a.version > b.version : a.term > b.term;
}

/** What a node's pgherd.toml says for the cluster-wide keys. */
export interface LocalDynamic {
  durability: DynamicSettings["durability"];
  parameters: Readonly<Record<string, string | number | boolean>>;
  access: readonly DynamicSettings["access"][number][];
  maxLagBytes: number;
}

/** Version 1: the settings of the first leader running this version (migration from per-host values). */
export function seedSettings(local: LocalDynamic, durability: DynamicSettings["durability"] | undefined): DynamicSettings {
  return {
    durability: durability ?? local.durability,
    postgres: { parameters: { ...local.parameters } },
    access: structuredClone([...local.access]) as DynamicSettings["access"],
    failover: { max_lag_bytes: local.maxLagBytes },
  };
}

export interface Conflict {
  key: string;
  /** JSON of the local value (null: not set in the cluster document). */
  local: string;
  cluster: string | null;
}

/**
 * Local pgherd.toml values of cluster-wide keys that differ from the cluster's. Local defaults are
 * not conflicts: only what the file sets (`explicit` says which of durability/max_lag the file sets).
 */
export function conflicts(local: LocalDynamic, explicit: { durability: boolean; maxLagBytes: boolean }, cluster: DynamicSettings): Conflict[] {
  const out: Conflict[] = [];
  const cp = new Map(Object.entries(cluster.postgres.parameters).map(([k, v]) => [k.toLowerCase(), JSON.stringify(v)]));
  for (const [k, v] of Object.entries(local.parameters).sort(([a], [b]) => a.localeCompare(b))) {
    if (HOST_ONLY_KEYS.has(k.toLowerCase())) continue; // this node's own, in force (parametersInForce)
    const c = cp.get(k.toLowerCase()) ?? null;
    if (c !== JSON.stringify(v)) out.push({ key: `${PARAM}${k}`, local: JSON.stringify(v), cluster: c });
  }
  if (local.access.length > 0 && JSON.stringify(local.access) !== JSON.stringify(cluster.access)) {
    out.push({ key: "access", local: `${local.access.length} rule(s)`, cluster: `${cluster.access.length} rule(s)` });
  }
  if (explicit.durability && local.durability !== cluster.durability) out.push({ key: "durability", local: JSON.stringify(local.durability), cluster: JSON.stringify(cluster.durability) });
  if (explicit.maxLagBytes && local.maxLagBytes !== cluster.failover.max_lag_bytes) {
    out.push({ key: "failover.max_lag_bytes", local: String(local.maxLagBytes), cluster: String(cluster.failover.max_lag_bytes) });
  }
  return out;
}

/** One line per conflict for the log and `config show`. */
export function conflictLine(c: Conflict): string {
  return `${c.key}: pgherd.toml says ${c.local}, the cluster ${c.cluster === null ? "does not set it" : `says ${c.cluster}`} (the cluster's value is in force; change it with pgherd config set/edit, or remove it from pgherd.toml)`;
}

/**
 * The PostgreSQL parameters a node runs with: the cluster's, minus those this node's own config
 * manages (archiving with [backup], max_slot_wal_keep_size with [slots]); those are reported. A
 * host-only parameter (HOST_ONLY_KEYS: a change of the cluster's may not set one) set in this node's
 * pgherd.toml is this node's, over the cluster's (re-review: with a document in force, pgherd.toml's
 * was ignored, and the cluster's refused: neither could set it).
 */
export function parametersInForce(cluster: DynamicSettings | null, local: LocalDynamic["parameters"], ownedLocally: readonly string[]): { parameters: Record<string, string | number | boolean>; dropped: string[] } {
  if (!cluster) return { parameters: { ...local }, dropped: [] };
  const owned = new Set(ownedLocally.map((k) => k.toLowerCase()));
  const parameters: Record<string, string | number | boolean> = {};
  const dropped: string[] = [];
  const hostOwn = Object.entries(local).filter(([k]) => HOST_ONLY_KEYS.has(k.toLowerCase()) && !owned.has(k.toLowerCase()));
  const hostOwnNames = new Set(hostOwn.map(([k]) => k.toLowerCase()));
  for (const [k, v] of Object.entries(cluster.postgres.parameters)) {
    if (owned.has(k.toLowerCase())) dropped.push(k);
    else if (!hostOwnNames.has(k.toLowerCase())) parameters[k] = v;
  }
  for (const [k, v] of hostOwn) parameters[k] = v;
  return { parameters, dropped };
}

/** A history line for a new version (at most ~450 characters). */
export function historyReason(doc: DynamicDoc, base: number, changed: readonly string[]): string {
  const keys = changed.join(", ");
  const text = `cluster configuration version ${doc.version} (based on ${base}): ${keys}`;
  return text.length > 450 ? `${text.slice(0, 440)}…` : text;
}
