// PostgreSQL LSNs ("16/B374D848": two hex halves of a 64-bit WAL position) as bigint.

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function isLsn(s: string): boolean {
  return LSN.test(s);
}

export function lsnToBigInt(lsn: string): bigint {
  const m = LSN.exec(lsn);
  if (!m) throw new Error(`invalid LSN ${JSON.stringify(lsn)} (expected hex "X/Y")`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Format like PostgreSQL: upper-case hex, no leading zeros. */
export function bigIntToLsn(v: bigint): string {
  if (v < 0n || v > 0xffffffffffffffffn) throw new Error(`LSN value ${v} out of range`);
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** a - b in bytes (negative when a is behind b). */
export function lsnDiff(a: string, b: string): bigint {
  return lsnToBigInt(a) - lsnToBigInt(b);
}

export function lsnCompare(a: string, b: string): -1 | 0 | 1 {
  const d = lsnDiff(a, b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}
