// What the primary promises for a commit, as a pure plan: the synchronous_standby_names to run
// with and the guard the leader tells the voters (docs/design.md, "Durability").
//
// quorum/strict: with N voters an election needs M = N/2+1 of them, so a commit held by the
// primary and k = N − M standbys (k+1 nodes) shares a node with every possible majority; that
// node refuses any candidate behind it, so the elected node holds every acknowledged commit.
import type { Guard } from "./messages.ts";
import { bigIntToLsn, lsnToBigInt, type Position } from "./position.ts";
import { majority } from "./quorum.ts";

export type DurabilityMode = "quorum" | "strict" | "async";

export interface DurabilityInput {
  mode: DurabilityMode;
  /** Election voters, witnesses included. */
  voters: number;
  /**
   * application_name of every standby member that may be synchronous: known promotable
   * (core/sync-exclusion.ts). A standby that can never lead is never one.
   */
  standbyNames: readonly string[];
  /** Those streaming from this primary now. */
  streaming: readonly string[];
  /** The primary currently runs without synchronous standbys although quorum asks for them. */
  degraded: boolean;
  /** The leader's current guard blocks automatic failover, and a majority stored it. */
  blockCommitted: boolean;
  /** The primary's current WAL position. */
  position: Position;
  maxLagBytes: number;
  /** How long fewer than k standbys have been streaming (0 when enough are). */
  shortForMs?: number;
  /** quorum: how long writes wait for synchronous standbys before degrading. Re-pointing standbys
   *  after a failover or switchover take about a second: degrading at once would suspend automatic
   *  failover for nothing. */
  degradeAfterMs?: number;
  /**
   * Standby members this agent has not heard a state message from since it started. Until it
   * has, it does not know which of them may be synchronous (core/sync-exclusion.ts): an agent
   * restarted beside its running primary names none of them at first, and must not take that
   * for "too few standbys".
   */
  unheardStandbys?: number;
  /** How long this agent has been running its primary (since its first round as one). */
  primaryForMs?: number;
  /**
   * How long some standby the fill wants has been waiting for its echo, without a break (absent:
   * none waits; core/sync-exclusion.ts syncSet). One that reports echoes within a state message or
   * two: until then (at most FILL_ECHO_MS) quorum waits for it instead of degrading.
   */
  fillPendingForMs?: number;
}

/** quorum: how long, at most, writes wait for a standby the fill wants to echo before the primary may degrade. */
export const FILL_ECHO_MS = 3_000;

/**
 * quorum: how long, at most, a primary waits to hear every standby member before it may degrade
 * (a member that never reports, down since this agent started, must not block writes for ever).
 */
export const HEAR_STANDBYS_MS = 10_000;

export interface DurabilityPlan {
  syncNames: string;
  /** The guard to publish; "resync": once syncNames is applied, publish floor = the then current position. */
  guard: { block: boolean; floor: Position | null } | "resync" | "keep";
  degraded: boolean;
  guarantee: string;
}

/**
 * The block this primary may run degraded behind (planDurability's blockCommitted): up, naming this
 * node its holder, stored by a majority, and no lift of it by this node still on its way. Another
 * node's block (inherited by a forced failover on etcd, where the take leaves the guard as it was)
 * says nothing of the writes this primary would acknowledge alone; and a lift sent but not yet
 * stored (etcd answers later) would leave empty synchronous names in force with no block stored
 * (review of 7 December).
 */
export function blockInForce(g: { guard: Pick<Guard, "seq" | "block" | "holder"> | null | undefined; committed: number }, self: string, lifting: boolean): boolean {
  return !lifting && !!g.guard?.block && g.guard.holder === self && g.committed >= g.guard.seq;
}

export function syncStandbyNames(k: number, names: readonly string[]): string {
  return k <= 0 || names.length === 0 ? "" : `ANY ${k} (${[...names].sort().map((n) => `"${n}"`).join(", ")})`;
}

/** No standby may be synchronous now: a name no standby has, so that commits wait (never "", which is asynchronous). */
export const NO_STANDBY = "pgherd_none";

