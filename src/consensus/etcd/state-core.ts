// The shared cluster state in etcd, pure parts: which key holds what, how a stored value is
// decoded (JSON, then the item's zod schema: a bad value is reported, never used), the compares
// of a leader's compare-and-swap, and what a refused transaction means.
import type { ZodType } from "zod";
import type { CasOutcome, Stored } from "../../agent/cluster-state.ts";
import type { Compare, Op, TxnResult } from "./client.ts";
import type { RawKv } from "./elect-core.ts";

/** The shared items' keys, under the cluster's prefix beside the election's keys. */
export const STATE_KEYS = { flags: "flags", config: "config", history: "history" } as const;

export type Decoded<T> = { kind: "absent" } | { kind: "ok"; stored: Stored<T> } | { kind: "invalid"; mod: number; error: string };

/** A key's value as read: absent, valid (with its mod revision), or invalid (why, for a log line). */
export function decodeStored<T>(schema: ZodType<T>, kv: RawKv | undefined): Decoded<T> {
  if (!kv) return { kind: "absent" };
  let raw: unknown;
  try {
    raw = JSON.parse(kv.value);
  } catch {
    return { kind: "invalid", mod: kv.modRevision, error: "not JSON" };
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    return { kind: "invalid", mod: kv.modRevision, error: issue ? `${issue.path.join(".") || "value"}: ${issue.message}` : "does not validate" };
  }
  return { kind: "ok", stored: { value: r.data, mod: kv.modRevision } };
}

/** A leader's compare-and-swap of `key`: its revision is still `base` (0: absent) and the leader key is the one created at `term`. */
export function casTxn(leaderKey: string, term: number, key: string, base: number, value: unknown): { compare: Compare[]; success: Op[]; failure: Op[] } {
  return {
    compare: [
      { key: leaderKey, target: "CREATE", createRevision: term },
      { key, target: "MOD", modRevision: base },
    ],
    success: [{ put: { key, value: JSON.stringify(value) } }],
    // On refusal: who holds the leader key, and the key's revision now (to say which compare failed).
    failure: [{ range: { key: leaderKey } }, { range: { key } }],
  };
}

/** What the transaction of casTxn answered. */
export function casOutcome(r: TxnResult, term: number): CasOutcome {
  if (r.succeeded) return { ok: true, mod: r.revision };
  const leader = r.ranges[0]?.[0];
  if (!leader || leader.createRevision !== term) return { ok: false, why: "not-leader" };
  return { ok: false, why: "moved", current: r.ranges[1]?.[0]?.modRevision ?? 0 };
}
