// Whether a planned switchover (or a manual failover) to a node is safe now. Pure.
import { lsnToBigInt } from "./position.ts";
import type { PgReport } from "./report.ts";

export interface Candidate {
  id: string;
  name: string;
  voter: boolean;
  witness: boolean;
  /** Never promoted: tagged nofailover or priority 0 (its election never stands, even when handed the term). */
  neverPromoted: boolean;
  report: PgReport | null;
}

export type Verdict = { ok: true; target: Candidate } | { ok: false; reason: string };

/** Why `c` is no target of a switchover or failover, not even forced (it would never stand, and
 *  another node would win a timeout later); null when it can be promoted. */
export function neverPromotedReason(c: Candidate): string | null {
  return c.neverPromoted ? `${c.name} cannot be promoted (tagged nofailover or priority 0)` : null;
}

/**
 * The primary's permanent slots ([[slots.permanent]], src/slots) a standby holds no copy of yet.
 * A new primary without a copy creates the slot at its own position: a logical consumer then
 * misses every change between its last confirmed position and that one, a physical consumer may
 * find the WAL it asks for gone. Slots no standby can copy (invalidated, or not failover slots on
 * PostgreSQL ≥ 17: the primary says which) are not asked for: waiting would not bring a copy.
 */
export function missingSlotCopies(primary: PgReport, standby: PgReport | null): string[] {
  const have = new Set(standby?.permanentCopies ?? []);
  return (primary.permanent ?? []).filter((s) => !s.uncopyable && !have.has(s.name)).map((s) => s.name).sort();
}

/**
 * Switchover from a healthy primary: the target must stream, be within maxLagBytes and hold a copy
 * of every permanent slot. `slotCopies: "prefer"` (a stopping leader's handover, which otherwise
 * leaves a failover that creates the slots anew all the same) only prefers a standby with copies.
 */
export function checkSwitchover(opts: {
  primary: PgReport | null;
  candidates: readonly Candidate[];
  to?: string;
  paused: boolean;
  force: boolean;
  maxLagBytes: number;
  slotCopies?: "require" | "prefer";
}): Verdict {
  if (opts.paused && !opts.force) return { ok: false, reason: "the cluster is paused (pgherd resume first, or --force)" };
  if (!opts.primary || !opts.primary.up || opts.primary.inRecovery !== false) return { ok: false, reason: "there is no running primary to switch over from (use failover)" };
  const primary = opts.primary;
  const lagOf = (c: Candidate) => (c.report?.replayLsn ? Number(lsnToBigInt(primary.position.lsn) - lsnToBigInt(c.report.replayLsn)) : Infinity);
  const missing = (c: Candidate) => missingSlotCopies(primary, c.report);
  const noCopies = (c: Candidate, m: string[]) =>
    (c.report?.permanentCopies === undefined
      ? `${c.name} reports no copies of permanent slots (no [[slots.permanent]] in its pgherd.toml, or an older pgherd) and the primary has ${m.join(", ")}`
      : `${c.name} holds no copy of permanent slot(s) ${m.join(", ")} yet (its agent's log says what the copy waits for)`) +
    `: as the new primary it would create them at its own position and their consumers would miss changes (--force to switch over all the same)`;
  const require = (opts.slotCopies ?? "require") === "require" && !opts.force;
  const pool = opts.candidates.filter((c) => !c.witness);
  if (opts.to) {
    const t = pool.find((c) => c.id === opts.to || c.name === opts.to);
    if (!t) return { ok: false, reason: `no database member named ${opts.to}` };
    if (!t.voter) return { ok: false, reason: `${t.name} is not a voter yet` };
    if (!t.report || !t.report.up) return { ok: false, reason: `${t.name} is not reachable or its PostgreSQL is down` };
    const never = neverPromotedReason(t);
    if (never) return { ok: false, reason: never };
    // Not even forced: the leader itself, or a server that runs as a primary of its own (a diverged
    // former primary), has nothing to take over; handed the leadership, the latter's history would win.
    if (t.report.inRecovery === false) return { ok: false, reason: `${t.name} runs as a primary, not as a standby of this one: nothing to switch over to` };
    if (opts.force) return { ok: true, target: t };
    if (!t.report.streaming) return { ok: false, reason: `${t.name} is not streaming from the primary` };
    const lag = lagOf(t);
    if (lag > opts.maxLagBytes) return { ok: false, reason: `${t.name} lags ${lag} bytes behind the primary (limit ${opts.maxLagBytes}; --force to override)` };
    const m = missing(t);
    if (require && m.length) return { ok: false, reason: noCopies(t, m) };
    return { ok: true, target: t };
  }
  const ready = pool.filter((c) => c.voter && !c.neverPromoted && c.report?.up && c.report.streaming && lagOf(c) <= opts.maxLagBytes);
  if (ready.length === 0) return { ok: false, reason: "no streaming standby within the lag limit to switch over to" };
  ready.sort((a, b) => missing(a).length - missing(b).length || lagOf(a) - lagOf(b) || a.name.localeCompare(b.name));
  const best = ready[0]!;
  const m = missing(best);
  if (require && m.length) return { ok: false, reason: noCopies(best, m) };
  return { ok: true, target: best };
}
