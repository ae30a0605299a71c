// Promotion: pg_promote() over SQL waits for the end of recovery and tells us the outcome; when
// the connection itself fails, fall back to pg_ctl promote (signal file + SIGUSR1).
import { pgCtlPromote, type PgNode } from "./ctl.ts";
import { DbTimeoutError, isConnectionError, sqlState, type Db } from "./sql.ts";

export type PromoteResult = "promoted" | "not-in-recovery";

/** pg_promote(wait => true) looks every 100 ms whether recovery ended; the new primary's first write waits for it, so we look every PROMOTE_POLL_MS. */
const PROMOTE_POLL_MS = 5;

export async function promote(db: Db, node: PgNode, timeoutSec = 60): Promise<PromoteResult> {
  try {
    const until = performance.now() + timeoutSec * 1000;
    const sent = await db.query("pg_promote", (sql) => sql`SELECT pg_promote(false) AS ok`, 10_000);
    if (sent[0]?.ok !== true) throw new Error("pg_promote: the server did not accept the promotion signal");
    for (;;) {
      const rows = await db.query("promotion done?", (sql) => sql`SELECT pg_is_in_recovery() AS recovery`, 5_000);
      if (rows[0]?.recovery === false) {
        node.log.info(`promoted ${node.dataDir} (pg_promote)`);
        return "promoted";
      }
      if (performance.now() > until) throw new Error(`pg_promote: server did not leave recovery within ${timeoutSec} s`);
      await Bun.sleep(PROMOTE_POLL_MS);
    }
  } catch (e) {
    if (sqlState(e) === "55000") return "not-in-recovery"; // "recovery is not in progress"
    if (!(e instanceof DbTimeoutError) && !isConnectionError(e)) throw e;
    node.log.warn(`pg_promote over SQL failed (${(e as Error).message}); falling back to pg_ctl promote`);
  }
  await pgCtlPromote(node, timeoutSec);
  node.log.info(`promoted ${node.dataDir} (pg_ctl promote)`);
  return "promoted";
}
