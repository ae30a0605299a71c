// What the primary does for the archive every round: create the stanza once per cluster (system
// identifier), and start the scheduled backups ([backup] full_every_hours / incr_every_hours) in the
// background, so a long backup never holds the monitoring loop; they run where `pgherd backup` does
// (a healthy standby, backup-action.ts). Every node keeps its pgBackRest TLS server running. With a
// repository host the primary also reads that host's certificate at its first round as the primary
// and then once a day (repo-cert-watch.ts).
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { type BackupInfo, type BackupType, stanzaInfo, takeBackup } from "./backups.ts";
import { dueBackup, lastBackups } from "./schedule.ts";
import { backrest, backrestBin, backrestPaths, type BackrestPaths } from "./pgbackrest.ts";
import type { ClusterCa } from "../store/cluster-secrets.ts";
import { BackrestServer } from "./tls-server.ts";
import { RepoCertWatch } from "./repo-cert-watch.ts";

const RETRY_MS = 60_000;
/** stanza-create is cheap and archiving waits for it (a repository host that starts later, a shared mount). */
const STANZA_RETRY_MS = 10_000;
const INFO_EVERY_MS = 60_000;

export class ArchiveKeeper {
  private readonly p: BackrestPaths | null;
  private stanzaFor: string | null = null;
  private retryAt = 0;
  private running: Promise<void> | null = null;
  private infoAt = 0;
  private last = { lastFullMs: 0, lastAnyMs: 0 };
  private wasPrimary = false;
  private stanzaRun: Promise<void> | null = null;
  private scheduling: Promise<void> | null = null;
  private readonly server: BackrestServer | null;
  private readonly repoCert: RepoCertWatch | null;

  /** `route`: where a scheduled backup runs (the agent's, as `pgherd backup`); null: on this primary. */
  constructor(private readonly cfg: Config, private readonly log: Logger, private readonly ca: () => ClusterCa | undefined = () => undefined,
    private readonly route: ((type: BackupType) => Promise<BackupInfo>) | null = null, private readonly now: () => number = Date.now, bin = backrestBin()) {
    this.p = cfg.backup.tool === "pgbackrest" ? backrestPaths(cfg, bin) : null;
    // Only for backups from a standby, or taken by a repository host: the server runs SQL as the
    // superuser for any cluster-CA client.
    this.server = this.p && (cfg.backup.from_standby || cfg.backup.repo_host) ? new BackrestServer(cfg, this.p, log) : null;
    this.repoCert = this.p && cfg.backup.repo_host ? new RepoCertWatch(cfg.backup.repo_host, cfg.backup.repo_host_port, log, now) : null;
  }

  /** The agent stops: so does the pgBackRest TLS server. */
  close(): Promise<void> {
    return this.server?.stop() ?? Promise.resolve();
  }

  private run(timeoutMs: number) {
    return { osUser: this.cfg.postgres.os_user, log: this.log, timeoutMs };
  }

  /** On the primary, once its server answers: stanza, then the schedule. */
  async maintain(primary: boolean, systemId: string): Promise<void> {
    const p = this.p;
    await this.server?.maintain(this.ca()).catch((e: Error) => this.log.error(`pgBackRest TLS server: ${e.message}`));
    // A node that becomes primary again reads the repository anew (another primary backed up meanwhile).
    if (!primary) this.wasPrimary = false;
    else if (!this.wasPrimary) {
      this.wasPrimary = true;
      this.infoAt = 0;
      this.repoCert?.becamePrimary();
    }
    if (primary) this.repoCert?.maintain(this.ca());
    if (!p || !primary || this.now() < this.retryAt) return;
    if (this.stanzaFor !== systemId) {
      // In the background: an unreachable repository host makes it wait (io-timeout), never the round.
      this.stanzaRun ??= backrest(p, this.run(120_000), "stanza-create").then(() => {
        this.stanzaFor = systemId;
        this.log.info(`pgBackRest stanza ${p.stanza} ready in ${this.cfg.backup.repo_host ? `${this.cfg.backup.repo_host}:` : ""}${this.cfg.backup.repo_path} (archiving from every node${this.cfg.backup.repo_host ? "; standbys push only what the primary did not" : ""})`);
      }, (e: Error) => {
        this.retryAt = this.now() + STANZA_RETRY_MS;
        this.log.error(`pgBackRest stanza-create failed (WAL is kept until it works; retry in ${STANZA_RETRY_MS / 1000} s): ${e.message}`);
      }).finally(() => {
        this.stanzaRun = null;
      });
      return;
    }
    // In the background too: `pgbackrest info` on a repository that hangs (a hard NFS mount) would
    // hold the primary's round, which must notice its own server failing (S18).
    this.scheduling ??= this.schedule(p).catch((e: Error) => this.log.error(`backup schedule: ${e.message}`)).finally(() => {
      this.scheduling = null;
    });
  }

  /**
   * The repository's last backups are read at most once a minute to see when one is due, and
   * again just before one starts (another primary may have taken it since: never twice).
   */
  private async schedule(p: BackrestPaths): Promise<void> {
    const { full_every_hours: full, incr_every_hours: incr } = this.cfg.backup;
    if ((full === 0 && incr === 0) || this.running) return;
    const hour = 3600_000;
    const due = () => dueBackup({ now: this.now(), fullEveryMs: full * hour, incrEveryMs: incr * hour, ...this.last });
    if (this.now() - this.infoAt >= INFO_EVERY_MS && !(await this.readInfo(p))) return;
    if (!due()) return;
    if (!(await this.readInfo(p))) return;
    const type = due();
    if (!type) return;
    this.log.info(`scheduled ${type} backup starting`);
    const route = this.route;
    this.running = (route ? route(type) : takeBackup(p, this.run(24 * hour), type))
      .then((b) => this.log.info(`scheduled ${type} backup ${b.label} done (${b.repoBytes} bytes in the repository${b.node ? `, taken on ${b.fromStandby ? "standby" : "primary"} ${b.node}` : ""})`))
      .catch((e: Error) => {
        this.retryAt = this.now() + RETRY_MS;
        this.log.error(`scheduled ${type} backup failed: ${e.message}`);
      })
      .finally(() => {
        this.running = null;
        this.infoAt = 0;
      });
  }

  private async readInfo(p: BackrestPaths): Promise<boolean> {
    this.infoAt = this.now();
    const info = await stanzaInfo(p, this.run(30_000)).catch((e: Error) => {
      this.log.warn(`pgbackrest info: ${e.message}`);
      return null;
    });
    if (info) this.last = lastBackups(info.backups);
    return info !== null;
  }
}
