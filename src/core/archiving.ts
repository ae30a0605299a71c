// Whether WAL archiving fails on this node, from PostgreSQL's own account of it (pg_stat_archiver
// and the segments waiting in pg_wal/archive_status), and what the agent says about it. Pure: the
// agent reads (src/backup/archiver-watch.ts), this decides. Every time is the server's clock.
//
// Archiving fails while the last failure is newer than the last success and a segment still waits:
// PostgreSQL archives the oldest waiting segment first and retries it until it goes, so nothing
// after it is archived meanwhile, and pg_wal keeps every segment from there on (on every node, with
// archive_mode = always). An episode begins with the first failure the agent saw; it is said once,
// when it has lasted `warnAfterMs`, and its end once, when a segment was archived after it began.
import type { ArchiveReport } from "./report.ts";

export interface ArchiverReading {
  /** The server's clock at the reading (ms since the epoch). */
  at: number;
  /** pg_stat_archiver.archived_count and failed_count (since its last reset). */
  archived: number;
  failed: number;
  lastArchivedWal: string | null;
  lastArchivedAt: number | null;
  lastFailedWal: string | null;
  lastFailedAt: number | null;
  /** Segments (and history files) waiting for the archiver: archive_status/*.ready. */
  ready: number;
}

export interface ArchivingState {
  /** The first failure seen of the episode under way (server ms), null: archiving works. */
  since: number | null;
  /** The episode was said (it has lasted warnAfterMs). */
  said: boolean;
}

export const ARCHIVING_WORKS: ArchivingState = { since: null, said: false };

export type ArchivingNews =
  | { kind: "failing"; since: number; forMs: number; wal: string | null; ready: number; lastArchivedWal: string | null; lastArchivedAt: number | null }
  | { kind: "recovered"; forMs: number; wal: string | null; ready: number };

/** The last failure is newer than the last success, and a segment waits. */
export function failingNow(r: ArchiverReading): boolean {
  return r.ready > 0 && r.lastFailedAt !== null && (r.lastArchivedAt === null || r.lastFailedAt > r.lastArchivedAt);
}

/**
 * One reading: the state after it, and what to say (null: nothing). An episode ends only with a
 * segment archived since it began, or with nothing left waiting: a reset of pg_stat_archiver (by
 * hand, or a crash restart) forgets the failure but archives nothing, and the episode goes on.
 */
export function stepArchiving(s: ArchivingState, r: ArchiverReading, warnAfterMs: number): { state: ArchivingState; say: ArchivingNews | null } {
  if (failingNow(r)) {
    const since = s.since ?? r.lastFailedAt!;
    const forMs = Math.max(0, r.at - since);
    if (s.said || forMs < warnAfterMs) return { state: { since, said: s.said }, say: null };
    return {
      state: { since, said: true },
      say: { kind: "failing", since, forMs, wal: r.lastFailedWal, ready: r.ready, lastArchivedWal: r.lastArchivedWal, lastArchivedAt: r.lastArchivedAt },
    };
  }
  if (s.since === null) return { state: s, say: null };
  const archivedSince = r.lastArchivedAt !== null && r.lastArchivedAt >= s.since;
  if (!archivedSince && r.ready > 0) return { state: s, say: null };
  return { state: ARCHIVING_WORKS, say: s.said ? { kind: "recovered", forMs: Math.max(0, r.at - s.since), wal: r.lastArchivedWal, ready: r.ready } : null };
}

/** What a node reports of its archiver: the reading, and the episode's start once it was said. */
export function archiveReport(r: ArchiverReading, s: ArchivingState): ArchiveReport {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    at: iso(r.at)!, archived: r.archived, failed: r.failed,
    lastArchivedWal: r.lastArchivedWal, lastArchivedAt: iso(r.lastArchivedAt),
    lastFailedWal: r.lastFailedWal, lastFailedAt: iso(r.lastFailedAt),
    ready: r.ready, failingSince: s.said ? iso(s.since) : null,
  };
}

/** The log line for a piece of news. */
export function archivingLine(n: ArchivingNews): string {
  const secs = (ms: number) => `${Math.round(ms / 1000)} s`;
  if (n.kind === "recovered") {
    return `WAL archiving works again after ${secs(n.forMs)}: ${n.wal ?? "a segment"} archived, ${n.ready} file(s) still waiting`;
  }
  const last = n.lastArchivedWal && n.lastArchivedAt !== null
    ? `the last one archived was ${n.lastArchivedWal} at ${new Date(n.lastArchivedAt).toISOString()}`
    : "nothing archived since the server's statistics began";
  return `WAL archiving has been failing for ${secs(n.forMs)} (since ${new Date(n.since).toISOString()}): ${n.wal ?? "a segment"} is not archived, ` +
    `${n.ready} file(s) wait in pg_wal and it keeps growing until archiving works; ${last} (archive_command's own messages are in PostgreSQL's log)`;
}
