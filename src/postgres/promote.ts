// Promotion: pg_promote() over SQL waits for the end of recovery and tells us the outcome; when
// the connection itself fails, fall back to pg_ctl promote (signal file + SIGUSR1).
import { pgCtlPromote, type PgNode } from "./ctl.ts";
import { DbTimeoutError, isConnectionError, sqlState, type Db } from "./sql.ts";

export type PromoteResult = "promoted" | "not-in-recovery";

export async function promote(db: Db, node: PgNode, timeoutSec = 60): Promise<PromoteResult> {
  try {
    const rows = await db.query("pg_promote", (sql) => sql`SELECT pg_promote(true, ${timeoutSec}) AS ok`, (timeoutSec + 5) * 1000);
    if (rows[0]?.ok === true) {
      node.log.info(`promoted ${node.dataDir} (pg_promote)`);
      return "promoted";
    }
    throw new Error(`pg_promote: server did not leave recovery within ${timeoutSec} s`);
  } catch (e) {
    if (sqlState(e) === "55000") return "not-in-recovery"; // "recovery is not in progress"
    if (!(e instanceof DbTimeoutError) && !isConnectionError(e)) throw e;
    node.log.warn(`pg_promote over SQL failed (${(e as Error).message}); falling back to pg_ctl promote`);
  }
  await pgCtlPromote(node, timeoutSec);
  node.log.info(`promoted ${node.dataDir} (pg_ctl promote)`);
  return "promoted";
}
