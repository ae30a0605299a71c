// The etcd side of the migrating leader's plan (src/core/consensus-migrate.ts), carried out for
// src/agent/migrate-leader.ts: open (to etcd: take the key; to builtin: close etcd and resume a
// built-in term), the renewal of the key's lease until the commit, the commit write, the roll-back,
// and the reads that settle what an abort left in etcd (settleClose, settleOpen: for
// src/agent/migrate-checks.ts). Each returns what the plan observes next; migrate-leader.ts owns
// the state they update (`Running`).
import * as M from "../core/consensus-migrate.ts";
import type { EtcdClient } from "../consensus/etcd/client.ts";
import type { ClusterKeys } from "../consensus/etcd/elect-core.ts";
import type { MigrateDeps, PersistElection } from "./migrate-driver.ts";
import type { Running } from "./migrate-leader.ts";

export interface LeaderEtcdCtx {
  d: MigrateDeps;
  etcd(): { client: EtcdClient; keys: ClusterKeys };
  timers: M.MigrateTimers;
  clock: () => number;
  persist(f: M.InForce, election?: PersistElection): void;
  /** A warning repeated by a periodic check: logged once until it changes. */
  note(msg: string): void;
}

/**
 * To etcd, at the commit: the real membership into etcd, with the built-in guard as it stands now
 * (no guard change is made from here on: core guardChangeAllowed); if unanswered, whether etcd still
 * shows the pending record.
 */
export async function commitEtcd(x: LeaderEtcdCtx, r: Running): Promise<M.LeaderObs> {
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  const { client, keys } = x.etcd();
  try {
    const guard = x.d.consensus.status().guard;
    if (await migrateEtcd.commitEtcd(client, keys, { term: r.etcd!.term, membership: r.membership!, guard })) return { type: "committed", ok: true, pending: false };
  } catch (e) {
    x.d.log.warn(`etcd: the commit write: ${(e as Error).message}`);
  }
  try {
    const state = await migrateEtcd.commitState(client, keys, { epoch: r.state.epoch, leader: x.d.self, membership: r.membership! });
    if (state === "committed") return { type: "committed", ok: true, pending: false }; // the write applied, its answer was lost
    return { type: "committed", ok: false, pending: state === "pending", detail: state === "pending" ? "etcd refused the commit write (this node's key is gone)" : "the membership key holds neither the pending record nor the membership" };
  } catch (e) {
    return { type: "committed", ok: false, pending: false, detail: `etcd: ${(e as Error).message}` };
  }
}

/**
 * To etcd: take the leader key on a new lease while the built-in lease holds, if etcd's record holds
 * an epoch below this migration's; true, or why not (`learn` gets the record's higher epoch).
 */
export async function openEtcd(x: LeaderEtcdCtx, r: Running, learn: (epoch: number) => void): Promise<true | string> {
  const st = x.d.consensus.status();
  if (!st.membership || !r.membership) return "no membership";
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  const { leaseDeadline } = await import("../consensus/etcd/lease-core.ts");
  try {
    // openSent: the open transaction went out and got no answer (it may have applied): an abort has it settled (migrate-checks.ts settleOpening).
    const open = () => migrateEtcd.openEtcd(x.etcd().client, x.etcd().keys, {
      self: x.d.self, ttlS: x.d.cfg.consensus.ttl_s, membership: st.membership!, guard: st.guard, epoch: r.state.epoch, now: x.clock,
      sending: () => (r.openSent = true),
    }).then((o) => ((r.openSent = false), o));
    let o = await open();
    // A key with this node's id is left from an earlier migration whose release failed (this node
    // leads on builtin now, so it is stale): drop it and try once more.
    if (!o && (await migrateEtcd.dropOwnKey(x.etcd().client, x.etcd().keys, x.d.self))) {
      x.d.log.warn("deleted a stale etcd leader key of this node left from an earlier migration");
      o = await open();
    }
    if (o && "higher" in o) {
      learn(o.higher);
      return `etcd's record of this cluster's backend holds epoch ${o.higher}, not below this migration's ${r.state.epoch} (a roll-back this node had not heard of): nothing changed, the next attempt starts above it`;
    }
    if (!o) return "the etcd leader key of this cluster exists and is another agent's, or etcd's record of the backend changed meanwhile (is this cluster name used twice?)";
    r.etcd = { leaseId: o.leaseId, term: o.term };
    r.etcdUntil = leaseDeadline(o.sentAt, o.ttlS, x.timers.maxDrift, x.timers.fenceMs);
    x.d.consensus.setCap(r.etcdUntil ?? x.clock());
    // This node's key: its etcd backend resumes it once it starts, as the recorded one (src/store/election-state.ts etcdKey).
    x.d.store.saveEtcdKey(o.term);
    return true;
  } catch (e) {
    return `etcd: ${(e as Error).message}`;
  }
}

