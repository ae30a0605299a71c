// Majority arithmetic, kept apart so the election reads as policy, not counting.

/** Votes needed out of n voters. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest value v such that a majority of `voters` reported a value >= v.
 * Missing voters count as -Infinity. Used for the leader lease: the lease runs
 * from the send time of the newest heartbeat a majority has acknowledged.
 */
export function quorumMin(voters: readonly string[], values: Pick<ReadonlyMap<string, number>, "get">): number {
  const sorted = voters.map((v) => values.get(v) ?? -Infinity).sort((a, b) => b - a);
  const q = majority(voters.length);
  return sorted[q - 1] ?? -Infinity;
}

/** True when the granted set holds a majority of voters (non-voters ignored). */
export function hasMajority(voters: readonly string[], granted: ReadonlySet<string>): boolean {
  let n = 0;
  for (const v of voters) if (granted.has(v)) n++;
  return n >= majority(voters.length);
}
