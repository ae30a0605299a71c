// Whether a planned switchover (or a manual failover) to a node is safe now. Pure.
import { lsnToBigInt } from "./position.ts";
import type { PgReport } from "./report.ts";

export interface Candidate {
  id: string;
  name: string;
  voter: boolean;
  witness: boolean;
  nofailover: boolean;
  report: PgReport | null;
}

export type Verdict = { ok: true; target: Candidate } | { ok: false; reason: string };

/** Switchover from a healthy primary: the target must stream and be within maxLagBytes. */
export function checkSwitchover(opts: {
  primary: PgReport | null;
  candidates: readonly Candidate[];
  to?: string;
  paused: boolean;
  force: boolean;
  maxLagBytes: number;
}): Verdict {
  if (opts.paused && !opts.force) return { ok: false, reason: "the cluster is paused (pgherd resume first, or --force)" };
  if (!opts.primary || !opts.primary.up || opts.primary.inRecovery !== false) return { ok: false, reason: "there is no running primary to switch over from (use failover)" };
  const lagOf = (c: Candidate) => (c.report?.replayLsn ? Number(lsnToBigInt(opts.primary!.position.lsn) - lsnToBigInt(c.report.replayLsn)) : Infinity);
  const pool = opts.candidates.filter((c) => !c.witness);
  if (opts.to) {
    const t = pool.find((c) => c.id === opts.to || c.name === opts.to);
    if (!t) return { ok: false, reason: `no database member named ${opts.to}` };
    if (!t.voter) return { ok: false, reason: `${t.name} is not a voter yet` };
    if (!t.report || !t.report.up) return { ok: false, reason: `${t.name} is not reachable or its PostgreSQL is down` };
    if (opts.force) return { ok: true, target: t };
    if (!t.report.streaming) return { ok: false, reason: `${t.name} is not streaming from the primary` };
    if (t.nofailover) return { ok: false, reason: `${t.name} is tagged nofailover` };
    const lag = lagOf(t);
    if (lag > opts.maxLagBytes) return { ok: false, reason: `${t.name} lags ${lag} bytes behind the primary (limit ${opts.maxLagBytes}; --force to override)` };
    return { ok: true, target: t };
  }
  const ready = pool.filter((c) => c.voter && !c.nofailover && c.report?.up && c.report.streaming && lagOf(c) <= opts.maxLagBytes);
  if (ready.length === 0) return { ok: false, reason: "no streaming standby within the lag limit to switch over to" };
  ready.sort((a, b) => lagOf(a) - lagOf(b) || a.name.localeCompare(b.name));
  return { ok: true, target: ready[0]! };
}
