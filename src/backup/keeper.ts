// What the primary does for the archive every round: create the stanza once per cluster (system
// identifier), and take the scheduled backups ([backup] full_every_hours / incr_every_hours) in the
// background, so a long backup never holds the monitoring loop.
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { stanzaInfo, takeBackup, type BackupType } from "./backups.ts";
import { backrest, backrestPaths, type BackrestPaths } from "./pgbackrest.ts";

const RETRY_MS = 60_000;
const INFO_EVERY_MS = 60_000;

export class ArchiveKeeper {
  private readonly p: BackrestPaths | null;
  private stanzaFor: string | null = null;
  private retryAt = 0;
  private running: Promise<void> | null = null;
  private infoAt = 0;
  private lastFull = 0;
  private lastAny = 0;

  constructor(private readonly cfg: Config, private readonly log: Logger, private readonly now: () => number = Date.now) {
    this.p = cfg.backup.tool === "pgbackrest" ? backrestPaths(cfg) : null;
  }

  private run(timeoutMs: number) {
    return { osUser: this.cfg.postgres.os_user, log: this.log, timeoutMs };
  }

  /** On the primary, once its server answers: stanza, then the schedule. */
  async maintain(primary: boolean, systemId: string): Promise<void> {
    const p = this.p;
    if (!p || !primary || this.now() < this.retryAt) return;
    if (this.stanzaFor !== systemId) {
      try {
        await backrest(p, this.run(120_000), "stanza-create");
        this.stanzaFor = systemId;
        this.log.info(`pgBackRest stanza ${p.stanza} ready in ${this.cfg.backup.repo_path} (archiving from every node)`);
      } catch (e) {
        this.retryAt = this.now() + RETRY_MS;
        this.log.error(`pgBackRest stanza-create failed (WAL is kept until it works; retry in ${RETRY_MS / 1000} s): ${(e as Error).message}`);
        return;
      }
    }
    await this.schedule(p);
  }

  private async schedule(p: BackrestPaths): Promise<void> {
    const { full_every_hours: full, incr_every_hours: incr } = this.cfg.backup;
    if ((full === 0 && incr === 0) || this.running) return;
    if (this.now() - this.infoAt >= INFO_EVERY_MS) {
      this.infoAt = this.now();
      const info = await stanzaInfo(p, this.run(30_000)).catch((e: Error) => {
        this.log.warn(`pgbackrest info: ${e.message}`);
        return null;
      });
      if (!info) return;
      this.lastFull = Math.max(0, ...info.backups.filter((b) => b.type === "full").map((b) => b.stop * 1000));
      this.lastAny = Math.max(0, ...info.backups.map((b) => b.stop * 1000));
    }
    const hour = 3600_000;
    const type: BackupType | null = full > 0 && this.now() - this.lastFull >= full * hour ? "full"
      : incr > 0 && this.lastFull > 0 && this.now() - this.lastAny >= incr * hour ? "incr" : null;
    if (!type) return;
    this.log.info(`scheduled ${type} backup starting`);
    this.running = takeBackup(p, this.run(24 * hour), type)
      .then((b) => this.log.info(`scheduled ${type} backup ${b.label} done (${b.repoBytes} bytes in the repository)`))
      .catch((e: Error) => {
        this.retryAt = this.now() + RETRY_MS;
        this.log.error(`scheduled ${type} backup failed: ${e.message}`);
      })
      .finally(() => {
        this.running = null;
        this.infoAt = 0;
      });
  }
}
