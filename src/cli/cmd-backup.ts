// `pgherd backup [--type full|diff|incr]`: a pgBackRest backup of this node's server, which must be
// the primary (pgBackRest backs up a standby only through its own SSH/TLS access to the primary's
// host, which pgherd does not set up). `pgherd backup ls`: the backups in the repository.
// Both run where the agent runs, as root or as postgres.os_user, with the config the agent wrote.
import { defineCommand } from "citty";
import { stanzaInfo, takeBackup, type BackupType } from "../backup/backups.ts";
import { backrestPaths } from "../backup/pgbackrest.ts";
import { loadConfig } from "../config/load.ts";
import { socketDirOf } from "../config/pg-values.ts";
import { createLogger } from "../log.ts";
import { openLocalDb } from "../postgres/sql.ts";
import { type CliContext, CliExit, configPathFrom, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

const TYPES = ["full", "diff", "incr"] as const;

export const backupCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "backup", description: "Take a pgBackRest backup on the primary (backup ls: list the backups)" },
    args: {
      action: { type: "positional", required: false, description: "ls: list the backups instead" },
      type: { type: "string", default: "incr", description: "full | diff | incr (incr without a full backup makes a full one)" },
      json: { type: "boolean", description: "backup ls: JSON output" },
      config: { type: "string", valueHint: "path", description: "pgherd config file" },
    },
    run: async ({ args }) => {
      const cfg = loadConfig(configPathFrom(args.config, ctx));
      if (cfg.backup.tool !== "pgbackrest") throw new CliExit(EXIT_USAGE, `pgherd backup: [backup] tool is "${cfg.backup.tool}" in the config, not "pgbackrest"`);
      const log = createLogger(cfg.log.level === "debug" ? "debug" : "warn");
      const p = backrestPaths(cfg);
      const run = { osUser: cfg.postgres.os_user, log, timeoutMs: 24 * 3600_000 };
      if (args.action === "ls") {
        const info = await stanzaInfo(p, { ...run, timeoutMs: 60_000 });
        if (args.json) return ctx.out(JSON.stringify(info, null, 2) + "\n");
        ctx.out(`stanza ${p.stanza}: ${info.status}; archive ${info.archiveMin ?? "-"} .. ${info.archiveMax ?? "-"}\n`);
        for (const b of info.backups) ctx.out(`${b.label}  ${b.type.padEnd(4)}  ${new Date(b.stop * 1000).toISOString()}  wal ${b.walStart}..${b.walStop}  ${b.sizeBytes} bytes (${b.repoBytes} in the repository)\n`);
        return;
      }
      if (args.action) throw new CliExit(EXIT_USAGE, `pgherd backup: unknown action ${JSON.stringify(args.action)} (only "ls")`);
      const type = args.type as BackupType;
      if (!TYPES.includes(type)) throw new CliExit(EXIT_USAGE, `pgherd backup: --type must be one of ${TYPES.join(", ")}`);
      const db = openLocalDb({ socketDir: socketDirOf(cfg.postgres), port: cfg.postgres.port, superuser: cfg.postgres.superuser, log });
      try {
        const rows = await db.query("role", (sql) => sql`SELECT pg_is_in_recovery() AS r`).catch((e: Error) => {
          throw new CliExit(EXIT_FAILURE, `pgherd backup: the local server does not answer: ${e.message}`);
        });
        if (rows[0]?.r !== false) throw new CliExit(EXIT_FAILURE, "pgherd backup: this node is a standby: run it on the primary (pgherd cluster ls shows which one)");
      } finally {
        await db.close();
      }
      const b = await takeBackup(p, run, type).catch((e: Error) => {
        throw new CliExit(EXIT_FAILURE, `pgherd backup: ${e.message}`);
      });
      ctx.out(`backup ${b.label} (${b.type}) done: wal ${b.walStart}..${b.walStop}, ${b.repoBytes} bytes in the repository\n`);
    },
  });