/** The names a primary that needs k synchronous standbys runs with: never "" for k > 0. */
export function syncNamesFor(k: number, names: readonly string[]): string {
  return k <= 0 ? "" : syncStandbyNames(k, names.length > 0 ? names : [NO_STANDBY]);
}

export function planDurability(x: DurabilityInput): DurabilityPlan {
  if (x.mode === "async") {
    const lsn = lsnToBigInt(x.position.lsn) - BigInt(x.maxLagBytes);
    const floor = { timeline: x.position.timeline, lsn: bigIntToLsn(lsn > 0n ? lsn : 0n) };
    return { syncNames: "", guard: { block: false, floor }, degraded: false, guarantee: `async: up to ${x.maxLagBytes} bytes at risk on failover` };
  }
  const k = x.voters - majority(x.voters);
  if (k === 0) {
    return { syncNames: "", guard: { block: false, floor: null }, degraded: false, guarantee: "zero-loss: every election needs this primary's own vote" };
  }
  // Never "" here: without a standby that may be synchronous, commits must still wait (a placeholder
  // name) until the guard says otherwise; "" would acknowledge them asynchronously, failover allowed.
  const names = syncNamesFor(k, x.standbyNames);
  const streaming = x.streaming.filter((n) => x.standbyNames.includes(n)).length;
  if (streaming >= k) {
    return {
      syncNames: names,
      guard: x.degraded ? "resync" : "keep",
      degraded: false,
      guarantee: `zero-loss: every commit is on the primary and ${k} synchronous standby${k > 1 ? "s" : ""}`,
    };
  }
  if (x.mode === "strict") {
    return { syncNames: names, guard: "keep", degraded: false, guarantee: `degraded: writes blocked until ${k} standby${k > 1 ? "s" : ""} stream (${streaming} now)` };
  }
  // quorum with too few standbys: for a grace period writes wait; then stop automatic failover
  // (a majority must know) and let commits go without a synchronous standby.
  if (!x.degraded && ((x.shortForMs ?? Infinity) < (x.degradeAfterMs ?? 0) || stillHearing(x))) {
    return { syncNames: names, guard: "keep", degraded: false, guarantee: `waiting for ${k} synchronous standby${k > 1 ? "s" : ""} (${streaming} streaming): writes wait, then the cluster degrades` };
  }
  if (!x.blockCommitted) {
    // Synchronous until a majority stored the block, even when the agent already counts itself
    // degraded (a voter change marks it so before its block is stored): "" now would acknowledge
    // commits without a standby while any majority may still elect one that lacks them.
    return { syncNames: names, guard: { block: true, floor: null }, degraded: x.degraded, guarantee: "degrading: telling the voters before writes go on without a synchronous standby" };
  }
  return {
    syncNames: "", guard: "keep", degraded: true,
    guarantee: `degraded: writes continue without a synchronous standby (${streaming}/${k} streaming); no automatic failover until one is back`,
  };
}

/**
 * Some standby member not heard yet, within HEAR_STANDBYS_MS of this agent's first round as
 * primary; or a standby the fill wants, waiting for its echo for less than FILL_ECHO_MS.
 */
function stillHearing(x: DurabilityInput): boolean {
  return ((x.unheardStandbys ?? 0) > 0 && (x.primaryForMs ?? Infinity) < HEAR_STANDBYS_MS) || (x.fillPendingForMs ?? Infinity) < FILL_ECHO_MS;
}

/**
 * The guarantee a primary reports, never better than what it can do now: while its server does
 * not answer, or cannot commit (stuck, disk full, cannot write), no commit is acknowledged at all,
 * whatever the plan says.
 */
export function truthfulGuarantee(planned: string, health: { state: string; reason: string } | null, up: boolean): string {
  if (!planned) return planned;
  if (health && (health.state === "stuck" || health.state === "disk-full" || health.state === "cannot-write")) {
    return `no commit completes: PostgreSQL ${health.state} (${health.reason})`.slice(0, 300);
  }
  if (!up) return "unknown: PostgreSQL does not answer";
  return planned;
}
