// The server settings the WAL consumers need, for the managed pgherd.conf (host.ts writeConfig):
// wal_level, archiving through pgBackRest on every node ([backup] tool), and hot_standby_feedback on
// standbys that hold copies of permanent logical slots (PostgreSQL ≥ 17: sync_replication_slots, and
// the dbname the slot synchronization needs in primary_conninfo).
import type { Config } from "../config/schema.ts";
import type { PgherdConfParams } from "../postgres/pgconf.ts";
import { FAILOVER_SLOTS_MAJOR } from "../slots/permanent.ts";
import { existsSync } from "node:fs";
import type { Logger } from "../log.ts";
import { SecretsStore } from "../store/cluster-secrets.ts";
import { defaultHosts } from "../tls/node-tls.ts";
import { archiveSettings, backrestPaths, backrestTlsFiles, type BackrestPaths, ensureRepoDir, writeBackrestConf } from "./pgbackrest.ts";
import { ensureBackrestCert } from "./tls-server.ts";
import { selfCommand } from "../self.ts";

/** pgbackrest.conf is rendered from the config loaded at start: written once per process. */
let written: string | null = null;
/** The repository directory made (once per process and path), and the last failure said. */
let repoMade: string | null = null;
let repoProblem = "";

type WalParams = Pick<PgherdConfParams, "walLevel" | "archive" | "hotStandbyFeedback" | "slotSync">;

/**
 * `major`: the server's major version (from its binaries). `restoring`: a restore from a backup
 * replays the archive in this data directory (store/restore-marker.ts): its restore_command stops
 * the server on a failure other than "not in the archive" (pgbackrest.ts strictGet).
 */
export async function walSettings(cfg: Config, socketDir: string, standby: boolean, major: number, log?: Logger, restoring = false): Promise<WalParams> {
  const logical = cfg.slots.permanent.some((s) => s.type === "logical");
  const out: WalParams = { walLevel: cfg.postgres.wal_level, hotStandbyFeedback: standby && logical, slotSync: standby && slotSyncOn(cfg, major) };
  if (cfg.backup.tool !== "pgbackrest") return out;
  // Every node archives through this executable (wal-push.ts).
  return { ...out, archive: archiveSettings(await ensureBackrestConf(cfg, socketDir, log), selfCommand().argv, cfg.backup.repo_host ? { host: true } : { host: false, path: cfg.backup.repo_path }, restoring) };
}

/**
 * This node's pgbackrest.conf, written if this process has not yet (before the first restore, too).
 * With repo_host also its pgBackRest certificate when it has none yet: a new node's first restore
 * (a clone, a bootstrap from a backup) reaches the repository host with it before the agent's
 * pgBackRest TLS server (which renews it) ever ran. Renewal is not done here: this runs with every
 * PostgreSQL config write (a standby's round, the end of a promotion), which a failure of the
 * backup certificate's housekeeping must not fail (ensureBackrestForRestore renews).
 */
export async function ensureBackrestConf(cfg: Config, socketDir: string, log?: Logger): Promise<BackrestPaths> {
  const p = backrestPaths(cfg);
  if (written !== p.conf) {
    await writeBackrestConf(cfg, socketDir, p);
    written = p.conf;
  }
  if (!cfg.backup.repo_host && repoMade !== cfg.backup.repo_path) {
    // Tried again with each config write until made. A repository that cannot be made (a shared
    // mount gone, root_squash refusing a root agent) fails archiving, which keeps the WAL and says
    // so; it must not fail the config write, and with it every start, promotion and repoint (review).
    try {
      await ensureRepoDir(cfg);
      repoMade = cfg.backup.repo_path;
      repoProblem = "";
    } catch (e) {
      const why = `[backup] repo_path ${cfg.backup.repo_path}: ${(e as Error).message}; WAL archiving fails (PostgreSQL keeps the WAL) until it can be used`;
      if (why !== repoProblem) log?.warn(why);
      repoProblem = why;
    }
  }
  if (cfg.backup.repo_host && !existsSync(backrestTlsFiles(p).certFile)) {
    const ca = new SecretsStore(cfg.state_dir).get()?.ca;
    // A failure here is said and does not fail the config write: archiving reports what it costs.
    if (ca) await ensureBackrestCert(cfg, p, ca, defaultHosts(cfg), log, Date.now()).catch((e: Error) => log?.warn(`[backup] repo_host: no pgBackRest certificate to reach the repository host with: ${e.message}`));
    else log?.warn(`[backup] repo_host: no cluster CA in ${cfg.state_dir} yet, so no pgBackRest certificate to reach the repository host with`);
  }
  return p;
}

/**
 * Before a restore (a clone, a rebuild, a bootstrap from a backup): ensureBackrestConf, and with
 * repo_host the certificate renewed when due (tls-server.ts ensureBackrestCert: expired, within 30
 * days of its end, another CA's, key or address wrong), since the restore reaches the repository
 * host before the agent's pgBackRest TLS server, which renews it every round, runs again. A failed
 * renewal is logged and the restore goes on with the certificate on disk; it fails only when there
 * is none.
 */
export async function ensureBackrestForRestore(cfg: Config, socketDir: string, log: Logger): Promise<BackrestPaths> {
  const p = await ensureBackrestConf(cfg, socketDir, log);
  const ca = cfg.backup.repo_host ? new SecretsStore(cfg.state_dir).get()?.ca : undefined;
  if (!ca) return p;
  try {
    await ensureBackrestCert(cfg, p, ca, defaultHosts(cfg), log, Date.now());
  } catch (e) {
    if (!existsSync(backrestTlsFiles(p).certFile)) throw e;
    log.warn(`pgBackRest TLS: renewing this node's certificate before the restore failed (${(e as Error).message}); the restore goes on with the one on disk`);
  }
  return p;
}

/** PostgreSQL ≥ 17 synchronizes permanent logical (failover) slots to standbys itself. */
export function slotSyncOn(cfg: Config, major: number): boolean {
  return major >= FAILOVER_SLOTS_MAJOR && cfg.slots.permanent.some((s) => s.type === "logical");
}

/** primary_conninfo keywords the slot synchronization needs (a database to read the slots through). */
export function conninfoExtra(cfg: Config, major: number): Record<string, string> | undefined {
  return slotSyncOn(cfg, major) ? { dbname: "postgres" } : undefined;
}
