// The repository host that does not answer, as restore_command sees it: a file
// (<data_dir>.pgbackrest/repo-down) whose presence makes restore_command fail at once instead of
// running `pgbackrest archive-get` (pgbackrest.ts archiveSettings). PostgreSQL's startup process
// waits for every restore_command it runs, a promotion too: a standby whose stream broke is in one
// when pg_promote comes, and the end of recovery asks the archive for timeline history files.
// Against a silent repository host each call takes seconds (pgBackRest's io-timeout, kept at 1 s
// for archive-get); a failed call counts as "not in the archive", so PostgreSQL would go on without
// the archive's answer anyway, only later. The timeline number stays unique through the cluster's
// reservation (core/timelines.ts).
//
// The agent looks at the host (a TCP connection to its pgBackRest port) before a promotion and while
// the file exists (every round, until the host answers again): one owner, the agent, writes and
// removes the file.
import { existsSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { SafeDir } from "../postgres/fsutil.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { backrestPaths, repoDownFlag, repoHostAnswers, REPO_PROBE_MS } from "./pgbackrest.ts";

const FILE = "repo-down";

export class RepoDownFlag {
  /** What this process last wrote: null until it looked at the file once. */
  private down: boolean | null = null;

  constructor(private readonly cfg: Config, private readonly log: Logger) {}

  private get applies(): boolean {
    return this.cfg.backup.tool === "pgbackrest" && this.cfg.backup.repo_host !== "";
  }

  /**
   * Look at the repository host now and set the file accordingly; true when it does not answer.
   * Before a promotion (primary.ts): the promotion's restore_command calls then fail at once.
   */
  async check(): Promise<boolean> {
    if (!this.applies) return false;
    const b = this.cfg.backup;
    const down = !(await repoHostAnswers(b.repo_host, b.repo_host_port, REPO_PROBE_MS));
    await this.set(down);
    return down;
  }

  /** Every round: while the file is there, look again (it goes once the host answers). */
  async maintain(): Promise<void> {
    if (!this.applies) return;
    if (this.down === null) this.down = flagExists(this.cfg);
    if (this.down) await this.check();
  }

  private async set(down: boolean): Promise<void> {
    if (down === this.down) return;
    const b = this.cfg.backup;
    const p = backrestPaths(this.cfg);
    const u = await lookupOsUser(this.cfg.postgres.os_user);
    const owner = { uid: u.uid, gid: u.gid };
    const d = await SafeDir.open(p.dir, { osUser: owner });
    try {
      if (down) await d.writeAtomic(FILE, `${new Date().toISOString()} ${b.repo_host}:${b.repo_host_port} took no connection within ${REPO_PROBE_MS} ms\n`, { mode: 0o600, owner });
      else await d.remove(FILE);
    } finally {
      await d.close();
    }
    if (down) this.log.warn(`the repository host ${b.repo_host}:${b.repo_host_port} does not answer: restore_command fails at once until it does (${repoDownFlag(p)})`);
    else if (this.down) this.log.info(`the repository host ${b.repo_host}:${b.repo_host_port} answers again: restore_command runs archive-get again`);
    this.down = down;
  }
}

function flagExists(cfg: Config): boolean {
  try {
    return existsSync(repoDownFlag(backrestPaths(cfg)));
  } catch {
    return false;
  }
}
