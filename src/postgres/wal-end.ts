// Where the WAL in a stopped server's pg_wal ends. pg_control says only the last checkpoint (and a
// standby's minimum recovery point), while a standby acknowledges a synchronous commit once the WAL
// is flushed to its pg_wal, not replayed: a stopped server can hold WAL well past pg_control's numbers.
// pg_waldump (of the server's major version) reads one timeline from the start of its newest segment
// that holds that timeline's WAL where its name says (scanStart: not a recycled one) to the first
// record that is not valid; the end of the last valid record is where crash recovery, or a standby's
// replay, would find the end of the WAL. Two short runs: the read itself (statistics, not records),
// whose error names the last valid record, then that record, whose length says where it ends.
import { lstatSync, readdirSync, realpathSync } from "node:fs";
import { endianness } from "node:os";
import { join } from "node:path";
import { pgTool } from "./binaries.ts";
import type { PgNode } from "./ctl.ts";
import type { ControlData } from "./datadir.ts";
import { runTool } from "./exec.ts";
import { SafeDir, type Owner } from "./fsutil.ts";
import { bigIntToLsn, lsnToBigInt } from "./lsn.ts";
import { historyFileName } from "./timeline-files.ts";
import { historyEnds } from "../core/wal-history.ts";
import { lookupOsUser } from "./users.ts";

const SEGMENT = /^[0-9A-F]{24}$/;
const LSN = "[0-9A-F]{1,8}/[0-9A-F]{1,8}";
/**
 * A record as pg_waldump prints it (the same from PostgreSQL 10 to 17): its resource manager, total
 * length, start and description. A logical message's prefix is printed as it was written, newlines
 * included, so a line of a record's description may look like a record: only the first line of a run
 * is trusted (parseWaldump `first`), and a record found otherwise is read again by itself (findWalEnd).
 */
const RECORD = new RegExp(`^rmgr: (\\S+)\\s+len \\(rec/tot\\):\\s*\\d+/\\s*(\\d+), tx:\\s*\\d+, lsn: (${LSN}), prev ${LSN}, desc: (\\S*)`);
/** pg_waldump's last line when a record does not read: the start of the last valid one before it. */
const LAST_GOOD = new RegExp(`error in WAL record at (${LSN}): `);
const NO_RECORD = new RegExp(`could not find a valid record after (${LSN})`);
/** The statistics' heading (PostgreSQL 15 and later): where the read started and where its last valid record ends. */
const STATS_RANGE = new RegExp(`^WAL statistics between (${LSN}) and (${LSN}):`, "m");
/** MAXALIGN (8 on every 64-bit platform) and the page headers' sizes (XLogPageHeaderData, the long one at a segment's start). */
const ALIGN = 8n;
const SHORT_HEADER = 24n;
const LONG_HEADER = 40n;
/** xlp_info's flag of a segment's first page. */
const XLP_LONG_HEADER = 0x0002;

/** A record printed: its start (as printed: "0/04976320"), xl_tot_len, and whether it is a WAL switch. */
export interface PrintedRecord { lsn: string; length: number; switch: boolean }

export interface WaldumpOutput {
  /** The first line of the output when it is a record (a run of one record: that record). */
  first: PrintedRecord | null;
  /** The last line that reads as a record (a run over many: a candidate, to be read again by itself). */
  last: PrintedRecord | null;
  /** The start of the last valid record, from the error that ended the read. */
  lastGood: string | null;
  /** No valid record after the start. */
  none: boolean;
  /** A statistics run (-z, PostgreSQL 15 and later): the end of the last valid record read, from its heading. */
  statsEnd: string | null;
}

/** What one pg_waldump run (LC_ALL=C) says; garbage and empty output say nothing. */
export function parseWaldump(stdout: string, stderr: string): WaldumpOutput {
  const record = (line: string): PrintedRecord | null => {
    const m = RECORD.exec(line);
    return m && isFinite(Number(m[2])) ? { lsn: m[3]!, length: Number(m[2]), switch: m[1] === "XLOG" && m[4] === "SWITCH" } : null;
  };
  const lines = stdout.split("\n");
  let last: PrintedRecord | null = null;
  for (let i = lines.length - 1; i >= 0 && !last; i--) last = record(lines[i]!);
  return { first: record(lines[0]!), last, lastGood: LAST_GOOD.exec(stderr)?.[1] ?? null, none: NO_RECORD.test(stderr), statsEnd: STATS_RANGE.exec(stdout)?.[2] ?? null };
}

