// How the dashboard judges its event stream, pure (no DOM, no clock of its own): "live" only while
// snapshots keep coming at the pace the agent says it sends them. An open stream that carries
// nothing (the agent's snapshot fails or hangs, a proxy holds the bytes) turns stale; a broken one
// reads "reconnecting…", then "disconnected". app.js applies it; test/api/dashboard-live.test.ts.

/**
 * Send intervals without a snapshot before the page calls itself stale. A follower whose leader
 * does not answer takes up to 2 s per snapshot (the leader view's deadline), so at the default
 * interval of 1 s snapshots may come 3 s apart there and are still current.
 */
export const STALE_AFTER_INTERVALS = 5;
/** The agent's send interval when a snapshot does not state a usable one. */
export const DEFAULT_INTERVAL_MS = 1000;

/** The send interval a snapshot states (`intervalMs`): a number of milliseconds from 1 to 60,000, else the default. */
export function intervalOf(snap) {
  const ms = snap !== null && typeof snap === "object" ? snap.intervalMs : undefined;
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 1 && ms <= 60000 ? ms : DEFAULT_INTERVAL_MS;
}

/** How long without a snapshot the page stays live. */
export function staleAfterMs(intervalMs) {
  return STALE_AFTER_INTERVALS * intervalMs;
}

/**
 * The connection badge: `{text, cls}` with cls "ok", "warn" or "bad".
 * s.now: the time now (ms); s.startedAt: when the page started listening; s.lastSnapshotAt: when
 * the last snapshot was rendered (null: none yet); s.intervalMs: the agent's send interval;
 * s.stream: "connecting", "open" or "error" (the browser is reconnecting); s.renderError: why the
 * last snapshot could not be shown, else null.
 */
export function connBadge(s) {
  if (s.renderError) return { text: `render error: ${s.renderError}`, cls: "bad" };
  const age = s.now - (s.lastSnapshotAt ?? s.startedAt);
  if (age > staleAfterMs(s.intervalMs)) {
    const secs = (age / 1000).toFixed(age < 10000 ? 1 : 0);
    return { text: `${s.stream === "error" ? "disconnected" : "stale"}: no update for ${secs} s`, cls: "bad" };
  }
  if (s.stream === "error") return { text: "reconnecting…", cls: "warn" };
  if (s.lastSnapshotAt === null) return { text: "connecting…", cls: "warn" };
  return { text: "live", cls: "ok" };
}
