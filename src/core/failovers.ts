// How many failovers the cluster has had. The role-change history keeps only its newest entries,
// so counting its failover entries would fall as old ones are trimmed; instead every entry carries
// the cluster's count as of that entry (`failovers`), and the count is the running maximum along
// the history: a trimmed failover stays counted in the entries after it. Pure.

export interface Counted {
  kind: string;
  /** The cluster's failovers up to and including this entry (absent: recorded by an older pgherd). */
  failovers?: number;
}

/** The count after `e`, given the count `n` before it: its own stamp if higher; an unstamped failover adds one. */
const step = (n: number, e: Counted): number => (e.failovers !== undefined ? Math.max(n, e.failovers) : e.kind === "failover" ? n + 1 : n);

/** The cluster's failovers as `entries` (oldest first) tell them. */
export function failoverCount(entries: readonly Counted[]): number {
  return entries.reduce(step, 0);
}

/**
 * `entries` (oldest first) each stamped with the running count, so that dropping the oldest ones
 * never lowers `failoverCount` of what is left. Entries whose stamp is already right are kept as
 * they are (the same objects); the others are copied.
 */
export function withFailoverCounts<T extends Counted>(entries: readonly T[]): T[] {
  let n = 0;
  return entries.map((e) => {
    n = step(n, e);
    return e.failovers === n ? e : { ...e, failovers: n };
  });
}