/**
 * Where a record of `length` bytes (xl_tot_len) that starts at `lsn` ends: past the page headers it
 * spans, rounded up as PostgreSQL places the next record (xlogreader's EndRecPtr, the same as a
 * primary's flush position after it).
 */
export function recordEnd(lsn: string, length: number, blockSize: number, segmentSize: number, walSwitch = false): string {
  const block = BigInt(blockSize);
  const segment = BigInt(segmentSize);
  let pos = lsnToBigInt(lsn);
  let rest = BigInt(length);
  for (;;) {
    const room = block - (pos % block);
    if (rest <= room) {
      pos += rest;
      break;
    }
    rest -= room;
    pos += room;
    pos += pos % segment === 0n ? LONG_HEADER : SHORT_HEADER;
  }
  // A WAL switch ends its segment: the rest of it is skipped (xlogreader's EndRecPtr, the flush
  // position after it), from where the record ends (it may cross into the next segment).
  if (walSwitch) return bigIntToLsn(((pos + segment - 1n) / segment) * segment);
  return bigIntToLsn(((pos + ALIGN - 1n) / ALIGN) * ALIGN);
}

/**
 * The end of the WAL from a run of one record (`-n 1`) that must start at `at` (the last valid record
 * a read's error named, or the last record a read printed), printed as "0/04976320" where the error
 * said "0/4976320": its first line; null when it printed none, or another.
 */
export function endAfter(at: string, out: WaldumpOutput, blockSize: number, segmentSize: number): string | null {
  const r = out.first;
  if (!r || lsnToBigInt(r.lsn) !== lsnToBigInt(at)) return null;
  return recordEnd(r.lsn, r.length, blockSize, segmentSize, r.switch);
}

/**
 * The last segment of `timeline` from `first` on with no gap before it: pg_waldump waits for a
 * missing segment (10 tries, 500 ms apart) before it gives up, and a gap (WAL that ends at a segment
 * boundary, a segment recycled ahead of it) holds no valid record past it anyway.
 */
export function contiguousEnd(names: readonly string[], first: string, timeline: number, segmentSize: number): string {
  const have = new Set(names);
  let end = first;
  for (let at = segmentStart(first, segmentSize) + BigInt(segmentSize); ; at += BigInt(segmentSize)) {
    const next = segmentName(timeline, at, segmentSize);
    if (!have.has(next)) return end;
    end = next;
  }
}

