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

/**
 * Before a promotion: makes `names` (synchronous_standby_names, already in the files) the value in
 * force, so that no commit of the new primary is acknowledged before a synchronous standby has it.
 * A reload is confirmed when this session sees the value (the postmaster has read the files and
 * signalled every process). Whether any names are defined at all is published by the checkpointer
 * when it takes the reload, and it may be busy in a restartpoint: when the value in force was empty
 * (names going from none to some), a CHECKPOINT (a restartpoint on a standby) follows, which the
 * checkpointer starts only after taking the pending reload. A standby normally runs with the names
 * already (PgHost.writeConfig), so this costs nothing then. Returns what was done, for the log.
 */
export async function syncNamesBeforePromotion(db: Db, names: string, timeoutMs = 5000): Promise<string> {
  const inForce = async () => String((await db.query("synchronous_standby_names", (sql) => sql`SELECT current_setting('synchronous_standby_names') AS v`))[0]?.v);
  const before = await inForce();
  if (before === names) return `synchronous_standby_names '${names}' already in force`;
  await db.query("pg_reload_conf", (sql) => sql`SELECT pg_reload_conf()`);
  const end = performance.now() + timeoutMs;
  for (let now = await inForce(); now !== names; now = await inForce()) {
    if (performance.now() > end) throw new Error(`synchronous_standby_names is still '${now}' ${timeoutMs} ms after a reload (the files say '${names}')`);
    await Bun.sleep(2);
  }
  if (before !== "" || names === "") return `synchronous_standby_names '${before}' -> '${names}' (reloaded)`;
  await db.query("checkpoint after the reload", (sql) => sql`CHECKPOINT`, 120_000);
  return `synchronous_standby_names '' -> '${names}' (reloaded, taken by the checkpointer)`;
}
