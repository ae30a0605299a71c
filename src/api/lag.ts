// `?lag=` values of the health checks: bytes as in Patroni ("1048576", "1024kB", "16MB", "1GB",
// PostgreSQL's 1024-based units), or, a pgherd extension, a time ("500ms", "10s", "2min", "1h").

export type Lag = { kind: "bytes"; bytes: number } | { kind: "seconds"; seconds: number };

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };
/** Longer than any limit written by hand ("1048576", "0.5min", " 16 MB "). */
const MAX_LAG_CHARS = 32;
const TIME_UNITS: Record<string, number> = { ms: 0.001, s: 1, min: 60, h: 3600, d: 86400 };

/** The parsed limit, or an error message naming the problem. */
export function parseLag(raw: string): Lag | string {
  // Checked for length before any pattern: the value comes unauthenticated off the network and the
  // match runs on the event loop that keeps the lease (two adjacent \s* runs once took seconds).
  const m = raw.length <= MAX_LAG_CHARS ? /^(\d+(?:\.\d+)?) *([a-zA-Z]*)$/.exec(raw.trim()) : null;
  if (!m) return `lag=${JSON.stringify(raw.slice(0, 40))} is not a number with an optional unit (e.g. 1048576, 16MB, 10s)`;
  const n = Number(m[1]);
  const unit = (m[2] ?? "").toLowerCase();
  if (unit === "") return { kind: "bytes", bytes: Math.round(n) };
  // Own keys only: "constructor" or "__proto__" must not find an inherited member (a NaN limit passed every check).
  if (Object.hasOwn(BYTE_UNITS, unit)) return { kind: "bytes", bytes: Math.round(n * BYTE_UNITS[unit]!) };
  if (Object.hasOwn(TIME_UNITS, unit)) return { kind: "seconds", seconds: n * TIME_UNITS[unit]! };
  return `lag unit ${JSON.stringify(m[2]!.slice(0, 10))} is unknown: use B, kB, MB, GB, TB or ms, s, min, h, d`;
}
