// Which WAL a node's timeline history holds (src/core/wal-history.ts): history files and segment
// names read as PostgreSQL reads them.
import { expect, test } from "bun:test";
import { historyEnds, pastTimelineEnd, segmentSpan } from "../../src/core/wal-history.ts";

const MB16 = 16 * 1024 * 1024;

test("a history file's switch points; comments and blank lines skipped; a line that does not parse gives null", () => {
  const h = historyEnds("1\t0/9000140\tno recovery target specified\n\n# note\n2\t1/A2000000\tno recovery target specified\n");
  expect(h).toEqual(new Map([[1, 0x9000140n], [2, 0x1a2000000n]]));
  expect(historyEnds("")).toEqual(new Map());
  expect(historyEnds("1\tnot-an-lsn\n")).toBeNull();
  // a placeholder (comments only) lists nothing
  expect(historyEnds("# pgherd: timeline number reserved by another node's promotion\n# timeline 3\n")).toEqual(new Map());
});

test("a segment name's timeline and LSN span, for 16 MB and 1 GB segments; other names are none", () => {
  expect(segmentSpan("000000020000000000000009", MB16)).toEqual({ timeline: 2, start: 0x9000000n, end: 0xa000000n });
  // the log part counts 4 GB: 1/A2 is 0x1A2000000
  expect(segmentSpan("0000000300000001000000A2", MB16)).toEqual({ timeline: 3, start: 0x1a2000000n, end: 0x1a3000000n });
  expect(segmentSpan("000000010000000100000003", 1024 * MB16 / 16)).toEqual({ timeline: 1, start: 0x1c0000000n, end: 0x200000000n });
  expect(segmentSpan("000000010000000000000009.partial", MB16)).toBeNull();
  expect(segmentSpan("00000002.history", MB16)).toBeNull();
});

test("past the end of its timeline: the segment the switch fell in and every later one of that timeline; a timeline not in the history; never the node's own timeline or a segment wholly before the switch", () => {
  const ends = historyEnds("1\t0/5000000\treason\n2\t0/9000140\treason\n")!;
  // timeline 2 ended at 0/9000140: segment 9 holds the switch, 10 is past it, 8 is wholly history
  expect(pastTimelineEnd("000000020000000000000009", MB16, 3, ends)).toBe(true);
  expect(pastTimelineEnd("00000002000000000000000A", MB16, 3, ends)).toBe(true);
  expect(pastTimelineEnd("000000020000000000000008", MB16, 3, ends)).toBe(false);
  // timeline 1 ended exactly at a segment boundary: segment 4 ends there (history), 5 starts there (not)
  expect(pastTimelineEnd("000000010000000000000004", MB16, 3, ends)).toBe(false);
  expect(pastTimelineEnd("000000010000000000000005", MB16, 3, ends)).toBe(true);
  // the node's own timeline, or one above it (a promotion it has not heard of), is not judged here
  expect(pastTimelineEnd("000000030000000000000009", MB16, 3, ends)).toBe(false);
  expect(pastTimelineEnd("000000040000000000000009", MB16, 3, ends)).toBe(false);
  // a branch this node was rewound from: its timeline 2 is not in timeline 4's history (1 → 3 → 4)
  const branch = historyEnds("1\t0/5000000\treason\n3\t0/B000000\treason\n")!;
  expect(pastTimelineEnd("000000020000000000000006", MB16, 4, branch)).toBe(true);
  // on timeline 1 (no history file) nothing is past an end
  expect(pastTimelineEnd("000000010000000000000009", MB16, 1, new Map())).toBe(false);
  // a history file of timeline 3 that lists nothing was cut short: it says nothing, so nothing is past an end
  expect(pastTimelineEnd("000000010000000000000009", MB16, 3, new Map())).toBe(false);
});
