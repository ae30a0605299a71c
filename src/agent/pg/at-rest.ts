// The data directory while its server does not run: the position it votes with (a detach), and a
// switchover's final position with pg_control's state. It owns the WAL-end scans (wal-end.ts),
// which the monitoring round reads too for the position it publishes.
import { furtherPosition, ZERO_POSITION, type Position } from "../../core/position.ts";
import { inspectDataDir, type ControlData } from "../../postgres/datadir.ts";
import { timelinesAbove } from "../../postgres/timeline-files.ts";
import type { PgHost } from "./host.ts";
import { controlPosition } from "./round-position.ts";
import { StoppedWal, type StoppedWalEnd } from "./wal-end.ts";

export class AtRest {
  private readonly wal: StoppedWal;

  /** `found`: a scan no round waited for is done (the round publishes it). */
  constructor(private readonly h: PgHost, found: () => void) {
    this.wal = new StoppedWal(h, found);
  }

  /** The end of the WAL in a stopped server's pg_wal on the newest timeline it holds (wal-end.ts); null when not known. */
  async walEnd(control: ControlData, pgVersion: number | null, wait: boolean): Promise<StoppedWalEnd> {
    const h = this.h;
    let above: number[];
    try {
      above = await timelinesAbove(h.node.dataDir, h.cfg.postgres.os_user, control.timeline);
    } catch (e) {
      // Not knowing which timelines it holds, a scan of pg_control's alone could say less than it holds.
      h.log.warn(`stopped PostgreSQL: reading the history files in pg_wal failed (${(e as Error).message}): its position is pg_control's`);
      return null;
    }
    return this.wal.end(control, pgVersion, [...above, control.timeline], wait);
  }

  /**
   * The position of this data directory while its server does not run, as a round computes it:
   * pg_control's, the end of the WAL in its pg_wal (waited for until clock time `deadline`), never
   * below what it was seen to hold. Null when the server runs, or the WAL's end is not known by then.
   */
  async restingPosition(deadline: number): Promise<Position | null> {
    const r = await this.atRest(deadline);
    return r.running ? null : r.position;
  }

  /**
   * The data directory at rest: whether its server runs, pg_control's state, and the position as
   * restingPosition says it (null when not running and not known: a vote is refused then). A
   * directory with files but no pg_control, or whose WAL's end could not be read (a failed or unsure
   * scan, not only a late one; a pg_wal with no WAL at all, a restore's, leaves pg_control's), has no
   * known position: pg_control's checkpoint and the last round's position may both be below WAL it
   * flushed and acknowledged (review: a fenced primary whose pg_wal gave an I/O error voted with its
   * last round's position).
   */
  async atRest(deadline: number): Promise<{ running: boolean; state: string | null; position: Position | null }> {
    const h = this.h;
    const info = await inspectDataDir(h.node.dataDir, h.node);
    const state = info.control?.state ?? null;
    if (info.running) return { running: true, state, position: null };
    if (info.empty) return { running: false, state, position: furtherPosition(ZERO_POSITION, h.heldPosition) };
    if (!info.control) return { running: false, state, position: null };
    let position = controlPosition(info.control);
    if (h.rewindMarker.get() === null) {
      const left = deadline - h.clock.now();
      const end = left <= 0 ? undefined : await Promise.race([this.walEnd(info.control, info.pgVersion, true), h.clock.sleep(left).then(() => undefined)]);
      if (!end) return { running: false, state, position: null };
      if (end !== "none") position = furtherPosition(position, end);
    }
    return { running: false, state, position: furtherPosition(position, h.heldPosition) };
  }
}
