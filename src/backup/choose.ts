// Where a backup runs (`pgherd backup` and the schedule): on a healthy standby when there is one,
// so the primary only runs pg_backup_start/stop and serves no file; on the primary otherwise. Pure:
// the leader passes its own (the primary's) report and every member's last report.
import type { Candidate } from "../core/switchover.ts";
import { lsnToBigInt } from "../core/position.ts";
import type { PgReport } from "../core/report.ts";

export type BackupSite =
  | { on: "standby"; id: string; name: string; lagBytes: number }
  | { on: "primary"; reason: string };

export interface ChooseInput {
  /** The primary's report (the leader's own). */
  primary: PgReport;
  primaryId: string;
  candidates: readonly Candidate[];
  /** failover.max_lag_bytes: a standby further behind is not healthy enough to back up from. */
  maxLagBytes: number;
  /** [backup] from_standby. */
  fromStandby: boolean;
}

/** Why a standby cannot take the backup now, or null when it can (with its replay lag). */
export function standbyUnfit(c: Candidate, primary: PgReport, maxLagBytes: number): { why: string } | { lag: number } {
  const r = c.report;
  if (c.witness) return { why: "a witness" };
  if (!r || !r.up) return { why: "not reachable or its PostgreSQL is down" };
  if (r.inRecovery !== true) return { why: "not a standby" };
  if (!r.streaming) return { why: "not streaming" };
  if (!r.replayLsn) return { why: "no replay position" };
  const lag = Number(lsnToBigInt(primary.position.lsn) - lsnToBigInt(r.replayLsn));
  if (lag > maxLagBytes) return { why: `lags ${lag} bytes (failover.max_lag_bytes ${maxLagBytes})` };
  return { lag: Math.max(0, lag) };
}

/** The streaming standby with the least replay lag (ties: by name), else the primary with the reason. */
export function chooseBackupSite(i: ChooseInput): BackupSite {
  if (!i.fromStandby) return { on: "primary", reason: "backup.from_standby = false" };
  const fit: { c: Candidate; lag: number }[] = [];
  const why: string[] = [];
  for (const c of i.candidates) {
    if (c.id === i.primaryId) continue;
    const u = standbyUnfit(c, i.primary, i.maxLagBytes);
    if ("lag" in u) fit.push({ c, lag: u.lag });
    else if (!c.witness) why.push(`${c.name}: ${u.why}`);
  }
  fit.sort((a, b) => a.lag - b.lag || (a.c.name < b.c.name ? -1 : a.c.name > b.c.name ? 1 : 0));
  const best = fit[0];
  if (best) return { on: "standby", id: best.c.id, name: best.c.name, lagBytes: best.lag };
  return { on: "primary", reason: why.length ? `no healthy standby (${why.join("; ")})` : "no standby" };
}

/**
 * A backup under way on a member, as its own reports say (each member reports the backup its
 * pgBackRest takes, so a leader elected during one still sees it), or null. The asking leader's own
 * record of the one it handed out is checked before this (backup-action.ts).
 */
export function backupUnderWay(own: { name: string; report: PgReport | null }, candidates: readonly Candidate[]): string | null {
  for (const m of [own, ...candidates]) {
    const b = m.report?.backup;
    if (b) return `a ${b.type} backup is already under way on ${m.name} (since ${b.since}, as its agent reports): one backup at a time`;
  }
  return null;
}
