// Where a clone copies from: a restore of the latest backup ([backup] tool = "pgbackrest",
// clone_from = "backup": the primary is spared the copy) or pg_basebackup from the primary. Pure.
import { comparePosition, isLsn, type Position, ZERO_POSITION } from "./position.ts";

export type CloneSource = "backup" | "primary";

export function cloneSource(o: {
  /** [backup] tool = "pgbackrest" and clone_from = "backup". */
  restoreConfigured: boolean;
  /** The clone replaces a standby that could not stream although its history matches the primary's (the WAL it needs is gone). */
  stuck: boolean;
  /** This node's data directory came from a restore of the latest backup (its last clone, this run of the agent). */
  lastCloneRestored: boolean;
}): CloneSource {
  if (!o.restoreConfigured) return "primary";
  // A restored standby that could not stream: the WAL from the backup's end to what the primary
  // keeps is missing from the archive too, so the same backup would stop at the same gap, clone
  // after clone. The primary's copy has everything up to now.
  if (o.stuck && o.lastCloneRestored) return "primary";
  return "backup";
}

/**
 * Where a backup ends, from pgBackRest's info: the timeline of its last WAL segment (`walStop`, 24
 * hex digits, the first 8 the timeline) and its stop LSN; null when either cannot be read.
 */
export function backupEnd(b: { walStop: string; lsnStop: string }): Position | null {
  if (!/^[0-9A-F]{24}$/i.test(b.walStop) || !isLsn(b.lsnStop)) return null;
  const timeline = Number.parseInt(b.walStop.slice(0, 8), 16);
  return timeline > 0 ? { timeline, lsn: b.lsnStop } : null;
}

/**
 * Whether a restore of a backup that ends at `end` brings at least what this node's data directory
 * was seen to hold (`held`: the position it votes with, src/agent/pg/host.ts heldPosition). Once a
 * clone is in place the node votes with the clone's position: a backup that ends before `held`
 * would lower it below WAL this node held, maybe commits it acknowledged as a synchronous standby
 * that no other voter has yet, and with the primary lost the voters could then elect a node without
 * them (review). pg_basebackup from the primary brings everything the primary has, so at least
 * that. An empty data directory (nothing held) takes any backup; a backup whose end is unknown, none.
 */
export function restoreCovers(end: Position | null, held: Position | null): boolean {
  if (held === null || comparePosition(held, ZERO_POSITION) <= 0) return true;
  return end !== null && comparePosition(end, held) >= 0;
}
