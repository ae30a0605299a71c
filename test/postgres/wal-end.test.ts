// pg_waldump's output as the end-of-WAL scan reads it (postgres/wal-end.ts): the last valid record
// named by the error that ends a read (PostgreSQL 13/14 say "fatal:", 15 on "error:", 16 words
// the length error differently), where a record ends, which segments belong where their name says.
// Garbage and empty output say nothing. Real runs: test/postgres/stopped-position.test.ts.
import { describe, expect, test } from "bun:test";
import { endianness } from "node:os";
import { contiguousEnd, endAfter, findWalEndOn, parseWaldump, recordEnd, scanStart, segmentHeader, segmentName, segmentsOf, segmentStart, switchPoint } from "../../src/postgres/wal-end.ts";

// PostgreSQL 15's output over the end of a segment's WAL (a real run).
const RECORDS = [
  "rmgr: Heap        len (rec/tot):     61/    61, tx:        725, lsn: 0/049762E0, prev 0/049762A0, desc: INSERT off 20 flags 0x00, blkref #0: rel 1663/5/16384 blk 6015",
  "rmgr: Transaction len (rec/tot):     34/    34, tx:        725, lsn: 0/04976320, prev 0/049762E0, desc: COMMIT 2026-12-04 18:38:05.994027 UTC",
  "",
].join("\n");
const END_15 = "pg_waldump: error: error in WAL record at 0/4976320: invalid record length at 0/4976348: wanted 24, got 0\n";
const END_13 = "pg_waldump: fatal: error in WAL record at 0/4976320: invalid record length at 0/4976348: wanted 24, got 0\n";
const END_16 = "pg_waldump: error: error in WAL record at 0/4976320: invalid record length at 0/4976348: expected at least 24, got 0\n";
const STATS = "WAL statistics between 0/4000000 and 0/4976348:\nType  N  (%)\n----\nXLOG  0 (  0.00)\nTotal 60186  9769150 [99.97%]\n";
const BLOCK = 8192;
const SEG = 16 << 20;

