// Timeline numbers that are unique across the cluster's histories (docs/design.md, section 3:
// "Timeline numbers are unique across histories", invariant S24). PostgreSQL gives a promotion the timeline after the newest it can find: it walks
// the history files from its recovery target upward (pg_wal, and the archive through
// restore_command) and takes the first number without one. A node that never saw another node's
// promotion would pick that node's number again, and positions would then compare two histories
// as one. So a leader reserves the number at a majority (the durability guard) before it
// promotes, a later leader learns the highest reservation from its voters, and a promotion below
// it first puts placeholder history files in pg_wal for the numbers taken, so that PostgreSQL
// walks past them. Pure, no I/O.

/** Starts every placeholder history file: PostgreSQL reads `#` lines as comments. */
export const PLACEHOLDER_MARK = "# pgherd: timeline number reserved by another node's promotion";

/** The highest of two reservations (absent: none). */
export function maxTimeline(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

export interface TimelinePlan {
  /** Numbers to put a placeholder history file for, ascending (none when nothing was reserved above). */
  fill: number[];
  /** The timeline PostgreSQL will give the promotion once `fill` is in place: the one to reserve. */
  next: number;
}

/**
 * The promotion's timeline. `target`: the timeline the standby recovers on (PostgreSQL walks from
 * it); `has(n)`: a history file for n is in pg_wal; `reserved`: the highest number a leader reserved.
 */
export function planTimeline(target: number, has: (n: number) => boolean, reserved: number | undefined): TimelinePlan {
  let t = Math.max(1, target);
  while (has(t + 1)) t++; // PostgreSQL's own walk first: its recovery target may already be past ours
  const fill: number[] = [];
  for (let n = t + 1; n <= (reserved ?? 0); n++) if (!has(n)) fill.push(n);
  let top = Math.max(t, reserved ?? 0);
  while (has(top + 1)) top++;
  return { fill, next: top + 1 };
}

/**
 * A leader's stopped former primary restarts in place only on a timeline no other promotion went
 * past: once a leader reserved a higher number, that leader may have promoted elsewhere, and WAL
 * written here on the old timeline would compare as ahead of, or equal to, a history it is not part
 * of. It is then started as a standby and promoted, which gives it a timeline above the reservation.
 */
export function mayRestartInPlace(timeline: number | null, reserved: number | undefined): boolean {
  return reserved === undefined || (timeline !== null && timeline >= reserved);
}

/** A history file's content is one of our placeholders. */
export function isPlaceholder(text: string): boolean {
  return text.startsWith(PLACEHOLDER_MARK);
}

/** The placeholder for `n`: comments only, so PostgreSQL never takes it for a real history. */
export function placeholderText(n: number, term: number): string {
  return `${PLACEHOLDER_MARK}\n# timeline ${n}, reserved before term ${term}: not a history of this node; it keeps the number taken for PostgreSQL's walk\n`;
}

/** `g` with the reservation `tl` (no key at all without one: guards stored before it existed have none). */
export function withTimeline<G extends { timeline?: number }>(g: G, tl: number | undefined): G {
  const { timeline: _, ...rest } = g;
  return (tl === undefined ? rest : { ...rest, timeline: tl }) as G;
}
