// Failsafe mode of the etcd backend ([consensus] failsafe = true): the decisions, pure (time passed
// in). The argument is in docs/design.md §6 ("Failsafe") and docs/etcd.md.
//
// While a leader cannot renew its etcd lease it asks every other voter directly over the mesh. A
// voter confirms only when it follows that leader in that term and does not lead itself; a
// confirmation is a promise, counted on the confirmer's own monotonic clock from the moment it
// answers: "I will not take the leader key before my now + promiseMs". Only voters may take the
// key (elect-core.ts), so while every other voter's promise runs nobody but the leader can lead.
// The promise began after the leader sent its request (the confirmer received it later), so the
// leader counts it from its send time with the lease arithmetic of lease-core.ts: the fence that
// follows the derived deadline ends, in real time, before the shortest promise can have expired.
import { z } from "zod";
import { leaseDeadline } from "./lease-core.ts";

/** Leader → every other voter: confirm you follow me in `term` and promise not to take the key. */
export const FailsafeReqSchema = z.object({ t: z.literal("failsafe-req"), id: z.number().int().min(0), term: z.number().int().min(1) });
/** Voter → leader. `promiseMs`: the promise's length on the voter's clock (0 when refused). */
export const FailsafeRespSchema = z.object({
  t: z.literal("failsafe-resp"), id: z.number().int().min(0), term: z.number().int().min(1),
  ok: z.boolean(), promiseMs: z.number().int().min(0).max(60_000), reason: z.string().max(200),
});
export type FailsafeReq = z.infer<typeof FailsafeReqSchema>;
export type FailsafeResp = z.infer<typeof FailsafeRespSchema>;

// ------------------------------------------------------------------ the confirmer

export interface ConfirmInput {
  now: number;
  /** [consensus] failsafe on this node: only then does it promise anything. */
  enabled: boolean;
  /** Who asks, and for which term. */
  from: string;
  term: number;
  /** This node's view: the leader key it last read from etcd (kept while etcd cannot be read). */
  leader: { id: string; term: number } | null;
  /** This node holds or is taking the key. */
  leading: boolean;
  /** Until then this node may have taken the key without knowing it (a take whose answer was lost). */
  uncertainUntil: number;
  promiseMs: number;
}

export type Confirmation = { ok: true; promisedUntil: number } | { ok: false; reason: string };

/** Whether to confirm a leader's failsafe request, and until when this node then must not take the key. */
export function decideConfirm(i: ConfirmInput): Confirmation {
  const no = (reason: string): Confirmation => ({ ok: false, reason });
  if (!i.enabled) return no("failsafe is off on this node");
  if (i.leading) return no("this node leads or is taking the leader key");
  if (i.now < i.uncertainUntil) return no("this node's last attempt to take the key has no answer");
  if (!i.leader) return no("this node sees no leader key in etcd");
  if (i.leader.id !== i.from) return no(`this node follows ${i.leader.id}`);
  if (i.leader.term !== i.term) return no(`this node sees term ${i.leader.term}, not ${i.term}`);
  return { ok: true, promisedUntil: i.now + i.promiseMs };
}

/**
 * A node that promised (or restarted within a promise's length) must not, before `promisedUntil`,
 * take the key, nor stop streaming and publish a final position (its "vote": another node could
 * count it; this keeps even a voter the leader did not know of from gathering a majority).
 */
export function mayTake(now: number, promisedUntil: number): boolean {
  return now >= promisedUntil;
}

// ------------------------------------------------------------------ the leader

/** The local deadline one confirmation gives the leader: the promise counted from the request's send time. */
export function confirmationDeadline(sentAt: number, promiseMs: number, maxDrift: number, fenceMs: number): number | null {
  return leaseDeadline(sentAt, promiseMs / 1000, maxDrift, fenceMs);
}

/**
 * The deadline every other voter's confirmation gives together: the earliest of them, or null when
 * one has not confirmed (or there is no other voter: nobody could then bound the leader).
 */
export function failsafeDeadline(others: readonly string[], confirmed: ReadonlyMap<string, number>): number | null {
  if (others.length === 0) return null;
  let until = Infinity;
  for (const id of others) {
    const d = confirmed.get(id);
    if (d === undefined) return null;
    until = Math.min(until, d);
  }
  return until;
}

/** The leader may act until the later of its etcd lease and its failsafe deadline: either alone keeps every other node from leading. */
export function effectiveDeadline(etcdUntil: number | null, failsafeUntil: number | null): number | null {
  if (etcdUntil === null) return failsafeUntil;
  if (failsafeUntil === null) return etcdUntil;
  return Math.max(etcdUntil, failsafeUntil);
}

/** Ask for confirmations once half of the usable etcd lease is gone without a renewal (as a renewal would be due). */
export function shouldAsk(now: number, etcdUntil: number | null, usableMs: number): boolean {
  return etcdUntil === null || etcdUntil - now < usableMs / 2;
}

/** The voters that did not confirm (in time) — for the fence's log line. */
export function missing(others: readonly string[], confirmed: ReadonlyMap<string, number>, now: number): string[] {
  return others.filter((id) => (confirmed.get(id) ?? -Infinity) <= now);
}