describe("pg_waldump's output", () => {
  test("the end found: the error names the last valid record, whose line gives its length; it ends where the invalid one starts", () => {
    for (const stderr of [END_15, END_13, END_16]) {
      expect(parseWaldump(STATS, stderr)).toEqual({ first: null, last: null, lastGood: "0/4976320", none: false, statsEnd: "0/4976348" });
    }
    const one = parseWaldump(RECORDS.split("\n")[1]!, "");
    const commit = { lsn: "0/04976320", length: 34, switch: false };
    expect(one).toEqual({ first: commit, last: commit, lastGood: null, none: false, statsEnd: null });
    // The record's line pads the LSN ("0/04976320"), the error does not ("0/4976320").
    expect(endAfter("0/4976320", one, BLOCK, SEG)).toBe("0/4976348");
    expect(endAfter("0/49762E0", one, BLOCK, SEG)).toBeNull(); // not the record asked for
    expect(endAfter("0/4976320", parseWaldump("", ""), BLOCK, SEG)).toBeNull();
    // A run over many records: the last one is the candidate (read again by itself), the first one is not the one asked for.
    expect(endAfter("0/4976320", parseWaldump(RECORDS, ""), BLOCK, SEG)).toBeNull();
    expect(parseWaldump(RECORDS, 'pg_waldump: error: could not find file "000000010000000000000005": No such file or directory\n'))
      .toEqual({ first: { lsn: "0/049762E0", length: 61, switch: false }, last: commit, lastGood: null, none: false, statsEnd: null });
  });

  test("no valid record after the start (a segment holding only a record's tail, or recycled)", () => {
    expect(parseWaldump("", "pg_waldump: error: could not find a valid record after 0/5000000\n")).toEqual({ first: null, last: null, lastGood: null, none: true, statsEnd: null });
  });

  test("garbage and empty output say nothing", () => {
    const nothing = { first: null, last: null, lastGood: null, none: false, statsEnd: null };
    expect(parseWaldump("", "")).toEqual(nothing);
    expect(parseWaldump("\n\n", "\n")).toEqual(nothing);
    expect(parseWaldump("rmgr: Heap len (rec/tot): x/ y, lsn: 0/1\nlsn: 0/04976320\n\u0000\u00ff garbage", "pg_waldump: error: error in WAL record at zz: nope\nSegmentation fault\n")).toEqual(nothing);
    expect(parseWaldump("rmgr: Heap        len (rec/tot):     61/    61, tx:        725, lsn: 0/0497G2E0, prev 0/049762A0, desc:", "")).toEqual(nothing);
    // A localized message (LC_ALL not C) is not mistaken for anything.
    expect(parseWaldump("", "pg_waldump: Fehler: Fehler in WAL-Eintrag bei 0/4976320: ungültige Datensatzlänge bei 0/4976348\n")).toEqual(nothing);
  });

  test("a logical message's prefix that prints a line like a record is never taken for the record asked for (found by review)", () => {
    // pg_logical_emit_message('x' || E'\\n' || 'rmgr: ...', ...): the prefix is printed as written.
    const fake = "rmgr: XLOG        len (rec/tot):      1/ 99999, tx:          0, lsn: 0/04976320, prev 0/049762E0, desc: NOOP";
    const out = parseWaldump(`${RECORDS.split("\n")[1]}\n${fake}\n`, "");
    expect(out.first).toEqual({ lsn: "0/04976320", length: 34, switch: false });
    expect(endAfter("0/4976320", out, BLOCK, SEG)).toBe("0/4976348");
  });

  test("a WAL switch ends its segment (found by review: start + length was 24 bytes past it)", () => {
    const line = "rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, lsn: 0/0300A0B8, prev 0/0300A080, desc: SWITCH ";
    const out = parseWaldump(line, "");
    expect(out.first).toEqual({ lsn: "0/0300A0B8", length: 24, switch: true });
    expect(endAfter("0/300A0B8", out, BLOCK, SEG)).toBe("0/4000000");
    expect(recordEnd("0/300A0B8", 24, BLOCK, SEG)).toBe("0/300A0D0");
    // One that starts in its segment's last bytes ends in the next one, and so at the end of that one (found by review).
    expect(recordEnd("0/3FFFFF8", 24, BLOCK, SEG, true)).toBe("0/5000000");
  });

  test("a statistics run ended by the last segment, not an error (PostgreSQL 15 and later): its heading gives the end; none before 15", () => {
    expect(parseWaldump("WAL statistics between 0/4000028 and 0/4000F90:\nType N\n", "").statsEnd).toBe("0/4000F90");
    expect(parseWaldump("Type N (%)\nXLOG 3\n", "").statsEnd).toBeNull();
    // A record's text cannot print it: a statistics run prints no records.
    expect(parseWaldump(`${RECORDS}WAL statistics between 0/1 and 0/2 garbage`, "").statsEnd).toBeNull();
  });
});

describe("where a record ends", () => {
  test("within a page: rounded up to 8 bytes; a record that fills its page ends at the boundary", () => {
    expect(recordEnd("0/4976320", 34, BLOCK, SEG)).toBe("0/4976348");
    expect(recordEnd("0/4001FE0", 32, BLOCK, SEG)).toBe("0/4002000");
  });

  test("across pages: each page it reaches starts with a 24-byte header, a segment's first with a 40-byte one", () => {
    expect(recordEnd("0/4001FF0", 100, BLOCK, SEG)).toBe("0/4002070"); // 16 + 24 (header) + 84 → 0x206C, rounded
    expect(recordEnd("0/4FFFFF0", 100, BLOCK, SEG)).toBe("0/5000080"); // into the next segment: 40-byte header
    expect(recordEnd("0/4000028", 20000, BLOCK, SEG)).toBe("0/4004E78"); // over two page boundaries
    expect(recordEnd("1/FFFFFFF0", 100, BLOCK, SEG)).toBe("2/80"); // over the 4 GB boundary of the LSN's halves
  });
});

