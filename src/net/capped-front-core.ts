// Whom the API's connection front (src/net/capped-front.ts) lets in when its caps are reached, and
// whose connection it closes to make room. Pure: the held connections and the times are passed in.
//
// A connection is in one of three phases, as the front sees it:
// - "client": waiting for its client to deliver a request: just opened, sending a request slowly
//   (a slowloris), idle between requests (keep-alive), reading an answer. `since`: when it opened
//   or last got answer bytes from the server (a client that stops reading stops getting them).
// - "server": the server has a request from it (its HTTP parser handed one over) and has not
//   answered yet, or answers with a stream that has not ended (the dashboard's events, at most 16).
//   `since`: when that request arrived.
// - "kept": the same, for a request the API token authorized (an operator's backup may take hours):
//   never closed to make room.
// When all are held, a newcomer takes the place of the connection that has waited longest for its
// client, whatever its address: idle and slow connections, from any number of addresses, always
// give way to a new one, and one is closed only after every one that has gone longer without
// progress. Only when every held connection has a request in progress does the source holding the
// most give one up, to a newcomer from a source holding none or at least two fewer.

export type Phase = "client" | "server" | "kept";

export interface Held<C> {
  conn: C;
  /** Its source address. */
  key: string;
  phase: Phase;
  /** Monotonic ms: when it entered its phase ("client": opened or last answer bytes; "server": its request arrived). */
  since: number;
}

export type Refusal = "too-many-connections" | "too-many-from-source";
/** evicted-idle: it had no request in progress; evicted-for-fairness: the oldest request of the busiest source. */
export type Eviction = "evicted-idle" | "evicted-for-fairness";

export type Admission<C> =
  | { admit: true; evict?: { conn: C; reason: Eviction } }
  | { admit: false; reason: Refusal };

/**
 * Whether a newcomer from `key` gets in, given the held connections in the order they were
 * accepted, and whose place it takes. A source at its own cap replaces its connection that has
 * waited longest for its client, else is refused. At the total cap the newcomer replaces the
 * connection, from any source, that has waited longest for its client; when every one has a request
 * in progress, the oldest such request (not a kept one) of the source holding the most, if that
 * source holds at least two more than the newcomer's or the newcomer's holds none (no churn between
 * equals; a source holding nothing, a load balancer's health check, always gets one); else refused.
 * `mayEvict` false (too many closed to make room are still closing): refused wherever a place would be taken.
 */
export function admit<C>(held: readonly Held<C>[], key: string, max: number, perSource: number, mayEvict = true): Admission<C> {
  const mine = held.filter((h) => h.key === key);
  if (mine.length >= perSource) {
    const idle = mayEvict ? longestWaiting(mine) : undefined;
    return idle ? { admit: true, evict: { conn: idle.conn, reason: "evicted-idle" } } : { admit: false, reason: "too-many-from-source" };
  }
  if (held.length < max) return { admit: true };
  if (!mayEvict) return { admit: false, reason: "too-many-connections" };
  const idle = longestWaiting(held);
  if (idle) return { admit: true, evict: { conn: idle.conn, reason: "evicted-idle" } };
  const counts = new Map<string, number>();
  for (const h of held) counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
  let victim: Held<C> | undefined;
  let most = 0;
  for (const h of held) {
    if (h.phase !== "server") continue;
    const n = counts.get(h.key)!;
    if (n > most || (n === most && h.since < victim!.since)) [victim, most] = [h, n];
  }
  if (!victim || (most <= mine.length + 1 && mine.length > 0)) return { admit: false, reason: "too-many-connections" };
  return { admit: true, evict: { conn: victim.conn, reason: "evicted-for-fairness" } };
}

/** The "client" connection with the oldest `since` (the first of equals), if any. */
function longestWaiting<C>(held: readonly Held<C>[]): Held<C> | undefined {
  let best: Held<C> | undefined;
  for (const h of held) if (h.phase === "client" && (!best || h.since < best.since)) best = h;
  return best;
}
