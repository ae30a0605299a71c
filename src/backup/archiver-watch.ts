// The archiver watched, with [backup] tool set ([backup] archive_failing_s): from the rounds on a
// server that answers, every ARCHIVER_LOOK_MS at most, one statement (postgres/archiver.ts) reads
// pg_stat_archiver and counts the segments waiting; core/archiving.ts decides what is said. The
// reading goes into this node's report (status, /metrics). A failing archive_command (the
// repository unreachable, full, its permissions wrong) otherwise shows only in PostgreSQL's log,
// while pg_wal grows on every node at once (archive_mode = always).
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { archiveReport, archivingLine, ARCHIVING_WORKS, type ArchiverReading, type ArchivingState, stepArchiving } from "../core/archiving.ts";
import type { ArchiveReport } from "../core/report.ts";
import { readArchiver } from "../postgres/archiver.ts";
import { DbTimeoutError, type Db } from "../postgres/sql.ts";

/** The archiver is read at most this often (the round's upkeep, every round on a healthy server, asks every time). */
export const ARCHIVER_LOOK_MS = 2000;

export class ArchiverWatch {
  private state: ArchivingState = ARCHIVING_WORKS;
  private last: ArchiverReading | null = null;
  private lookedAt = -Infinity;
  private trouble = "";

  /** `now`: a monotonic clock (ms), for the pace of the readings only. */
  constructor(private readonly cfg: Config, private readonly log: Logger, private readonly now: () => number) {}

  /** What the round reports: the last reading, with [backup] tool set. */
  get report(): ArchiveReport | undefined {
    return this.last ? archiveReport(this.last, this.state) : undefined;
  }

  /**
   * Read the archiver when due, on a server that answers. A deadline is passed on (the round's
   * upkeep ends: durability.ts); any other failure is logged once per message and the last
   * reading dropped (no stale figures in the report).
   */
  async look(db: Db): Promise<void> {
    if (this.cfg.backup.tool !== "pgbackrest" || this.now() - this.lookedAt < ARCHIVER_LOOK_MS) return;
    this.lookedAt = this.now();
    let r: ArchiverReading;
    try {
      r = await readArchiver(db);
    } catch (e) {
      if (e instanceof DbTimeoutError) throw e;
      this.last = null;
      const msg = (e as Error).message;
      if (msg !== this.trouble) this.log.warn(`reading the WAL archiver's state (pg_stat_archiver): ${msg}`);
      this.trouble = msg;
      return;
    }
    this.trouble = "";
    const step = stepArchiving(this.state, r, this.cfg.backup.archive_failing_s * 1000);
    this.state = step.state;
    this.last = r;
    if (step.say?.kind === "failing") this.log.warn(archivingLine(step.say));
    else if (step.say) this.log.info(archivingLine(step.say));
  }
}
