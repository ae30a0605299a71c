// What a failed pg_rewind leads to (src/agent/pg/rebuild.ts carries it out). Pure.
//
// A pg_rewind that could not connect to the new primary and stopped before it wrote anything says
// nothing about the histories: usually the new primary has not admitted this node yet (its pg_hba
// names a peer once its agent heard it over the mesh and reloaded, a round after the node came
// back) or the network blinked. A fresh clone for that would copy the whole database and move this
// data directory aside, for nothing. So the rewind is tried again at the next rounds; only when it
// keeps failing to connect for REWIND_CONNECT_RETRY_MS is a clone taken, as for any other failure
// (a clone that cannot connect either fails and is retried as before).

/** How long a pg_rewind that cannot connect is tried again before a fresh clone is taken instead. */
export const REWIND_CONNECT_RETRY_MS = 30_000;

/**
 * Between two attempts of an episode the rewind waits REWIND_RETRY_FIRST_MS, doubled after each
 * failure up to REWIND_RETRY_MAX_MS: the usual cause (a reload a few ms away) is over by the first
 * retry, and a primary that does not answer is not asked every round (each attempt stops the server
 * again, writes the rewind marker and may wait out libpq's connect timeout).
 */
export const REWIND_RETRY_FIRST_MS = 500;
export const REWIND_RETRY_MAX_MS = 4000;

/** Consecutive connection failures of pg_rewind from one source: the first one's time, the last one's, how many. */
export interface ConnectEpisode { from: string; since: number; last: number; failures: number }

/**
 * The episode after a connection failure from `from` at `now`: the one running goes on; a failure
 * from another source, or long after the last one (more than REWIND_CONNECT_RETRY_MS: the rewind was
 * not tried meanwhile, e.g. the node led for a while), starts a new one.
 */
export function connectEpisode(prev: ConnectEpisode | null, from: string, now: number): ConnectEpisode {
  return prev && prev.from === from && now - prev.last <= REWIND_CONNECT_RETRY_MS
    ? { from, since: prev.since, last: now, failures: prev.failures + 1 }
    : { from, since: now, last: now, failures: 1 };
}

/**
 * Whether a rewind from `from` may be tried at `now` during `episode` (null: none running). A
 * rewind from another source, or one long after the last failure, starts at once.
 */
export function rewindDue(episode: ConnectEpisode | null, from: string, now: number): boolean {
  if (!episode || episode.from !== from || now - episode.last > REWIND_CONNECT_RETRY_MS) return true;
  const wait = Math.min(REWIND_RETRY_FIRST_MS * 2 ** (episode.failures - 1), REWIND_RETRY_MAX_MS);
  return now - episode.last >= wait;
}

/**
 * After a failed pg_rewind: "retry" (next round) or "clone". `touched`: it reached its writes into
 * the target (then only a clone may follow); `couldNotConnect`: it failed to connect to the source;
 * `failingForMs`: how long its attempts have failed to connect without a break (0 at the first).
 */
export function afterRewindFailure(x: { touched: boolean; couldNotConnect: boolean; failingForMs: number }): "retry" | "clone" {
  return !x.touched && x.couldNotConnect && x.failingForMs < REWIND_CONNECT_RETRY_MS ? "retry" : "clone";
}
