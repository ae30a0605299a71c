// Promotion: pg_promote() over SQL signals the server, then the end of recovery is watched here;
// when that fails without an answer from PostgreSQL (the connection, a deadline), fall back to
// pg_ctl promote (signal file + SIGUSR1).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pgCtlPromote, type PgNode } from "./ctl.ts";
import { isServerOf } from "./orphans.ts";
import { osUidOf } from "./users.ts";
import { DbTimeoutError, isConnectionError, sqlState, type Db } from "./sql.ts";

export type PromoteResult = "promoted" | "not-in-recovery";
/** Whose server a signal may reach: its data directory and the OS user it runs as (isServerOf). */
type ServerNode = Pick<PgNode, "dataDir" | "osUser">;
type Server = { dataDir: string; osUid: number };

/** How often the promotion looks for its signal file to be taken (a stat), and then for the end of recovery (a query). */
const TRIGGER_POLL_MS = 5;
const RECOVERY_POLL_MS = 10;
/** While the signal file is not taken yet (a standby replaying what it has first), the end of recovery is asked this often. */
const SLOW_RECOVERY_POLL_MS = 100;

/**
 * `mayPromote` is called right before pg_promote is sent and before the pg_ctl promote fallback;
 * what it throws ends the promotion there (a lease lost meanwhile: Fencer.asPrimary's still).
 */
export async function promote(db: Db, node: PgNode, timeoutSec = 60, mayPromote: () => void = () => {}): Promise<PromoteResult> {
  const t0 = performance.now();
  const server = { dataDir: node.dataDir, osUid: await osUidOf(node.osUser) };
  try {
    const startup = await startupPid(db);
    mayPromote();
    // pg_promote(wait => false) returns once its signal file is written and the postmaster signalled.
    const rows = await db.query("pg_promote", (sql) => sql`SELECT pg_promote(false) AS ok`, (timeoutSec + 5) * 1000);
    if (rows[0]?.ok !== true) throw new Error("pg_promote: the server could not signal its postmaster");
    await untilPromoted(db, server, startup, t0, timeoutSec);
    node.log.info(`promoted ${node.dataDir} (pg_promote, out of recovery in ${Math.round(performance.now() - t0)} ms)`);
    return "promoted";
  } catch (e) {
    if (sqlState(e) === "55000") return "not-in-recovery"; // "recovery is not in progress"
    if (!(e instanceof DbTimeoutError) && !isConnectionError(e)) throw e;
    node.log.warn(`pg_promote over SQL failed (${(e as Error).message}); falling back to pg_ctl promote`);
  }
  mayPromote();
  await pgCtlPromote(node, timeoutSec);
  node.log.info(`promoted ${node.dataDir} (pg_ctl promote)`);
  return "promoted";
}