/** To etcd, until the commit: the migration renews the key's lease itself (once per poll). */
export async function renewEtcd(x: LeaderEtcdCtx, r: Running | null): Promise<void> {
  const sentAt = x.clock();
  if (!r || r.state.to !== "etcd" || !r.etcd || sentAt - r.renewedAt < x.d.cfg.consensus.poll_ms) return;
  r.renewedAt = sentAt;
  try {
    const { leaseDeadline } = await import("../consensus/etcd/lease-core.ts");
    const ttl = await x.etcd().client.leaseKeepAlive(r.etcd.leaseId);
    r.etcdUntil = leaseDeadline(sentAt, ttl, x.timers.maxDrift, x.timers.fenceMs);
    x.d.consensus.setCap(r.etcdUntil ?? x.clock());
  } catch (e) {
    x.d.log.warn(`etcd lease renewal during the migration: ${(e as Error).message}`);
  }
}

/**
 * To etcd, aborted after switches went out: etcd's record becomes the roll-back first; only then is it
 * stored here and told to the peers (true). Not written: nothing is stored; the members on etcd roll
 * it back through the same record once the key's lease ran out (src/agent/migrate-checks.ts checkClosed).
 */
export async function rollBack(x: LeaderEtcdCtx, to: M.InForce, from: M.InForce): Promise<boolean> {
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  const { OutcomeUnknown } = await import("../consensus/etcd/client.ts");
  try {
    if (await migrateEtcd.rollBack(x.etcd().client, x.etcd().keys, { from, to, leader: x.d.self })) return true;
    x.d.log.warn(`etcd's record is no longer {etcd, epoch ${from.epoch}} with this migration pending: the roll-back is not this node's to write`);
  } catch (e) {
    // Sent without an answer: etcd's record says whether it applied (that decision is then in force, whoever wrote it).
    const rec = e instanceof OutcomeUnknown ? await migrateEtcd.readRecord(x.etcd().client, x.etcd().keys).catch(() => null) : null;
    if (rec?.backend === to.backend && rec.epoch === to.epoch) return true;
    x.d.log.warn(`etcd: the roll-back to builtin (epoch ${to.epoch}): ${(e as Error).message}; the members that stored etcd roll it back once the key's lease ran out`);
  }
  return false;
}

/**
 * To builtin, by the etcd key holder: stop renewing (the deadline freezes), close etcd to
 * candidates, store {builtin, epoch} and "term, voted for self, led term", resume as built-in leader.
 */
export async function openBuiltin(x: LeaderEtcdCtx, r: Running): Promise<true | string> {
  const lease = x.d.consensus.lease();
  if (!lease) return "this node no longer holds the etcd leader key";
  const { client, keys } = x.etcd();
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  let kv;
  try {
    kv = (await client.range(keys.leader)).kvs[0];
  } catch (e) {
    return `etcd: ${(e as Error).message}`;
  }
  if (!kv || kv.value !== x.d.self || kv.createRevision !== lease.term) return "the etcd leader key is not this node's";
  const st = x.d.consensus.status();
  if (!st.membership) return "no membership";
  r.resumed = M.resumedRecords(st.guard, st.membership, r.state.term);
  x.d.consensus.stopInner();
  r.etcd = { leaseId: kv.lease, term: lease.term };
  r.etcdUntil = lease.until;
  const close = { term: lease.term, from: r.from, epoch: r.state.epoch, builtinTerm: r.state.term, leader: x.d.self, resumed: r.resumed };
  r.closeSent = true; // from here an abort leaves this node stopped until etcd settles the close (migrate-checks.ts settleClose)
  try {
    if (!(await migrateEtcd.closeEtcd(client, keys, close))) {
      r.closeSent = false; // answered: not applied, and it never will
      return `the etcd leader key changed, or etcd's record of the backend is not {etcd, epoch ${r.from.epoch}}, before etcd could be closed`;
    }
  } catch (e) {
    // No answer: the close may have applied. Read it back; closed → carry on (etcd refuses every
    // candidate from now on, so builtin must take over); else abort, fenced and out until etcd settles it
    // (a proposal without an answer may still apply later: "not closed" is not final while the key lives).
    const rec = await migrateEtcd.readRecord(client, keys).catch(() => null);
    if (!(rec?.backend === "builtin" && rec.epoch === close.epoch && rec.term === close.builtinTerm && rec.leader === x.d.self)) return `etcd: ${(e as Error).message}`;
    x.d.log.warn(`etcd: the close got no answer (${(e as Error).message}) but applied: carrying on to builtin`);
  }
  try {
    x.persist({ backend: "builtin", epoch: r.state.epoch }, { term: r.state.term, votedFor: x.d.self, ledTerm: r.state.term, resumed: r.resumed });
  } catch (e) {
    return `etcd is closed, but builtin could not be stored on this node: ${(e as Error).message}`;
  }
  x.d.consensus.replace("builtin", -Infinity);
  return true;
}

