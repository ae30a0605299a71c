// Reconnect delays: exponential growth with "equal jitter" so restarted agents don't redial in lockstep.

/** Delay before retry number `attempt` (0-based): uniformly in [d/2, d] with d = min(max, min·2^attempt). */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return d / 2 + random() * (d / 2);
}
