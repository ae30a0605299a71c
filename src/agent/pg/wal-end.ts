// The end of a stopped server's WAL (postgres/wal-end.ts) for the monitoring round, which runs twice
// a second: one scan per change of the WAL files (postgres/wal-end.ts walStamp, with pg_control's
// checkpoint and the timeline), never two at a time, and outside the round unless the round waits
// for it (the first round: the node's first published position is the one it votes with).
import type { Position } from "../../core/position.ts";
import type { ControlData } from "../../postgres/datadir.ts";
import { lookupOsUser } from "../../postgres/users.ts";
import { findWalEndOn, walStamp } from "../../postgres/wal-end.ts";
import type { PgHost } from "./host.ts";

/** A scan's deadline. It reads about one segment (16 MB: ~25 ms here), two pg_waldump runs. */
export const WAL_END_DEADLINE_MS = 10_000;
/** A scan that failed is tried again for the same files after this long. */
const RETRY_MS = 30_000;

/** A stopped server's WAL end: found, none on its timelines ("none": pg_control's position stands), or null (not known: failed, unsure, not yet). */
export type StoppedWalEnd = Position | "none" | null;

export class StoppedWal {
  private known: { key: string; end: StoppedWalEnd; at: number } | null = null;
  private scan: { key: string; waited: boolean; done: Promise<void> } | null = null;

  /** `found`: a scan that no round waited for is done (publish it now). */
  constructor(private readonly h: Pick<PgHost, "node" | "clock" | "log">, private readonly found: () => void, private readonly find = findWalEndOn) {}

  /**
   * The end of the WAL on the first of `timelines` (highest first) that has some, in the pg_wal of a
   * server that is not running, as its files are now; "none" when no timeline has WAL there (pg_control's
   * position stands); null while unknown, or when the scan failed or was unsure (pg_control's position is
   * published, and the node votes with none). `wait`: wait for the scan (at most its deadline) instead
   * of leaving it to run on.
   */
  async end(control: ControlData, pgVersion: number | null, timelines: readonly number[], wait: boolean): Promise<StoppedWalEnd> {
    const { node } = this.h;
    // Another major version's WAL (a data directory the configured binaries do not run) is not read.
    if (pgVersion !== null && Math.floor(pgVersion) !== node.bins.version) return null;
    const stamp = await lookupOsUser(node.osUser).then((u) => walStamp(node.dataDir, { uid: u.uid, gid: u.gid })).catch(() => null);
    if (stamp === null) return null;
    const key = `${timelines.join(",")} ${control.checkpointLsn} ${stamp}`;
    for (let i = 0; i < 2; i++) {
      const k = this.known;
      if (k?.key === key && (k.end !== null || this.h.clock.now() < k.at + RETRY_MS)) return k.end;
      // One scan at a time: one for files as they were runs to its end first (its deadline bounds it).
      this.scan ??= this.start(key, control, timelines);
      if (!wait) return null;
      this.scan.waited = true;
      await this.scan.done;
    }
    return this.known?.key === key ? this.known.end : null;
  }

  private start(key: string, control: ControlData, timelines: readonly number[]): NonNullable<StoppedWal["scan"]> {
    const { node, clock, log } = this.h;
    const t0 = clock.now();
    const scan = { key, waited: false, done: Promise.resolve() };
    scan.done = this.find(node, control, timelines, WAL_END_DEADLINE_MS).then(
      (r): StoppedWalEnd => {
        const ms = Math.round(clock.now() - t0);
        if (r.lsn !== null) log.info(`stopped PostgreSQL: its WAL on timeline ${r.timeline} ends at ${r.lsn} (pg_control's checkpoint: ${control.checkpointLsn} on timeline ${control.timeline}; read from ${r.from} in ${ms} ms, ${r.runs} pg_waldump runs)`);
        else if (r.absent) log.info(`stopped PostgreSQL: no WAL on timeline ${timelines.join(" or ")} in its pg_wal (${r.why}; ${ms} ms): its position is pg_control's`);
        else log.warn(`stopped PostgreSQL: the end of its WAL on timeline ${timelines.join(" or ")} is not known (${r.why}; ${ms} ms): its published position is pg_control's, and it votes with none`);
        return r.lsn !== null ? { timeline: r.timeline, lsn: r.lsn } : r.absent ? "none" : null;
      },
      (e: Error) => {
        log.warn(`stopped PostgreSQL: reading the end of its WAL failed (${e.message}): its published position is pg_control's, and it votes with none`);
        return null;
      },
    ).then((end) => {
      this.known = { key, end, at: clock.now() };
      this.scan = null;
      if (!scan.waited) this.found();
    });
    return scan;
  }
}