/** The first LSN of segment file `name` (its timeline left aside). */
export function segmentStart(name: string, segmentSize: number): bigint {
  const perId = 0x1_0000_0000n / BigInt(segmentSize);
  return (BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`)) * BigInt(segmentSize);
}

/** The name of `timeline`'s segment file that holds `lsn`. */
export function segmentName(timeline: number, lsn: bigint, segmentSize: number): string {
  const perId = 0x1_0000_0000n / BigInt(segmentSize);
  const segno = lsn / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

/** The segment files of `timeline` among `names`, newest first. */
export function segmentsOf(names: readonly string[], timeline: number): string[] {
  const tli = timeline.toString(16).toUpperCase().padStart(8, "0");
  return names.filter((n) => SEGMENT.test(n) && n.startsWith(tli)).sort().reverse();
}

/** What a segment's first page (XLogLongPageHeaderData, native byte order) says; null when it is none. */
export interface SegmentHeader { timeline: number; pageAddr: bigint; systemId: string; segmentSize: number; blockSize: number }

export function segmentHeader(page: Buffer): SegmentHeader | null {
  if (page.length < Number(LONG_HEADER)) return null;
  const le = endianness() === "LE";
  const u32 = (o: number) => (le ? page.readUInt32LE(o) : page.readUInt32BE(o));
  const u64 = (o: number) => (le ? page.readBigUInt64LE(o) : page.readBigUInt64BE(o));
  if (((le ? page.readUInt16LE(2) : page.readUInt16BE(2)) & XLP_LONG_HEADER) === 0) return null;
  return { timeline: u32(4), pageAddr: u64(8), systemId: u64(24).toString(), segmentSize: u32(32), blockSize: u32(36) };
}

/**
 * Where a read of `timeline`'s WAL may start in the segment that begins at `start`, or null when the
 * file does not hold that timeline's WAL: its first page must be where its name says, of this
 * cluster, and written on `timeline`. Two kinds of files carry an address that matches their name
 * and are still not that: a segment recycled ahead of the end keeps its old address (it does not
 * match), and one of the parent timeline that a promotion recycled under the new timeline's name at
 * its own number keeps its address and its parent's pages (a read from it would claim the parent's
 * WAL past the switch for the new timeline). The one segment whose first page is the parent's is the
 * copy the promotion made of the segment holding the switch point (`switchAt`, from the timeline's
 * history file): its read starts at the switch point.
 */
export function scanStart(h: SegmentHeader | null, start: bigint, timeline: number, switchAt: bigint | null, c: { systemId: string; segmentSize: number; blockSize: number }): bigint | null {
  if (!h || h.pageAddr !== start || h.systemId !== c.systemId || h.segmentSize !== c.segmentSize || h.blockSize !== c.blockSize) return null;
  if (h.timeline === timeline) return start;
  return switchAt !== null && switchAt >= start && switchAt < start + BigInt(c.segmentSize) ? switchAt : null;
}

/** The LSN at which `timeline` branched off its parent: the last entry of its history file (core/wal-history.ts). */
export function switchPoint(history: string): string | null {
  const ends = [...(historyEnds(history)?.values() ?? [])];
  return ends.length > 0 ? bigIntToLsn(ends.at(-1)!) : null;
}

/** `absent`: the timeline has no valid record here (a lower one may); else the scan failed or gave no sure answer. */
export type WalEnd = { lsn: string; from: string; runs: number } | { lsn: null; why: string; runs: number; absent: boolean };

/** pg_waldump runs at most: the newest current segment and, when it has no record of its own, the two before it. */
const MAX_RUNS = 5;
/** A history file is read whole up to this size (one line per timeline switch). */
export const HISTORY_MAX = 4 << 20;

/**
 * The end of the valid WAL on `timeline` in the pg_wal of a server that is not running (the files
 * must not change meanwhile), within `deadlineMs`. Null with the reason when none is found: no
 * segment of that timeline, another major version's data directory, a failed or late pg_waldump.
 */
export async function findWalEnd(node: PgNode, control: ControlData, timeline: number, deadlineMs: number): Promise<WalEnd> {
  const until = performance.now() + deadlineMs;
  let runs = 0;
  const segmentSize = Number(control.raw["Bytes per WAL segment"]);
  const blockSize = Number(control.raw["WAL block size"]);
  if (!(segmentSize > 0 && blockSize > 0)) return { lsn: null, why: "pg_control gives no WAL segment or block size", runs, absent: false };
  const wal = realpathSync(join(node.dataDir, "pg_wal"));
  const u = await lookupOsUser(node.osUser);
  const d = await SafeDir.open(wal, { osUser: { uid: u.uid, gid: u.gid } });
  try {
    const names = segmentsOf(readdirSync(wal), timeline);
    // From the segment holding `from` to the newest of the timeline, named: without a first segment
    // pg_waldump takes the segment size from whichever file it lists first, and a zero-filled one
    // (preallocated, not written yet) makes it fail.
    const waldump = async (from: string, args: string[]) => {
      runs++;
      const left = Math.round(until - performance.now());
      if (left <= 0) return null;
      const first = segmentName(timeline, lsnToBigInt(from), segmentSize);
      const r = await runTool({
        bin: pgTool(node.bins, "pg_waldump"), args: ["-p", wal, "-s", from, ...args, first, contiguousEnd(names, first, timeline, segmentSize)],
        user: node.osUser, timeoutMs: left, log: node.log, quiet: true, normalExit: [1],
      });
      return r.timedOut ? null : parseWaldump(r.stdout, r.stderr);
    };
    const late = (): WalEnd => ({ lsn: null, why: `pg_waldump gave no answer within ${deadlineMs} ms`, runs, absent: false });
    const unsure = (why: string): WalEnd => ({ lsn: null, why, runs, absent: false });
    const history = timeline > 1 ? (await d.read(historyFileName(timeline), 0, HISTORY_MAX))?.text : undefined;
    const switched = history === undefined ? null : switchPoint(history);
    const switchAt = switched === null ? null : lsnToBigInt(switched);
    for (const name of names) {
      if (runs >= MAX_RUNS) return unsure(`no valid record found within ${MAX_RUNS} pg_waldump runs`);
      const header = await d.bytes(name, 0, Number(LONG_HEADER));
      const start = scanStart(header && segmentHeader(header.bytes), segmentStart(name, segmentSize), timeline, switchAt, { systemId: control.systemIdentifier, segmentSize, blockSize });
      if (start === null) continue;
      const from = bigIntToLsn(start);
      // Statistics instead of records (-z): a short output, and the error still names the last valid record.
      const read = await waldump(from, ["-z"]);
      if (!read) return late();
      if (read.none && !read.lastGood) continue; // only the tail of a record that began in an older segment (or nothing past the switch)
      // The read ended on an invalid record: the last valid one's length says where it ends.
      const at = read.lastGood;
      if (at !== null) {
        const one = await waldump(at, ["-n", "1"]);
        if (!one) return late();
        const end = endAfter(at, one, blockSize, segmentSize);
        return end === null ? unsure(`pg_waldump printed no record at ${at}`) : { lsn: end, from: name, runs };
      }
      // The read ended with the last segment (its last record runs into one that is not there):
      // PostgreSQL 15 and later head the statistics with the end of the last valid record.
      if (read.statsEnd !== null && lsnToBigInt(read.statsEnd) > start) return { lsn: read.statsEnd, from: name, runs };
      // Earlier versions: the last record of a full read, read again by itself, and no valid record
      // after its end. A logical message's prefix is printed as written and may print a line that
      // names an earlier record; then a record follows the end found, and the scan fails.
      const all = await waldump(from, []);
      if (!all) return late();
      const candidate = all.last?.lsn ?? null;
      if (candidate === null) return unsure(`pg_waldump printed no record after ${from}`);
      const one = await waldump(candidate, ["-n", "1"]);
      if (!one) return late();
      const end = endAfter(candidate, one, blockSize, segmentSize);
      if (end === null) return unsure(`pg_waldump printed no record at ${candidate}`);
      if (names.includes(segmentName(timeline, lsnToBigInt(end), segmentSize))) {
        const after = await waldump(end, ["-n", "1"]);
        if (!after) return late();
        if (after.first) return unsure(`a valid record follows ${end}, the end of the last record read (${after.first.lsn})`);
      }
      return { lsn: end, from: name, runs };
    }
    return { lsn: null, why: `no segment of timeline ${timeline} with a valid record in ${wal}`, runs, absent: true };
  } finally {
    await d.close();
  }
}

/**
 * The end of the valid WAL on the first of `timelines` (highest first) that has one, within
 * `deadlineMs`: a standby that followed a promotion holds the new timeline's WAL while its pg_control
 * names the old one until its first restartpoint there.
 */
export async function findWalEndOn(node: PgNode, control: ControlData, timelines: readonly number[], deadlineMs: number, one = findWalEnd): Promise<TimelineWalEnd> {
  const until = performance.now() + deadlineMs;
  let runs = 0;
  const why: string[] = [];
  let scanned = 0;
  for (const timeline of timelines) {
    const left = Math.round(until - performance.now());
    if (left <= 0) break;
    const r = await one(node, control, timeline, left);
    runs += r.runs;
    if (r.lsn !== null) return { ...r, timeline, runs };
    why.push(`timeline ${timeline}: ${r.why}`);
    // Only a timeline with no WAL here passes to the one below: a scan that failed or was not sure
    // on a higher timeline must not end as the lower timeline's (lower) position.
    if (!r.absent) return { timeline: null, lsn: null, why: why.join("; "), runs, absent: false };
    scanned++;
  }
  // absent: every timeline was scanned and none has a valid record here (a restore's empty pg_wal).
  return { timeline: null, lsn: null, why: why.join("; ") || `no time left within ${deadlineMs} ms`, runs, absent: scanned > 0 && scanned === timelines.length };
}

export type TimelineWalEnd = { timeline: number; lsn: string; from: string; runs: number } | { timeline: null; lsn: null; why: string; runs: number; absent: boolean };

/**
 * What changes when the WAL in pg_wal changes (a write, a new or recycled segment, any timeline):
 * the newest segment written (name, size, mtime), the highest name and the count. Null: no pg_wal.
 */
export async function walStamp(dataDir: string, owner: Owner): Promise<string | null> {
  let wal: string;
  try {
    wal = realpathSync(join(dataDir, "pg_wal"));
  } catch {
    return null;
  }
  const d = await SafeDir.open(wal, { osUser: owner });
  try {
    const names = readdirSync(wal).filter((n) => SEGMENT.test(n)).sort().reverse();
    let newest = { name: "", size: 0, mtimeMs: -1 };
    for (const name of names) {
      const st = lstatSync(d.at(name), { throwIfNoEntry: false });
      if (st && st.mtimeMs > newest.mtimeMs) newest = { name, size: st.size, mtimeMs: st.mtimeMs };
    }
    return `${names.length} ${names[0] ?? "-"} ${newest.name} ${newest.size} ${newest.mtimeMs}`;
  } finally {
    await d.close();
  }
}
