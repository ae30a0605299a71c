// The checkpoint that makes a promoted primary's pg_control name its new timeline. Until its first
// checkpoint after the promotion, pg_control names the old one, and pg_rewind before PostgreSQL 16
// takes the source's timeline from there: against such a primary it finds "no rewind required". So
// a former primary, or a stuck standby, rewinds only once the primary's report says its checkpoint
// names its timeline (core/ha.ts), and this CHECKPOINT gets it there at once instead of at
// PostgreSQL's own spread checkpoint after the promotion (up to checkpoint_timeout later).
//
// Beside the rounds, on a connection of its own, never inside the promotion: an immediate checkpoint
// writes every dirty buffer, seconds to a minute on a busy server, and meanwhile the new primary is
// reported, routed to (/primary) and followed. Before, the promotion waited for it: the node reported
// itself a standby, and /primary answered 503, until the checkpoint ended.
import type { Probe } from "../../postgres/index.ts";
import type { PgHost } from "./host.ts";

/** How long one CHECKPOINT may take before the next round's look starts another. */
const CHECKPOINT_MS = 300_000;
/** After a failed one (a full disk, the server stopping): the next no sooner, nor a warning every round. */
const RETRY_MS = 10_000;

export class TimelineCheckpoint {
  private running: Promise<void> | null = null;
  /** The timeline a CHECKPOINT of this agent ended on: a round's probe taken while it ran still shows the older one. */
  private doneFor: number | null = null;
  private retryAt = 0;

  constructor(private readonly h: Pick<PgHost, "sideDb" | "log" | "clock">) {}

  /**
   * Starts the CHECKPOINT when `p` shows a primary whose pg_control names an older timeline than the
   * one it writes, unless one runs. Returns at once: a promotion, and every round of a primary (an
   * agent restarted beside a primary promoted before it checkpointed), call it.
   */
  ensure(p: Probe): void {
    if (!p.up || p.inRecovery || p.checkpointTimeline >= p.timeline || this.running || this.doneFor === p.timeline) return;
    const { h } = this;
    if (h.clock.now() < this.retryAt) return;
    const db = h.sideDb();
    const t0 = h.clock.now();
    const from = p.checkpointTimeline;
    this.running = db.query("checkpoint naming the new timeline", (sql) => sql`CHECKPOINT`, CHECKPOINT_MS)
      .then(() => {
        this.doneFor = p.timeline;
        h.log.info(`checkpoint after the promotion: ${Math.round(h.clock.now() - t0)} ms (pg_control named timeline ${from}, the server writes ${p.timeline}); a former primary may rewind from this one now`);
      })
      .catch((e: Error) => {
        this.retryAt = h.clock.now() + RETRY_MS;
        h.log.warn(`checkpoint after the promotion: ${e.message} (tried again in ${RETRY_MS / 1000} s; a former primary rewinds only after it)`);
      })
      .finally(() => {
        this.running = null;
        void db.close().catch(() => undefined);
      });
  }

  /** The CHECKPOINT running now, if any, settled (a test, a stop). */
  async settled(): Promise<void> {
    await this.running;
  }
}
