// The etcd transactions of a migration's plan (src/core/consensus-migrate.ts), each one atomic:
// open (to etcd: the built-in leader takes the leader key), close (to builtin: the key holder makes
// etcd refuse every later candidate), roll-back, release, and the removal of a stale own key. Every
// decision of a backend (open, close, roll-back) is written to the record `<prefix>/<cluster>/backend`
// in the same transaction, on the condition that the record is the one it replaces, so no two
// decisions share an epoch (docs/design.md S21). The agent's
// migration (src/agent/migrate-driver.ts) calls them; test/consensus/migrate-etcd.e2e.test.ts runs
// them against a real etcd and the real etcd backend.
import { z } from "zod";
import { GuardSchema, type Guard, type Membership, MembershipSchema, NodeIdSchema } from "../core/messages.ts";
import type { InForce, OpenSeen } from "../core/consensus-migrate.ts";
import type { Compare, EtcdClient, Op } from "./etcd/client.ts";
import type { ClusterKeys } from "./etcd/elect-core.ts";

/** `<prefix>/<cluster>/backend`: the cluster's record of the migration (the etcd backend ignores it). */
export const backendKey = (keys: ClusterKeys) => `${keys.root}backend`;

/** The record: {etcd, epoch} at an open; at a close {builtin, epoch, term, leader, resumed guard and membership}. */
const RecordSchema = z.object({
  backend: z.enum(["builtin", "etcd"]),
  epoch: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  term: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  leader: NodeIdSchema.optional(),
  resumed: z.object({ guard: GuardSchema, membership: MembershipSchema }).optional(),
});
export type BackendRecord = z.infer<typeof RecordSchema>;

/**
 * Whether etcd's keys (a range of the cluster's prefix) show etcd closed by a return to builtin: the
 * membership key holds the close record, or etcd's record names builtin (a close, or a roll-back of a
 * migration to etcd). Then nobody may lead on etcd: the etcd backend never takes, resumes or extends
 * the leader key (src/consensus/etcd/backend.ts). Why, and what it bounds: docs/design.md S21.
 */
export function closedBy(keys: ClusterKeys, kvs: readonly { key: string; value: string }[]): string | null {
  for (const kv of kvs) {
    if (kv.key === keys.membership && jsonHas(kv.value, "migrated")) return "the membership key holds the record of a return to builtin";
    if (kv.key === backendKey(keys) && parseRecord(kv.value)?.backend === "builtin") return `etcd's record of the backend names builtin (epoch ${parseRecord(kv.value)!.epoch})`;
  }
  return null;
}

function jsonHas(value: string, field: string): boolean {
  try {
    const v: unknown = JSON.parse(value);
    return typeof v === "object" && v !== null && field in v;
  } catch {
    return false;
  }
}

/** The cluster's migration record in etcd (null: none, or one that does not parse). */
export async function readRecord(client: EtcdClient, keys: ClusterKeys): Promise<BackendRecord | null> {
  const kv = (await client.range(backendKey(keys))).kvs[0];
  return kv ? parseRecord(kv.value) : null;
}

