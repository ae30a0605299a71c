// `pgherd passwd ROLE`: a role's password set on the primary as a SCRAM-SHA-256 verifier computed
// here: the password never reaches the server, its logs or pg_stat_statements.
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { scramVerifier } from "../postgres/roles.ts";
import { openDb, quoteIdent, quoteLiteral } from "../postgres/sql.ts";

export const ROLE_NAME = /^[a-z_][a-z0-9_$-]{0,62}$/;

/** "updated" or "created"; throws when this node's server is not the primary. */
export async function setPassword(cfg: Config, o: { role: string; password: string; create: boolean; log: Logger }): Promise<"created" | "updated"> {
  if (!ROLE_NAME.test(o.role)) throw new Error(`role name ${JSON.stringify(o.role)}: use a lower-case identifier (a-z, 0-9, _ $ -)`);
  const verifier = scramVerifier(o.password);
  const pg = cfg.postgres;
  // Through the unix socket as the superuser (peer authentication: run as root or postgres.os_user).
  const db = openDb({ host: pg.socket_dir || `${pg.data_dir}.sock`, port: pg.port, user: pg.superuser, log: o.log, applicationName: "pgherd passwd", queryTimeoutMs: 30_000 });
  try {
    return await db.query(`set the password of ${o.role}`, (sql) =>
      sql.begin(async (tx) => {
        const [r] = await tx`SELECT pg_is_in_recovery() AS standby`;
        if (r?.standby) throw new Error("this node's PostgreSQL is a standby: run pgherd passwd on the primary's host (pgherd cluster ls shows it)");
        // Separate statements: a multi-statement string would be logged as a whole before SET LOCAL applies.
        await tx.unsafe("SET LOCAL log_statement = 'none'");
        await tx.unsafe("SET LOCAL log_min_duration_statement = -1");
        await tx.unsafe("SET LOCAL log_min_error_statement = 'panic'");
        const found = await tx`SELECT 1 FROM pg_roles WHERE rolname = ${o.role}`;
        if (!found.length && !o.create) throw new Error(`role ${o.role} does not exist (--create creates it with LOGIN)`);
        const verb = found.length ? "ALTER" : "CREATE";
        await tx.unsafe(`${verb} ROLE ${quoteIdent(o.role)} WITH LOGIN PASSWORD ${quoteLiteral(verifier)}`);
        return found.length ? "updated" : "created";
      }),
    );
  } finally {
    await db.close();
  }
}
