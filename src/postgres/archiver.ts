// PostgreSQL's archiver as it accounts for itself: pg_stat_archiver and the segments waiting in
// pg_wal/archive_status (pg_ls_archive_statusdir(): superuser or pg_monitor; the agent's local
// session is the superuser's). One statement; times in the server's clock.
import { z } from "zod";
import type { ArchiverReading } from "../core/archiving.ts";
import type { Db } from "./sql.ts";

const wal = z.string().max(64).nullable();
const ms = z.number().nullable();
const Row = z.object({
  at: z.number(),
  archived: z.number().int().min(0),
  failed: z.number().int().min(0),
  last_archived_wal: wal,
  last_archived_ms: ms,
  last_failed_wal: wal,
  last_failed_ms: ms,
  ready: z.number().int().min(0),
});

export async function readArchiver(db: Db, timeoutMs?: number): Promise<ArchiverReading> {
  const rows = await db.query("archiver", (sql) => sql`SELECT
      (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at,
      archived_count::float8 AS archived, failed_count::float8 AS failed,
      last_archived_wal, (extract(epoch FROM last_archived_time) * 1000)::float8 AS last_archived_ms,
      last_failed_wal, (extract(epoch FROM last_failed_time) * 1000)::float8 AS last_failed_ms,
      (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::float8 AS ready
    FROM pg_stat_archiver`, timeoutMs);
  const r = Row.parse(rows[0]);
  return {
    at: r.at, archived: r.archived, failed: r.failed,
    lastArchivedWal: r.last_archived_wal, lastArchivedAt: r.last_archived_ms,
    lastFailedWal: r.last_failed_wal, lastFailedAt: r.last_failed_ms,
    ready: r.ready,
  };
}
