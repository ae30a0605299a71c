// Which WAL a node's timeline history holds: PostgreSQL's timeline history files and segment file
// names, read as PostgreSQL reads them (timeline.c readTimeLineHistory, xlog_internal.h
// XLogFromFileName). Pure, no I/O.
//
// A history file of timeline N lists every ancestor timeline with the LSN it ended at (the switch
// point): "<timeline>\t<X/X>\t<reason>", one line each, "#" lines are comments. WAL of an ancestor
// timeline past its switch point is no part of N's history: a former primary writes it before it
// dies (unacknowledged transactions), and its copy of the segment the switch fell in differs from
// the copy a standby that followed the switch completed there.

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const LINE = /^(\d+)\s+([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})(\s|$)/;

/** The switch points of a history file: ancestor timeline → the LSN it ended at. Null when a line does not parse. */
export function historyEnds(text: string): Map<number, bigint> | null {
  const ends = new Map<number, bigint>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) return null;
    ends.set(Number(m[1]), (BigInt(`0x${m[2]}`) << 32n) | BigInt(`0x${m[3]}`));
  }
  return ends;
}

/** A WAL segment file name's timeline and the LSNs the segment spans, for segments of `segBytes`; null when it is not one. */
export function segmentSpan(name: string, segBytes: number): { timeline: number; start: bigint; end: bigint } | null {
  const m = SEGMENT.exec(name);
  if (!m || !(segBytes > 0)) return null;
  const size = BigInt(segBytes);
  const start = BigInt(`0x${m[2]}`) * ((1n << 32n) / size) * size + BigInt(`0x${m[3]}`) * size;
  return { timeline: parseInt(m[1]!, 16), start, end: start + size };
}

/**
 * This node's copy of WAL segment `name` holds WAL that is no part of its history: the segment's
 * timeline ended (the node is on `timeline`, whose history file gave `ends`) at or before the
 * segment's end, or that timeline is not in the history at all (a branch this node was rewound
 * from). A segment wholly before its timeline's switch point, or of the node's own timeline, is
 * history: false; so is any segment when the history lists nothing (a cut-short file).
 */
export function pastTimelineEnd(name: string, segBytes: number, timeline: number, ends: Map<number, bigint>): boolean {
  const seg = segmentSpan(name, segBytes);
  if (!seg || seg.timeline >= timeline) return false;
  // The history file of a timeline above 1 lists its parent at least: one that lists nothing was cut
  // short (a copy interrupted), and says nothing about what this node's history holds.
  if (ends.size === 0) return false;
  const end = ends.get(seg.timeline);
  return end === undefined || seg.end > end;
}