/** The startup process, which carries the recovery out (null: none seen). */
async function startupPid(db: Db): Promise<number | null> {
  const rows = await db.query("startup process", (sql) => sql`SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'startup'`);
  const pid = Number(rows[0]?.pid);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Asked with the promotion's time left and 5 s more, as pg_promote(wait) was: a stalled backend is
 * not taken for a failed promotion. Only a plain false says the recovery has ended.
 */
async function inRecovery(db: Db, deadline: number): Promise<boolean> {
  const ms = Math.max(0, deadline - performance.now()) + 5000;
  return (await db.query("pg_is_in_recovery", (sql) => sql`SELECT pg_is_in_recovery() AS r`, ms))[0]?.r !== false;
}

/**
 * Waits for the end of recovery after pg_promote, and wakes the startup process once it has taken
 * the promotion's signal file. PostgreSQL (15 at least; WaitForWALToBecomeAvailable) may otherwise
 * sleep out what is left of wal_retrieve_retry_interval after it saw the promotion: when it sees it
 * while a walreceiver is asked for but not started yet, it marks that one stopped (no process to
 * signal, so none wakes it on its exit) and then waits as after any failed attempt, with nothing
 * left to set its latch. The switchover bench lost 180-190 ms of the 200 ms default there in 2 of 5
 * rounds. A SIGHUP sets the latch (and makes the startup process read the config files: what the
 * agent wrote before the promotion, which that process has no use for any more); one sent before
 * the file is taken could be spent on an earlier wait, so it goes after. The deadline is checked
 * after a look: a pg_promote that stalled until near it still gets one.
 */
async function untilPromoted(db: Db, server: Server, startup: number | null, t0: number, timeoutSec: number): Promise<void> {
  const deadline = t0 + timeoutSec * 1000;
  const signalFile = join(server.dataDir, "promote");
  let woken = startup === null;
  let asked = performance.now();
  for (;;) {
    if (!woken && !existsSync(signalFile)) {
      wake(startup!, server);
      woken = true;
    }
    const now = performance.now();
    if (woken || now - asked >= SLOW_RECOVERY_POLL_MS || now > deadline) {
      asked = now;
      if (!(await inRecovery(db, deadline))) return;
    }
    if (performance.now() > deadline) throw new Error(`pg_promote: server did not leave recovery within ${timeoutSec} s`);
    await Bun.sleep(woken ? RECOVERY_POLL_MS : TRIGGER_POLL_MS);
  }
}

/**
 * A SIGHUP to the startup process, if that pid is still this data directory's server process and
 * its startup (it exits when the recovery ends; SIGHUP would end a process that does not catch it).
 */
function wake(pid: number, server: Server): void {
  try {
    if (!isServerOf(pid, server.dataDir, server.osUid) || !readFileSync(`/proc/${pid}/cmdline`, "latin1").includes("startup")) return;
    process.kill(pid, "SIGHUP");
  } catch {
    // gone: the recovery has ended
  }
}

/** What the session sees now. */
async function namesInForce(db: Db): Promise<string> {
  return String((await db.query("synchronous_standby_names", (sql) => sql`SELECT current_setting('synchronous_standby_names') AS v`))[0]?.v);
}

/** Reloads unless this session sees `names` already, then waits until it does. */
async function reloadUntilSeen(db: Db, names: string, timeoutMs: number): Promise<string> {
  const before = await namesInForce(db);
  if (before === names) return before;
  await db.query("pg_reload_conf", (sql) => sql`SELECT pg_reload_conf()`);
  const end = performance.now() + timeoutMs;
  for (let now = await namesInForce(db); now !== names; now = await namesInForce(db)) {
    if (performance.now() > end) throw new Error(`synchronous_standby_names is still '${now}' ${timeoutMs} ms after a reload (the files say '${names}')`);
    await Bun.sleep(2);
  }
  return before;
}

/**
 * Whether a commit waits for a synchronous standby is decided by a flag in shared memory that only
 * the checkpointer sets, when it takes a reload (or at its start); a session seeing the names says
 * nothing about it, and a checkpointer busy in a restartpoint or checkpoint (its fsync phase, or a
 * write phase behind schedule) takes no reload until that ends. This barrier returns once the
 * checkpointer has taken `names` (already in the files): the session sees them, the checkpointer
 * gets a SIGHUP of its own (the postmaster may signal it after the backends), and a CHECKPOINT
 * requested after that has completed, which the checkpointer starts only after taking the reload.
 * On a standby the CHECKPOINT is a restartpoint (skipped cheaply when one was done since the last
 * checkpoint record replayed). Returns what was done, for the log.
 */
export async function syncNamesBarrier(db: Db, names: string, node: ServerNode, checkpointMs = 600_000, reloadMs = 5000): Promise<string> {
  const { dataDir, osUser } = node;
  const before = await reloadUntilSeen(db, names, reloadMs);
  const rows = await db.query("checkpointer", (sql) => sql`SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'checkpointer'`);
  const pid = Number(rows[0]?.pid);
  // PostgreSQL may signal the checkpointer after the backends: without a SIGHUP of our own the
  // CHECKPOINT could reach it first, so a barrier that cannot send one confirms nothing.
  if (!Number.isInteger(pid) || pid <= 0) throw new Error("no checkpointer in pg_stat_activity: the names cannot be confirmed taken");
  // What a session reports is checked before a root agent signals it (a superuser can change the view).
  if (!isServerOf(pid, dataDir, await osUidOf(osUser))) throw new Error(`pid ${pid}, the checkpointer pg_stat_activity names, is no process of ${dataDir}'s server: not signalled, the names cannot be confirmed taken`);
  try {
    process.kill(pid, "SIGHUP");
  } catch (e) {
    throw new Error(`cannot signal the checkpointer (pid ${pid}): ${(e as Error).message}`);
  }
  try {
    await db.query("checkpoint after the reload", (sql) => sql`CHECKPOINT`, checkpointMs);
  } catch (e) {
    if (e instanceof DbTimeoutError) throw new BarrierTimeout(`the checkpointer did not take synchronous_standby_names '${names}' within ${checkpointMs} ms (CHECKPOINT still running)`);
    throw e;
  }
  return `synchronous_standby_names ${before === names ? "" : `'${before}' -> `}'${names}' taken by the checkpointer`;
}

/** The barrier's CHECKPOINT did not end in time (a checkpointer busy in a long restartpoint). */
export class BarrierTimeout extends Error {}

/** How long a promotion waits for the barrier (a leader whose checkpointer is busier resigns: round.ts). */
export const PROMOTION_BARRIER_MS = 10_000;

/**
 * Before a promotion: `names` (synchronous_standby_names, already in the files) in force for the
 * checkpointer, so that no commit of the new primary is acknowledged before a synchronous standby
 * has it. `taken`: the agent saw the checkpointer take non-empty names since it last wrote empty
 * ones (a barrier off the promotion's path, durability.ts); then a look in the session suffices.
 */
export async function syncNamesBeforePromotion(db: Db, names: string, taken: boolean, node: ServerNode): Promise<{ did: string; taken: boolean }> {
  if (names === "") {
    const before = await reloadUntilSeen(db, names, 5000);
    return { did: `synchronous_standby_names '${before}' -> '' (none)`, taken: false };
  }
  if (taken) {
    // The flag only says whether any names are defined: other non-empty names need a reload, not a barrier.
    const before = await reloadUntilSeen(db, names, 5000);
    return { did: `synchronous_standby_names ${before === names ? "" : `'${before}' -> `}'${names}' in force (names taken by the checkpointer earlier)`, taken: true };
  }
  return { did: await syncNamesBarrier(db, names, node, PROMOTION_BARRIER_MS), taken: true };
}

/**
 * The walsenders that count as synchronous candidates now (pg_stat_replication.sync_priority > 0,
 * read from shared memory: each walsender sets its own when it takes a reload), with the names
 * this session sees. A walsender takes a reload on its own schedule: until its priority is 0 the
 * primary may still release commits on its standby's acknowledgement, whatever the files say.
 * A member's walsender (a pgherd application name) that has not reported a flush position yet is
 * counted too, as not confirmed: it is starting, and what it will count for is not known yet.
 */
export async function syncCandidatesInForce(db: Db): Promise<{ names: string; counting: string[] }> {
  const names = await namesInForce(db);
  const rows = await db.query("sync candidates", (sql) => sql`SELECT coalesce(application_name, '') AS name, sync_priority, flush_lsn IS NULL AS no_flush, state = 'backup' AS backup FROM pg_stat_replication`);
  return {
    names,
    counting: countingWalsenders(rows.map((r) => ({ name: String(r.name), syncPriority: Number(r.sync_priority), noFlush: r.no_flush === true, backup: r.backup === true }))),
  };
}

/**
 * The application names of the walsenders that count, or may count, as synchronous
 * (syncCandidatesInForce). A clone's walsenders (`pgherd_<id>_clone`, agent/pg/context.ts
 * cloneNameFor: never in the names) and any base backup's never acknowledge a commit: the backup's
 * flush position stays empty for the whole copy, and counting it would keep every exclusion
 * unconfirmed while a clone runs.
 */
export function countingWalsenders(rows: ReadonlyArray<{ name: string; syncPriority: number; noFlush: boolean; backup?: boolean }>): string[] {
  const starting = (r: { name: string; noFlush: boolean; backup?: boolean }) => r.noFlush && !r.backup && r.name.startsWith("pgherd_") && !r.name.endsWith("_clone");
  return rows.filter((r) => r.syncPriority > 0 || starting(r)).map((r) => r.name);
}
