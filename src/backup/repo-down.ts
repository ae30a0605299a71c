// The repository host that does not answer, as restore_command sees it: a file
// (<data_dir>.pgbackrest/repo-down) whose presence makes restore_command fail at once instead of
// running `pgbackrest archive-get` (pgbackrest.ts archiveSettings). PostgreSQL's startup process
// waits for every restore_command it runs, a promotion too: a standby whose stream broke is in one
// when pg_promote comes, and the end of recovery asks the archive for timeline history files.
// Against a silent repository host each call takes 20 s and more (pgBackRest's io-timeout); a failed call counts as "not in the archive" (outside a restore from a backup: pgbackrest.ts strictGet), so PostgreSQL would go on without
// the archive's answer anyway, only later. The timeline number stays unique through the cluster's
// reservation (core/timelines.ts).
//
// The agent looks at the host (a TCP connection to its pgBackRest port) before a promotion, at a
// fast stop, beside the rounds of a standby that does not stream (every 2 s at most), and while the
// file exists (beside every round, until the host answers again). One look that gets no answer sets
// the file before a promotion and at a fast stop (they cannot wait); beside the rounds it takes two
// in a row, so one lost SYN or the repository server's own restart does not stop an archive-get that
// pgBackRest's retries would ride out. One owner, the agent, writes and removes the file, one write
// at a time, and removes it when it stops (without the agent nobody looks again). A call under way
// when the file appears is stopped too (pgbackrest.ts flagged).
import { existsSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { SafeDir } from "../postgres/fsutil.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { backrestPaths, repoDownFlag, repoHostAnswers, REPO_PROBE_MS } from "./pgbackrest.ts";

const FILE = "repo-down";
/** A standby that does not stream looks at the repository host at most this often. */
const LOOK_MS = 2000;

export class RepoDownFlag {
  /** One write of the file at a time, in call order. */
  private writing: Promise<void> = Promise.resolve();
  /** A look started by maintain() runs; when the last one began. */
  private looking = false;
  private lookedAt = 0;
  /** Looks begun, and the latest begun whose answer was written. */
  private started = 0;
  private written = 0;
  /** What was last said in the log: true down, false answers, null nothing yet. */
  private said: boolean | null = null;
  /** Looks in a row that got no answer. */
  private misses = 0;
  /** The agent stops: the file is removed and never written again. */
  private closed = false;

  constructor(private readonly cfg: Config, private readonly log: Logger) {}

  private get applies(): boolean {
    return this.cfg.backup.tool === "pgbackrest" && this.cfg.backup.repo_host !== "";
  }

  /** Whether the repository host takes no connection now (false without one). */
  async silent(): Promise<boolean> {
    if (!this.applies) return false;
    const b = this.cfg.backup;
    return !(await repoHostAnswers(b.repo_host, b.repo_host_port, REPO_PROBE_MS));
  }

  /**
   * Look at the repository host now and set the file accordingly; true when it does not answer.
   * Before a promotion (primary.ts): the promotion's restore_command calls then fail at once. A
   * failure to write the file is logged, not thrown: the answer still counts.
   */
  async check(o: { confirm?: boolean } = {}): Promise<boolean> {
    const seq = ++this.started;
    const down = await this.silent();
    this.misses = down ? this.misses + 1 : 0;
    // With `confirm`, a first miss writes nothing (the file stays as it is).
    const tentative = down && o.confirm === true && this.misses < 2;
    // A look that began before the last one written says less: it is not written over it.
    if (this.applies && !this.closed && !tentative && seq > this.written) {
      this.written = seq;
      await this.set(down);
    }
    return down;
  }

  /**
   * Every round, beside it, one look at a time: while the file is there (it goes once the host
   * answers), and, at most every LOOK_MS, while this node is a standby that does not stream (it runs
   * restore_command then: after a timeline switch, to catch up, when its primary is gone).
   */
  maintain(usesArchive: boolean, now: number): void {
    if (!this.applies || this.looking) return;
    const flagged = existsSync(repoDownFlag(backrestPaths(this.cfg)));
    if (!flagged && !(usesArchive && now - this.lookedAt >= LOOK_MS)) return;
    // Two misses in a row means two looks LOOK_MS apart, not a miss from an earlier spell (the looks
    // stop while the standby streams) and a lost SYN now.
    if (now - this.lookedAt > 2 * LOOK_MS) this.misses = 0;
    this.looking = true;
    this.lookedAt = now;
    void this.check({ confirm: true }).finally(() => (this.looking = false));
  }

  /**
   * The agent stops: remove the file after any write under way, and write it no more. Without the
   * agent nobody looks at the host again, and restore_command would skip the archive for good.
   */
  close(): Promise<void> {
    if (!this.applies || this.closed) return this.writing;
    this.closed = true;
    return this.set(false, true);
  }

  private set(down: boolean, closing = false): Promise<void> {
    this.writing = this.writing.then(() => this.write(down, closing)).catch((e: Error) => this.log.warn(`the repository host's flag for restore_command: ${e.message}`));
    return this.writing;
  }

  /** The file as `down` says, compared with the file itself (never a cached belief). */
  private async write(down: boolean, closing: boolean): Promise<void> {
    const b = this.cfg.backup;
    const p = backrestPaths(this.cfg);
    const there = existsSync(repoDownFlag(p));
    if (closing && there) this.log.info(`stopping: removing ${repoDownFlag(p)} (restore_command runs archive-get again; nobody looks at the repository host until the agent runs)`);
    if (there !== down) {
      const u = await lookupOsUser(this.cfg.postgres.os_user);
      const owner = { uid: u.uid, gid: u.gid };
      const d = await SafeDir.open(p.dir, { osUser: owner });
      try {
        if (down) await d.writeAtomic(FILE, `${new Date().toISOString()} ${b.repo_host}:${b.repo_host_port} took no connection within ${REPO_PROBE_MS} ms\n`, { mode: 0o600, owner });
        else await d.remove(FILE);
      } finally {
        await d.close();
      }
    }
    if (closing) return;
    if (down && this.said !== true) this.log.warn(`the repository host ${b.repo_host}:${b.repo_host_port} does not answer: restore_command fails at once until it does (${repoDownFlag(p)})`);
    else if (!down && this.said === true) this.log.info(`the repository host ${b.repo_host}:${b.repo_host_port} answers again: restore_command runs archive-get again`);
    this.said = down;
  }
}
