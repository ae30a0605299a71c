// Lease safety arithmetic. Pure: the config schema checks it, the docs and the agent log it.
//
// A leader's lease and its fencing budget run on the leader's clock; a follower's election
// timeout runs on the follower's clock. Each clock may run up to `max_drift` fast or slow.
// The leader's lease starts before it sends a heartbeat and a follower's timeout starts after
// it receives one, so network delay only adds safety. Safe when, in real time, the old leader
// has fenced PostgreSQL before any follower can campaign:
//   (lease_ms + fence_ms) / (1 - max_drift)  <=  timeout_ms / (1 + max_drift)
// fence_ms is scaled too: it is measured on the same (possibly slow) leader clock.

export type LeaseTimings = {
  readonly lease_ms: number;
  readonly timeout_ms: number;
  readonly max_drift: number;
  readonly fence_ms: number;
};

export type ElectionMargins = {
  /** Longest real time a leader may still believe its lease valid. */
  leaseRealMaxMs: number;
  /** Real time by which a leader whose lease lapsed has fenced PostgreSQL, at worst. */
  fencedByRealMaxMs: number;
  /** Shortest real time a follower waits after the last heartbeat before it may campaign. */
  followerWaitRealMinMs: number;
  /** followerWaitRealMinMs - fencedByRealMaxMs; negative means two primaries are possible. */
  slackMs: number;
  /** Smallest integer timeout_ms that is safe with the other values. */
  minTimeoutMs: number;
  ok: boolean;
};

export function electionMargins(e: LeaseTimings): ElectionMargins {
  const slow = 1 - e.max_drift;
  const fast = 1 + e.max_drift;
  const fencedBy = (e.lease_ms + e.fence_ms) / slow;
  const followerWait = e.timeout_ms / fast;
  // The epsilon keeps exact products (e.g. drift 0) from rounding up by one.
  const minTimeoutMs = Math.ceil(fencedBy * fast - 1e-9);
  return {
    leaseRealMaxMs: e.lease_ms / slow,
    fencedByRealMaxMs: fencedBy,
    followerWaitRealMinMs: followerWait,
    slackMs: followerWait - fencedBy,
    minTimeoutMs,
    ok: e.timeout_ms >= minTimeoutMs,
  };
}

/**
 * The kernel watchdog timeout for these timers (fence/kernel-watchdog.ts): whole seconds, the
 * largest that still lets a freshly extended lease (lease_ms minus two heartbeats of age) be
 * kept alive without the kernel's reset falling after lease end + fence_ms. 0: none fits.
 */
export function kernelTimeoutS(e: { lease_ms: number; fence_ms: number; heartbeat_ms: number }): number {
  return Math.floor((e.lease_ms + e.fence_ms - 2 * e.heartbeat_ms) / 1000);
}