/** A close sent whose outcome is not known (or applied, with builtin not stored): its epoch, and the key's term and lease. */
export interface Closing {
  epoch: number;
  etcd: { leaseId: string; term: number };
  /** Not given back before this (own clock): the abort's fence failed, the watchdog stops PostgreSQL at the lease's deadline. */
  notBefore?: number;
}

/**
 * After such a close the etcd backend stays stopped and writes stay fenced until etcd's keys decide.
 * Reads the leader key first, then the record: the record names this close or a later decision →
 * that decision (adopt it like a member); the key is no longer this node's key of that term → "open"
 * (the close can never apply: its transaction requires that key); else the key is given back so the
 * next read decides, "unknown" (also when etcd does not answer).
 */
export async function settleClose(x: LeaderEtcdCtx, c: Closing): Promise<{ backend: M.Backend; epoch: number; leader?: string | undefined } | "open" | "unknown"> {
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  const { client, keys } = x.etcd();
  try {
    const kv = (await client.range(keys.leader)).kvs[0];
    const rec = await migrateEtcd.readRecord(client, keys);
    if (rec?.backend === "builtin" && rec.epoch >= c.epoch) return rec;
    if (!kv || kv.value !== x.d.self || kv.createRevision !== c.etcd.term) return "open";
    if (x.clock() < (c.notBefore ?? -Infinity)) {
      x.note(`the etcd leader key is given back once the watchdog has stopped PostgreSQL (the fence could not), in ${Math.ceil(c.notBefore! - x.clock())} ms`);
      return "unknown";
    }
    await migrateEtcd.releaseEtcd(client, keys, c.etcd);
  } catch (e) {
    x.note(`etcd: the outcome of the close (epoch ${c.epoch}) is still unknown: ${(e as Error).message}; staying out and fenced until etcd answers`);
  }
  return "unknown";
}

/**
 * A migration to etcd at `epoch` that aborted with its open applied or possibly applied: etcd's
 * record is settled (core settleOpen) so it ends as a decision carried out. Returns the decision in
 * etcd's record once settled (migrate-checks.ts stores a roll-back or void of its own like the roll-back
 * step), or "unknown": read again later.
 */
export async function settleOpen(x: LeaderEtcdCtx, epoch: number): Promise<M.InForce | "unknown"> {
  const migrateEtcd = await import("../consensus/migrate-etcd.ts");
  const { client, keys } = x.etcd();
  try {
    const { seen, recordMod } = await migrateEtcd.readMigrationKeys(client, keys, x.d.self);
    const s = M.settleOpen(epoch, x.d.self, seen);
    if (s.do === "done") return s.inForce;
    if (s.do === "void") return (await migrateEtcd.voidOpen(client, keys, { epoch, recordMod })) ? s.inForce : "unknown";
    // Applied, not committed: the key first (no commit can apply after), then the record.
    if (s.release) await migrateEtcd.dropOwnKey(client, keys, x.d.self);
    return (await migrateEtcd.rollBack(client, keys, { from: s.ifRecord, to: s.inForce, leader: x.d.self })) ? s.inForce : "unknown";
  } catch (e) {
    x.note(`etcd: settling the record of the aborted migration to etcd (epoch ${epoch}): ${(e as Error).message}; trying again`);
    return "unknown";
  }
}
