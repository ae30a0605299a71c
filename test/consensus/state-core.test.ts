// The shared cluster state's pure parts: decoding a stored value (bad ones reported, never used),
// the leader's compare-and-swap and what a refusal means, and the bounded history key.
import { describe, expect, test } from "bun:test";
import { casOutcome, casTxn, decodeStored } from "../../src/consensus/etcd/state-core.ts";
import { SharedFlagsSchema } from "../../src/agent/flags.ts";
import { type HistoryEntry, historyForStore, StoredHistorySchema } from "../../src/agent/history.ts";
import type { KeyValue } from "../../src/consensus/etcd/client.ts";

const kv = (key: string, value: string, modRevision: number, createRevision = modRevision): KeyValue => ({ key, value, modRevision, createRevision, lease: "0" });

describe("decodeStored", () => {
  test("absent, valid with its revision, invalid JSON, invalid shape", () => {
    expect(decodeStored(SharedFlagsSchema, undefined)).toEqual({ kind: "absent" });
    expect(decodeStored(SharedFlagsSchema, kv("/p/c/flags", '{"paused":true,"scheduled":null}', 7))).toEqual({ kind: "ok", stored: { value: { paused: true, scheduled: null }, mod: 7 } });
    expect(decodeStored(SharedFlagsSchema, kv("/p/c/flags", "{paused", 8))).toEqual({ kind: "invalid", mod: 8, error: "not JSON" });
    const bad = decodeStored(SharedFlagsSchema, kv("/p/c/flags", '{"paused":"yes","scheduled":null}', 9));
    expect(bad.kind).toBe("invalid");
    expect(bad.kind === "invalid" && bad.error).toContain("paused");
    // An unknown key is refused (strict): a value from another program is never acted on.
    expect(decodeStored(SharedFlagsSchema, kv("/p/c/flags", '{"paused":false,"scheduled":null,"x":1}', 10)).kind).toBe("invalid");
  });
});

describe("compare-and-swap", () => {
  test("compares the leader key's create revision (the term) and the key's mod revision", () => {
    const t = casTxn("/p/c/leader", 41, "/p/c/flags", 57, { paused: true, scheduled: null });
    expect(t.compare).toEqual([
      { key: "/p/c/leader", target: "CREATE", createRevision: 41 },
      { key: "/p/c/flags", target: "MOD", modRevision: 57 },
    ]);
    expect(t.success).toEqual([{ put: { key: "/p/c/flags", value: '{"paused":true,"scheduled":null}' } }]);
  });

  test("a refusal says whether the leader key or the value moved", () => {
    expect(casOutcome({ succeeded: true, revision: 60, ranges: [] }, 41)).toEqual({ ok: true, mod: 60 });
    expect(casOutcome({ succeeded: false, revision: 60, ranges: [[], [kv("/p/c/flags", "{}", 58)]] }, 41)).toEqual({ ok: false, why: "not-leader" });
    expect(casOutcome({ succeeded: false, revision: 60, ranges: [[kv("/p/c/leader", "n2", 50, 50)], [kv("/p/c/flags", "{}", 58)]] }, 41)).toEqual({ ok: false, why: "not-leader" });
    expect(casOutcome({ succeeded: false, revision: 60, ranges: [[kv("/p/c/leader", "n1", 45, 41)], [kv("/p/c/flags", "{}", 58)]] }, 41)).toEqual({ ok: false, why: "moved", current: 58 });
  });
});

describe("historyForStore", () => {
  const e = (i: number): HistoryEntry => ({
    id: `id-${i}`, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), term: 1, kind: "promote", node: "a", reason: "r", oldPrimary: null, newPrimary: "a", timeline: 1, lsn: null,
  });

  test("merges by id in time order, keeps the latest, null when the store has everything", () => {
    expect(historyForStore([e(1), e(2)], null)).toEqual([e(1), e(2)]);
    expect(historyForStore([e(1), e(2)], [e(1), e(2)])).toBeNull();
    // Entries only the store has (another leader wrote them) stay; ours are merged in order.
    expect(historyForStore([e(3), e(1)], [e(1), e(2)])).toEqual([e(1), e(2), e(3)]);
    expect(historyForStore([], [e(1)])).toBeNull();
    const many = Array.from({ length: 7 }, (_, i) => e(i));
    expect(historyForStore(many, many.slice(0, 2), 5)).toEqual(many.slice(2));
    // Entries older than the store's window do not make a write.
    expect(historyForStore([e(0)], many.slice(2), 5)).toBeNull();
  });

  test("the stored list is bounded by its schema", () => {
    expect(StoredHistorySchema.safeParse(Array.from({ length: 100 }, (_, i) => e(i))).success).toBe(true);
    expect(StoredHistorySchema.safeParse(Array.from({ length: 101 }, (_, i) => e(i))).success).toBe(false);
  });
});

test("two reads of the shared state answered out of order: the older one is not taken, nor acted on (review)", async () => {
  const { EtcdClusterState } = await import("../../src/consensus/etcd/state.ts");
  const { clusterKeys } = await import("../../src/consensus/etcd/elect-core.ts");
  const { memoryLogger } = await import("../../src/log.ts");
  const { z } = await import("zod");
  const keys = clusterKeys("/p", "c");
  const pending: Array<(r: unknown) => void> = [];
  const client = { txn: () => new Promise((r) => pending.push(r)) } as unknown as import("../../src/consensus/etcd/client.ts").EtcdClient;
  const state = new EtcdClusterState({ client, keys, pollMs: 1000, log: memoryLogger() }, { flags: SharedFlagsSchema, config: z.unknown(), history: StoredHistorySchema } as never);
  const seen: number[] = [];
  state.slots.flags.onChange((v) => seen.push(v.mod));
  const flags = (paused: boolean, mod: number) => [kv(`${keys.root}flags`, JSON.stringify({ paused, scheduled: null }), mod)];
  const poll = state.poll(); // the scheduled read, sent first
  const refresh = state.refresh(); // after an operator's action: sent second, answered first
  pending[1]!({ succeeded: true, revision: 7, ranges: [flags(false, 7), [], []] });
  await refresh;
  pending[0]!({ succeeded: true, revision: 5, ranges: [flags(true, 5), [], []] });
  await poll;
  expect(state.slots.flags.current()).toMatchObject({ mod: 7, value: { paused: false } });
  expect(seen).toEqual([7]); // before: [7, 5], and paused put back until the next poll
  // etcd restored from a snapshot: its revisions went back; a read sent later is still taken.
  const after = state.poll();
  pending[2]!({ succeeded: true, revision: 3, ranges: [flags(true, 3), [], []] });
  await after;
  expect(state.slots.flags.current()).toMatchObject({ mod: 3, value: { paused: true } });
});
