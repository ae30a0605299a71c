// The keepalive's clock for every open mesh connection (conn.ts). It owns the interval timers: one
// per period, started with its first subscriber and cleared with its last.

/**
 * One unref'd interval timer per period, shared by every open connection's keepalive: a node with
 * n peers wakes once per period for all of them instead of n times. A connection's first tick
 * comes within one period of its start (onTick measures time itself). Returns the unsubscribe.
 */
const tickers = new Map<number, { timer: ReturnType<typeof setInterval>; subs: Set<() => void> }>();
export function onEvery(ms: number, fn: () => void): () => void {
  let t = tickers.get(ms);
  if (!t) {
    const subs = new Set<() => void>();
    const timer = setInterval(() => {
      for (const f of [...subs]) f();
    }, ms);
    timer.unref();
    t = { timer, subs };
    tickers.set(ms, t);
  }
  const entry = t;
  entry.subs.add(fn);
  return () => {
    entry.subs.delete(fn);
    if (entry.subs.size === 0 && tickers.get(ms) === entry) {
      clearInterval(entry.timer);
      tickers.delete(ms);
    }
  };
}
