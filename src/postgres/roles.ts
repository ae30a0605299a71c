// Roles pgherd needs, created with a SCRAM-SHA-256 verifier computed here: the plain password
// never reaches the server, so it cannot show up in a server log (log_statement=all) or
// pg_stat_statements. Logging is also switched off for the statement's transaction.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import type { Logger } from "../log.ts";
import { quoteIdent, quoteLiteral, sqlState, type Db } from "./sql.ts";

/**
 * PostgreSQL's verifier format: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (RFC 5802/7677).
 * ASCII only: SASLprep is the identity on ASCII, for other passwords it would need a full
 * stringprep implementation to match the server, so they are refused with a clear error.
 */
export function scramVerifier(password: string, opts: { salt?: Buffer; iterations?: number } = {}): string {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(password)) throw new Error("password must be ASCII (non-ASCII needs SASLprep)");
  if (password.length === 0) throw new Error("password must not be empty");
  const iterations = opts.iterations ?? 4096;
  const salt = opts.salt ?? randomBytes(16);
  const salted = pbkdf2Sync(Buffer.from(password, "utf8"), salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

export interface RoleSpec {
  replUser: string;
  replPassword: string;
  monitorUser: string;
  monitorPassword: string;
  /** Grant the replication user the functions pg_rewind needs on its source (default true). */
  rewindGrants?: boolean;
}

const REWIND_FUNCTIONS = [
  "pg_catalog.pg_ls_dir(text, boolean, boolean)",
  "pg_catalog.pg_stat_file(text, boolean)",
  "pg_catalog.pg_read_binary_file(text)",
  "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

/** Create or update the replication and monitoring roles (run on the primary). */
export async function ensureRoles(db: Db, r: RoleSpec, log: Logger): Promise<void> {
  if (r.replUser === r.monitorUser) throw new Error("replication and monitor users must differ");
  await setRole(db, r.replUser, "LOGIN REPLICATION", r.replPassword, log);
  await setRole(db, r.monitorUser, "LOGIN", r.monitorPassword, log);
  await db.query("grant pg_monitor", (sql) => sql.unsafe(`GRANT pg_monitor TO ${quoteIdent(r.monitorUser)}`));
  if (r.rewindGrants ?? true) {
    for (const f of REWIND_FUNCTIONS) {
      await db.query("grant rewind functions", (sql) => sql.unsafe(`GRANT EXECUTE ON FUNCTION ${f} TO ${quoteIdent(r.replUser)}`))
        .catch((e) => {
          // Signatures differ between majors; a missing one is not fatal (pg_rewind then reports what it lacks).
          if (sqlState(e) !== "42883") throw e;
          log.debug(`no function ${f} on this server version; not granted`);
        });
    }
  }
}

async function setRole(db: Db, name: string, attrs: string, password: string, log: Logger): Promise<void> {
  if (!/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/.test(name)) throw new Error(`role name ${JSON.stringify(name)} is invalid`);
  const verifier = scramVerifier(password);
  await db.query(`ensure role ${name}`, (sql) =>
    sql.begin(async (tx) => {
      // Separate statements: a multi-statement string would be logged as a whole before SET LOCAL applies.
      await tx.unsafe("SET LOCAL log_statement = 'none'");
      await tx.unsafe("SET LOCAL log_min_duration_statement = -1");
      await tx.unsafe("SET LOCAL log_min_error_statement = 'panic'");
      const found = await tx`SELECT 1 FROM pg_roles WHERE rolname = ${name}`;
      const verb = found.length ? "ALTER" : "CREATE";
      await tx.unsafe(`${verb} ROLE ${quoteIdent(name)} WITH ${attrs} PASSWORD ${quoteLiteral(verifier)}`);
      log.info(`${verb === "CREATE" ? "created" : "updated"} role ${name} (${attrs})`);
    }),
  );
}