describe("segments", () => {
  test("a name's first LSN, for 16 MB and 64 MB segments", () => {
    expect(segmentStart("000000010000000000000004", SEG)).toBe(0x4000000n);
    expect(segmentStart("0000000200000001000000FF", SEG)).toBe(0x1ff000000n);
    expect(segmentStart("000000010000000000000003", 64 << 20)).toBe(0xc000000n);
  });

  test("the segment holding an LSN", () => {
    expect(segmentName(2, 0x4539c88n, SEG)).toBe("000000020000000000000004");
    expect(segmentName(1, 0x1ff000000n, SEG)).toBe("0000000100000001000000FF");
    expect(segmentName(10, 0xc000001n, 64 << 20)).toBe("0000000A0000000000000003");
  });

  test("the segments of one timeline, newest first: other timelines, history files and .partial copies left out", () => {
    const names = ["000000010000000000000007", "000000020000000000000005", "000000010000000000000005.partial", "00000002.history", "000000020000000000000006", "000000030000000000000009", "archive_status", "000000020000000000000004"];
    expect(segmentsOf(names, 2)).toEqual(["000000020000000000000006", "000000020000000000000005", "000000020000000000000004"]);
    expect(segmentsOf(names, 1)).toEqual(["000000010000000000000007"]);
    expect(segmentsOf(names, 4)).toEqual([]);
  });

  test("a read starts in a segment whose first page is where its name says, of this cluster, and written on the timeline read", () => {
    // PostgreSQL 15's first 40 bytes of a current segment (0/4000000) and of one recycled ahead of it (named 0/5000000, was 0/3000000).
    const current = Buffer.from("10d10600" + "01000000" + "0000000400000000" + "00000000" + "00000000" + "41468e918c08136b" + "00000001" + "00200000", "hex");
    const recycled = Buffer.from("10d10700" + "01000000" + "0000000300000000" + "d7000000" + "00000000" + "41468e918c08136b" + "00000001" + "00200000", "hex");
    if (endianness() !== "LE") return; // the bytes above are a little-endian machine's
    const c = { systemId: (0x6b13088c918e4641n).toString(), segmentSize: SEG, blockSize: BLOCK };
    expect(segmentHeader(current)).toEqual({ timeline: 1, pageAddr: 0x4000000n, systemId: c.systemId, segmentSize: SEG, blockSize: BLOCK });
    expect(scanStart(segmentHeader(current), 0x4000000n, 1, null, c)).toBe(0x4000000n);
    expect(scanStart(segmentHeader(current), 0x5000000n, 1, null, c)).toBeNull();
    expect(scanStart(segmentHeader(recycled), 0x5000000n, 1, null, c)).toBeNull();
    expect(scanStart(segmentHeader(current), 0x4000000n, 1, null, { ...c, systemId: "1" })).toBeNull(); // another cluster's
    expect(scanStart(segmentHeader(current), 0x4000000n, 1, null, { ...c, segmentSize: 64 << 20 })).toBeNull();
    expect(segmentHeader(current.subarray(0, 24))).toBeNull(); // short file
    expect(segmentHeader(Buffer.alloc(40))).toBeNull(); // zero-filled (preallocated)
  });

  test("timeline 1's segment recycled at a promotion under timeline 2's name at its own number is not read for timeline 2; the copy holding the switch point is, from the switch point", () => {
    // The same bytes named 000000020000000000000004: its address matches, its pages are timeline 1's.
    const page = Buffer.from("10d10600" + "01000000" + "0000000400000000" + "00000000" + "00000000" + "41468e918c08136b" + "00000001" + "00200000", "hex");
    if (endianness() !== "LE") return;
    const c = { systemId: (0x6b13088c918e4641n).toString(), segmentSize: SEG, blockSize: BLOCK };
    expect(scanStart(segmentHeader(page), 0x4000000n, 2, 0x3539c88n, c)).toBeNull();
    expect(scanStart(segmentHeader(page), 0x4000000n, 2, null, c)).toBeNull();
    // The promotion's copy of the segment holding the switch point (0/4539C88): read from there.
    expect(scanStart(segmentHeader(page), 0x4000000n, 2, 0x4539c88n, c)).toBe(0x4539c88n);
    // A segment written on timeline 2.
    const two = Buffer.from(page);
    two.writeUInt32LE(2, 4);
    expect(scanStart(segmentHeader(two), 0x4000000n, 2, 0x3539c88n, c)).toBe(0x4000000n);
  });

  test("a read ends at the last segment with no gap before it: pg_waldump waits 5 s for a missing one (found by review)", () => {
    const names = ["000000010000000000000004", "000000010000000000000005", "000000010000000000000007", "000000020000000000000006"];
    expect(contiguousEnd(names, "000000010000000000000004", 1, SEG)).toBe("000000010000000000000005");
    expect(contiguousEnd(names, "000000010000000000000007", 1, SEG)).toBe("000000010000000000000007");
    // 64 MB segments: 0x40 of them per 4 GB, the name's middle part counts them.
    expect(contiguousEnd(["00000001000000000000003F", "000000010000000100000000"], "00000001000000000000003F", 1, 64 << 20)).toBe("000000010000000100000000");
  });

  test("a timeline's switch point is its history file's last entry", () => {
    expect(switchPoint("1\t0/3539C88\tno recovery target specified\n")).toBe("0/3539C88");
    expect(switchPoint("1\t0/3000000\tno recovery target specified\n\n2\t1/A0\tbefore 2000-01-01 00:00:00+00\n")).toBe("1/A0");
    expect(switchPoint("# pgherd placeholder for timeline 3 (term 9)\n")).toBeNull();
    expect(switchPoint("")).toBeNull();
  });
});

