// Lease arithmetic for the etcd backend. Pure: the config check, the backend and the docs use it.
//
// etcd deletes a key bound to a lease once the lease runs out: TTL after the last renewal etcd
// applied, counted on the etcd leader's clock (an etcd leader change only extends leases). The
// agent sends a renewal at local time `sentAt`; etcd applies it later, so counting from `sentAt`
// absorbs the round trip. Clocks may run up to `max_drift` fast or slow: etcd's TTL may pass in
// TTL / (1 + drift) of real time, and a span on this host's (slow) clock may take
// span / (1 - drift) of real time. The local deadline `until` is safe when, in real time, the
// fence that follows it (fence_ms on this host's clock) is over before etcd can delete the key:
//   (until - sentAt + fence_ms) / (1 - drift)  <=  TTL / (1 + drift)
// so  until = sentAt + TTL * (1 - drift) / (1 + drift) - fence_ms.
// No other node can take the leader key before it is deleted (a transaction on create revision 0),
// so this node's PostgreSQL is stopped (by the agent, else by the watchdog at `until`) before
// another node can be elected.

export interface EtcdLeaseTimings {
  ttlS: number;
  maxDrift: number;
  fenceMs: number;
  /** Renewal interval. */
  pollMs: number;
  /** Deadline of one request (a renewal may take this long before it fails). */
  requestTimeoutMs: number;
}

/** Milliseconds after the renewal's send time during which this node may act as leader. */
export function usableLeaseMs(ttlS: number, maxDrift: number, fenceMs: number): number {
  return (ttlS * 1000 * (1 - maxDrift)) / (1 + maxDrift) - fenceMs;
}

/**
 * The local monotonic deadline of a lease renewed by a request sent at `sentAt` whose answer
 * granted `ttlS` seconds; null when etcd answered with no TTL left (the lease is gone).
 */
export function leaseDeadline(sentAt: number, ttlS: number, maxDrift: number, fenceMs: number): number | null {
  if (!(ttlS > 0)) return null;
  const usable = usableLeaseMs(ttlS, maxDrift, fenceMs);
  return usable > 0 ? sentAt + usable : null;
}

export interface EtcdLeaseMargins {
  usableMs: number;
  /** The longest gap between two renewals that both succeed: one interval plus one request deadline (a poll sends its renewal and read together). */
  renewRoundMs: number;
  /** Smallest whole ttl_s that leaves two renewal rounds of usable lease. */
  minTtlS: number;
  ok: boolean;
}

/** A lease must survive one failed renewal: the usable part covers two renewal rounds. */
export function etcdLeaseMargins(t: EtcdLeaseTimings): EtcdLeaseMargins {
  const usableMs = usableLeaseMs(t.ttlS, t.maxDrift, t.fenceMs);
  const renewRoundMs = t.pollMs + t.requestTimeoutMs;
  const minTtlS = Math.ceil(((2 * renewRoundMs + t.fenceMs) * (1 + t.maxDrift)) / (1 - t.maxDrift) / 1000 - 1e-9);
  return { usableMs, renewRoundMs, minTtlS, ok: usableMs >= 2 * renewRoundMs };
}
