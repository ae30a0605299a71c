// The position a monitoring round reports for this node (round.ts), from what it observed: the
// running server's probe, or the stopped server's pg_control.
import { ZERO_POSITION, type Position } from "../../core/position.ts";
import type { ControlData, DataDirInfo } from "../../postgres/datadir.ts";
import { lsnCompare, type Probe } from "../../postgres/index.ts";

/** The position a round reports: the running server's, else what pg_control says its stopped server holds. */
export function positionOf(info: DataDirInfo, p: Probe): Position {
  if (p.up) {
    const lsn = p.currentLsn ?? maxLsn(p.receiveLsn, p.replayLsn);
    return lsn ? { timeline: p.timeline, lsn } : ZERO_POSITION;
  }
  return info.control ? controlPosition(info.control) : ZERO_POSITION;
}

/** What pg_control says a stopped server holds: its last checkpoint, or a standby's minimum recovery point. */
export function controlPosition(c: ControlData): Position {
  // A standby's minimum recovery point is on a timeline of its own (a later one once it replayed past a switch).
  const minTli = Number(c.raw["Min recovery ending loc's timeline"]);
  if (minTli > c.timeline && c.minRecoveryEndLsn !== "0/0") return { timeline: minTli, lsn: c.minRecoveryEndLsn };
  return { timeline: c.timeline, lsn: maxLsn(c.checkpointLsn, c.minRecoveryEndLsn) ?? "0/0" };
}

function maxLsn(a: string | null, b: string | null): string | null {
  if (!a) return b;
  if (!b) return a;
  return lsnCompare(a, b) >= 0 ? a : b;
}
