// Data positions: where a node's copy of the data ends. Compared (timeline, lsn)
// lexicographically; a node on a newer timeline is ahead. Pure, no I/O.

export interface Position {
  timeline: number;
  /** PostgreSQL LSN as "X/Y" hex (two 32-bit halves). */
  lsn: string;
}

export const ZERO_POSITION: Position = Object.freeze({ timeline: 0, lsn: "0/0" });

const LSN_RE = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

export function isLsn(s: string): boolean {
  return LSN_RE.test(s);
}

export function lsnToBigInt(lsn: string): bigint {
  if (!LSN_RE.test(lsn)) throw new Error(`invalid LSN ${JSON.stringify(lsn)}`);
  const [hi, lo] = lsn.split("/") as [string, string];
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function bigIntToLsn(v: bigint): string {
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** <0 if a is behind b, 0 if equal, >0 if a is ahead. */
export function comparePosition(a: Position, b: Position): number {
  if (a.timeline !== b.timeline) return a.timeline < b.timeline ? -1 : 1;
  const x = lsnToBigInt(a.lsn);
  const y = lsnToBigInt(b.lsn);
  return x === y ? 0 : x < y ? -1 : 1;
}
