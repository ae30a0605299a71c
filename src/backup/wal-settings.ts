// The server settings the WAL consumers need, for the managed pgherd.conf (host.ts writeConfig):
// wal_level, archiving through pgBackRest on every node ([backup] tool), and hot_standby_feedback on
// standbys that hold copies of permanent logical slots.
import type { Config } from "../config/schema.ts";
import type { PgherdConfParams } from "../postgres/pgconf.ts";
import { archiveSettings, backrestPaths, type BackrestPaths, writeBackrestConf } from "./pgbackrest.ts";

/** pgbackrest.conf is rendered from the config loaded at start: written once per process. */
let written: string | null = null;

export async function walSettings(cfg: Config, socketDir: string, standby: boolean): Promise<Pick<PgherdConfParams, "walLevel" | "archive" | "hotStandbyFeedback">> {
  const logical = cfg.slots.permanent.some((s) => s.type === "logical");
  const out: Pick<PgherdConfParams, "walLevel" | "archive" | "hotStandbyFeedback"> = { walLevel: cfg.postgres.wal_level, hotStandbyFeedback: standby && logical };
  if (cfg.backup.tool !== "pgbackrest") return out;
  return { ...out, archive: archiveSettings(await ensureBackrestConf(cfg, socketDir)) };
}

/** This node's pgbackrest.conf, written if this process has not yet (before the first restore, too). */
export async function ensureBackrestConf(cfg: Config, socketDir: string): Promise<BackrestPaths> {
  const p = backrestPaths(cfg);
  if (written !== p.conf) {
    await writeBackrestConf(cfg, socketDir, p);
    written = p.conf;
  }
  return p;
}
