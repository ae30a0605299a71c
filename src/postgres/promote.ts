// Promotion: pg_promote(wait => false) over SQL sends the signal, then we watch for the end of
// recovery ourselves (pg_promote(true) looks only every 100 ms, and the new primary's first write
// waits for it). When the signal cannot be sent over SQL, fall back to pg_ctl promote.
import { pgCtlPromote, status, type PgNode } from "./ctl.ts";
import { DbTimeoutError, isConnectionError, sqlState, type Db } from "./sql.ts";

export type PromoteResult = "promoted" | "not-in-recovery";

const PROMOTE_POLL_MS = 5;

export async function promote(db: Db, node: PgNode, timeoutSec = 60): Promise<PromoteResult> {
  const until = performance.now() + timeoutSec * 1000;
  try {
    const sent = await db.query("pg_promote", (sql) => sql`SELECT pg_promote(false) AS ok`, 10_000);
    if (sent[0]?.ok !== true) throw new Error("pg_promote: the server did not accept the promotion signal");
  } catch (e) {
    if (sqlState(e) === "55000") return "not-in-recovery"; // "recovery is not in progress"
    if (!(e instanceof DbTimeoutError) && !isConnectionError(e)) throw e;
    node.log.warn(`pg_promote over SQL failed (${(e as Error).message}); falling back to pg_ctl promote`);
    await pgCtlPromote(node, timeoutSec);
    node.log.info(`promoted ${node.dataDir} (pg_ctl promote)`);
    return "promoted";
  }
  // The signal was accepted: the server leaves recovery by itself. A look that times out or loses
  // its connection is repeated (the client reconnects) while the server runs, until the deadline.
  for (;;) {
    try {
      const rows = await db.query("promotion done?", (sql) => sql`SELECT pg_is_in_recovery() AS recovery`, 5_000);
      if (rows[0]?.recovery === false) {
        node.log.info(`promoted ${node.dataDir} (pg_promote)`);
        return "promoted";
      }
    } catch (e) {
      if (!(e instanceof DbTimeoutError) && !isConnectionError(e)) throw e;
      if (!(await status(node)).running) throw new Error(`pg_promote: the server stopped during the promotion (${(e as Error).message})`);
    }
    if (performance.now() > until) throw new Error(`pg_promote: server did not leave recovery within ${timeoutSec} s`);
    await Bun.sleep(PROMOTE_POLL_MS);
  }
}
