// A config a root CLI command acts on. As root, `pgherd backup` runs pgBackRest and reads files the
// config names (its pgbackrest.conf, state_dir's cluster.json); a config another user can write
// would choose them. It is used only when root owns it or its owner is its own postgres.os_user
// (the tools then run as that user, who could run them anyway); os_user is never root (schema).
import type { Config } from "../config/schema.ts";
import { ConfigError, loadConfigOwned } from "../config/load.ts";
import { lookupOsUser } from "../postgres/users.ts";

export async function loadConfigAsCaller(path: string, euid = process.geteuid?.() ?? 0): Promise<Config> {
  const { cfg, owner } = loadConfigOwned(path);
  if (euid !== 0 || owner === 0) return cfg;
  const user = cfg.postgres.os_user;
  const u = await lookupOsUser(user).catch(() => null);
  if (u?.uid === owner) return cfg;
  throw new ConfigError([
    `${path} is owned by uid ${owner}, which is neither root nor postgres.os_user "${user}"${u ? ` (uid ${u.uid})` : " (no such user)"}: ` +
      "run as root, pgherd would run programs and read files that whoever can write this file chooses; chown it to root or to that user",
  ]);
}
