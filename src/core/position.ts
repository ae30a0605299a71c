// Data positions: where a node's copy of the data ends. Compared (timeline, lsn)
// lexicographically; a node on a newer timeline is ahead. Pure, no I/O.

export interface Position {
  timeline: number;
  /** PostgreSQL LSN as "X/Y" hex (two 32-bit halves). */
  lsn: string;
}

export const ZERO_POSITION: Position = Object.freeze({ timeline: 0, lsn: "0/0" });

export { bigIntToLsn, isLsn, lsnToBigInt } from "../postgres/lsn.ts";
import { lsnCompare } from "../postgres/lsn.ts";

/** <0 if a is behind b, 0 if equal, >0 if a is ahead. */
export function comparePosition(a: Position, b: Position): number {
  if (a.timeline !== b.timeline) return a.timeline < b.timeline ? -1 : 1;
  return lsnCompare(a.lsn, b.lsn);
}

/** Same timeline and LSN (null only equals null). */
export function samePosition(a: Position | null, b: Position | null): boolean {
  if (a === null || b === null) return a === b;
  return a.timeline === b.timeline && a.lsn === b.lsn;
}

/**
 * Whether the agent feeds `position` to its consensus backend: always the first time (until then a
 * database node neither votes nor stands, even when its data ends at ZERO: a brand-new cluster's
 * empty data directory), then whenever it moved.
 */
export function mustReportPosition(held: { position: Position; positionKnown: boolean }, position: Position): boolean {
  return !held.positionKnown || comparePosition(position, held.position) !== 0;
}

/** The further of `a` and `b` (b null: a). */
export function furtherPosition(a: Position, b: Position | null): Position {
  return b !== null && comparePosition(b, a) > 0 ? b : a;
}