describe("timelines", () => {
  test("the highest timeline with WAL gives the position; a lower one is read only when a higher one has none, never after a failed or unsure read (found by review)", async () => {
    const node = {} as Parameters<typeof findWalEndOn>[0];
    const control = {} as Parameters<typeof findWalEndOn>[1];
    const answers: Record<number, Awaited<ReturnType<typeof findWalEndOn>> | { lsn: null; why: string; runs: number; absent: boolean }> = {};
    const read: number[] = [];
    const one = async (_n: unknown, _c: unknown, t: number) => {
      read.push(t);
      return answers[t] as never;
    };
    answers[3] = { lsn: null, why: "no segment", runs: 0, absent: true };
    answers[2] = { lsn: "0/5000100", from: "000000020000000000000005", runs: 2 } as never;
    answers[1] = { lsn: "0/6000000", from: "000000010000000000000006", runs: 2 } as never;
    expect(await findWalEndOn(node, control, [3, 2, 1], 10_000, one)).toMatchObject({ timeline: 2, lsn: "0/5000100" });
    expect(read).toEqual([3, 2]);
    read.length = 0;
    answers[2] = { lsn: null, why: "pg_waldump printed no record at 0/5000028", runs: 3, absent: false };
    expect(await findWalEndOn(node, control, [3, 2, 1], 10_000, one)).toMatchObject({ timeline: null, lsn: null, absent: false, why: expect.stringContaining("timeline 2: pg_waldump printed no record") });
    expect(read).toEqual([3, 2]);
    // No WAL on any of them (a restore's empty pg_wal): absent, which leaves pg_control's position
    // (a failed or unsure scan refuses the vote instead: src/agent/pg/round.ts atRest).
    answers[2] = answers[1] = { lsn: null, why: "no segment", runs: 0, absent: true };
    expect(await findWalEndOn(node, control, [3, 2, 1], 10_000, one)).toMatchObject({ timeline: null, lsn: null, absent: true });
  });
});