function parseRecord(value: string): BackendRecord | null {
  try {
    const r = RecordSchema.safeParse(JSON.parse(value));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/**
 * To etcd, aborted after switches went out, by the migrating leader (its key already given back):
 * the record {etcd, epoch} becomes {builtin, epoch + 1} in one transaction, only while it is still
 * that record and the membership still this migration's pending one. True: this call wrote it; only
 * then may the leader store the roll-back and tell its peers.
 */
export async function rollBack(client: EtcdClient, keys: ClusterKeys, o: { from: InForce; to: InForce; leader: string }): Promise<boolean> {
  const r = await client.txn([
    { key: backendKey(keys), target: "VALUE", value: JSON.stringify({ backend: o.from.backend, epoch: o.from.epoch } satisfies InForce) },
    { key: keys.membership, target: "VALUE", value: pendingRecord(o.from.epoch, o.leader) },
  ], [{ put: { key: backendKey(keys), value: JSON.stringify({ backend: o.to.backend, epoch: o.to.epoch } satisfies InForce) } }]);
  return r.succeeded;
}

export interface Opened {
  leaseId: string;
  /** The key's create revision: the etcd term. */
  term: number;
  /** When the lease was asked for (monotonic): the lease deadline counts from here. */
  sentAt: number;
  ttlS: number;
}

/**
 * To etcd, run by the built-in leader while its lease is valid: a new etcd lease, then one
 * transaction that takes the leader key only if absent and etcd's record is unchanged since it was
 * read with an epoch below this one, with the membership and guard beside it and the record
 * {etcd, epoch}. null when the key exists or the record changed meanwhile (the migration does not
 * start); `{ higher }` when the record holds this epoch or a higher one (nothing changed: the leader
 * learns it). The etcd backend of this node then resumes the key (it resumes a key bound to its own id).
 */
export async function openEtcd(
  client: EtcdClient, keys: ClusterKeys,
  o: { self: string; ttlS: number; membership: Membership; guard: Guard | null; epoch: number; now: () => number; /** Called as the transaction is sent: from here it may apply without an answer. */ sending?: () => void },
): Promise<Opened | { higher: number } | null> {
  const kv = (await client.range(backendKey(keys))).kvs[0];
  const rec = kv ? parseRecord(kv.value) : null;
  if (rec && rec.epoch >= o.epoch) return { higher: rec.epoch };
  const sentAt = o.now();
  const lease = await client.leaseGrant(o.ttlS);
  const ops: Op[] = [
    { put: { key: keys.leader, value: o.self, lease: lease.id } },
    { put: { key: keys.lastLeader, value: o.self } },
    // Pending until the commit (commitEtcd): no candidate accepts it, so nobody but this node leads in etcd before.
    { put: { key: keys.membership, value: pendingRecord(o.epoch, o.self) } },
    o.guard ? { put: { key: keys.guard, value: JSON.stringify(o.guard) } } : { del: { key: keys.guard } },
    { del: { key: keys.transfer } },
    { put: { key: backendKey(keys), value: JSON.stringify({ backend: "etcd", epoch: o.epoch } satisfies InForce) } },
  ];
  const unchanged = kv ? { key: backendKey(keys), target: "MOD" as const, modRevision: kv.modRevision } : { key: backendKey(keys), target: "CREATE" as const, createRevision: 0 };
  o.sending?.();
  // Sent without an answer, this throws OutcomeUnknown: the caller's openSent stays set and an abort settles it (settleOpen).
  const r = await client.txn([{ key: keys.leader, target: "CREATE", createRevision: 0 }, unchanged], ops);
  if (!r.succeeded) {
    // Refused (an answer): the lease holds nothing; if the revoke fails it runs out by itself.
    await client.leaseRevoke(lease.id).catch(() => {});
    return null;
  }
  return { leaseId: lease.id, term: r.revision, sentAt, ttlS: lease.ttlS };
}

/** The membership key's value between the open and the commit of a migration to etcd. */
export function pendingRecord(epoch: number, leader: string): string {
  return JSON.stringify({ pending: { epoch, leader } });
}

/**
 * To etcd, at the commit: the real membership into etcd and the built-in guard of now beside it (the
 * one written at the open may be older), in a transaction on this holder's key.
 */
export async function commitEtcd(client: EtcdClient, keys: ClusterKeys, o: { term: number; membership: Membership; guard: Guard | null }): Promise<boolean> {
  const r = await client.txn([{ key: keys.leader, target: "CREATE", createRevision: o.term }], [
    { put: { key: keys.membership, value: JSON.stringify(o.membership) } },
    o.guard ? { put: { key: keys.guard, value: JSON.stringify(o.guard) } } : { del: { key: keys.guard } },
  ]);
  return r.succeeded;
}

/** After a commit write without an answer: the membership key still holds this migration's pending record, the membership written, or something else. */
export async function commitState(client: EtcdClient, keys: ClusterKeys, o: { epoch: number; leader: string; membership: Membership }): Promise<"pending" | "committed" | "other"> {
  const kv = (await client.range(keys.membership)).kvs[0];
  if (kv?.value === pendingRecord(o.epoch, o.leader)) return "pending";
  return kv?.value === JSON.stringify(o.membership) ? "committed" : "other";
}

/**
 * A migration to etcd whose leader died before the commit leaves the leader key gone and the
 * membership pending: nobody can be elected in etcd. Any node may roll it back (one transaction
 * wins): the record becomes {builtin, epoch + 1}, which every node adopts. True: this call wrote it.
 */
export async function rollBackPending(client: EtcdClient, keys: ClusterKeys): Promise<boolean> {
  const rec = await readRecord(client, keys);
  const kv = (await client.range(keys.membership)).kvs[0];
  if (!rec || rec.backend !== "etcd" || !kv) return false;
  const pending = z.object({ pending: z.object({ epoch: z.literal(rec.epoch), leader: NodeIdSchema }) }).safeParse(JSON.parse(kv.value));
  if (!pending.success) return false;
  const r = await client.txn([
    { key: keys.leader, target: "CREATE", createRevision: 0 },
    { key: keys.membership, target: "VALUE", value: kv.value },
    { key: backendKey(keys), target: "VALUE", value: JSON.stringify(rec) },
  ], [{ put: { key: backendKey(keys), value: JSON.stringify({ backend: "builtin", epoch: rec.epoch + 1 } satisfies BackendRecord) } }]);
  return r.succeeded;
}

/**
 * To builtin, run by the key holder after it stopped renewing: the membership key becomes a record
 * no candidate accepts (it does not parse as a membership, and a bootstrap only creates an absent
 * key), in a transaction that requires this holder's key and etcd's record to be `from` (the
 * decision in force). False: the key is not this node's any more, or the record is another (etcd
 * answered so). Sent without an answer: OutcomeUnknown (never sent again: a second copy would be
 * refused by the first one's effect and read as "not applied").
 */
export async function closeEtcd(
  client: EtcdClient, keys: ClusterKeys,
  o: { term: number; from: InForce; epoch: number; builtinTerm: number; leader: string; resumed?: { guard: Guard; membership: Membership } },
): Promise<boolean> {
  const record = JSON.stringify({ backend: "builtin", epoch: o.epoch, term: o.builtinTerm, leader: o.leader, ...(o.resumed ? { resumed: o.resumed } : {}) } satisfies BackendRecord);
  const r = await client.txn([
    { key: keys.leader, target: "CREATE", createRevision: o.term },
    { key: backendKey(keys), target: "VALUE", value: JSON.stringify({ backend: o.from.backend, epoch: o.from.epoch } satisfies InForce) },
  ], [
    { put: { key: keys.membership, value: JSON.stringify({ migrated: record }) } },
    { put: { key: backendKey(keys), value: record } },
  ]);
  return r.succeeded;
}

/** Deletes this holder's leader key (transaction on its term) and revokes its lease (also when the delete failed: the revoke deletes the key too). */
export async function releaseEtcd(client: EtcdClient, keys: ClusterKeys, o: { term: number; leaseId: string }): Promise<void> {
  const deleted = await client.txn([{ key: keys.leader, target: "CREATE", createRevision: o.term }], [{ del: { key: keys.leader } }]).then(() => null, (e: Error) => e);
  await client.leaseRevoke(o.leaseId);
  if (deleted) throw deleted;
}

/** A leader key bound to `self`, left from a migration this node did not finish: deleted (true) if there. */
export async function dropOwnKey(client: EtcdClient, keys: ClusterKeys, self: string): Promise<boolean> {
  const r = await client.range(keys.leader);
  const kv = r.kvs[0];
  if (!kv || kv.value !== self) return false;
  const t = await client.txn([{ key: keys.leader, target: "CREATE", createRevision: kv.createRevision }], [{ del: { key: keys.leader } }]);
  return t.succeeded;
}

/**
 * etcd's record, membership key and leader key in one read (a consistent view): what a joining node
 * (committed: the membership key holds a membership) and a leader settling an open (OpenSeen) decide on.
 */
export async function readMigrationKeys(client: EtcdClient, keys: ClusterKeys, self: string): Promise<{ seen: OpenSeen; committed: boolean; recordMod: number }> {
  const { kvs } = await client.range(keys.root, { prefix: true });
  const kv = (key: string) => kvs.find((k) => k.key === key);
  const rec = kv(backendKey(keys));
  const record = rec ? parseRecord(rec.value) : null;
  const m = kv(keys.membership)?.value;
  const parsed = (schema: z.ZodType) => {
    try {
      return m === undefined ? null : schema.safeParse(JSON.parse(m)).data ?? null;
    } catch {
      return null;
    }
  };
  const pending = parsed(z.object({ pending: z.object({ epoch: z.number().int(), leader: NodeIdSchema }) })) as { pending: OpenSeen["pending"] } | null;
  return {
    seen: { record: record && { backend: record.backend, epoch: record.epoch }, pending: pending?.pending ?? null, ownKey: kv(keys.leader)?.value === self },
    committed: parsed(MembershipSchema) !== null,
    recordMod: rec?.modRevision ?? 0,
  };
}

/**
 * An open at `epoch` that has not applied (its answer lost): the record, unchanged since it was read
 * (mod revision `recordMod`, 0: absent), becomes {builtin, epoch}. The open's transaction requires
 * the record unchanged, so it can never apply after this. True: written.
 */
export async function voidOpen(client: EtcdClient, keys: ClusterKeys, o: { epoch: number; recordMod: number }): Promise<boolean> {
  const unchanged: Compare = o.recordMod ? { key: backendKey(keys), target: "MOD", modRevision: o.recordMod } : { key: backendKey(keys), target: "CREATE", createRevision: 0 };
  const r = await client.txn([unchanged], [{ put: { key: backendKey(keys), value: JSON.stringify({ backend: "builtin", epoch: o.epoch } satisfies BackendRecord) } }]);
  return r.succeeded;
}
