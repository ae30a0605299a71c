// What governs whether a commit waits for a synchronous standby is the flag the checkpointer
// publishes (WalSndCtl->sync_standbys_status), not the value a session sees. While the checkpointer
// does not take a reload (here: SIGSTOP, standing in for a restartpoint or checkpoint behind
// schedule or in its fsync phase, which take no SIGHUP), a session already reports the names in
// force. The barrier (syncNamesBarrier) waits for the checkpointer itself (found by a review of
// 2f8e9fe, which trusted the session).
import { afterAll, expect, test } from "bun:test";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { promote, syncNamesBeforePromotion } from "../../src/postgres/promote.ts";
import { openDb, openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { freePort, PG_OS_USER, pgScratch, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";

const log = memoryLogger();
let s: Scratch;
const dbs: Db[] = [];
const nodes: PgNode[] = [];
const stopped: number[] = [];
afterAll(async () => {
  for (const pid of stopped) try { process.kill(pid, "SIGCONT"); } catch { /* gone */ }
  for (const d of dbs) await d.close();
  for (const x of nodes) await stop(x, "immediate").catch(() => {});
  await s?.cleanup();
});

const NAMES = 'ANY 1 ("pgherd_nobody")';

async function server(name: string, standby: boolean) {
  s ??= await pgScratch("ckpt");
  const node = s.node(name, log.withTag(name));
  const port = await freePort();
  await initdb(node, { superuser: "postgres", noSync: true });
  const conf = { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 10, maxReplicationSlots: 10, hotStandby: true as const, walLogHints: true as const, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB" } };
  const write = (names?: string) => writeManagedConfig({ dataDir: node.dataDir, osUser: PG_OS_USER, standby, log, conf: { ...conf, synchronousStandbyNames: names }, hba: { superuser: "postgres", replUser: "r", monitorUser: "m", peers: [] } });
  await write("");
  nodes.push(node);
  await start(node, { logFile: `${node.dataDir}.log`, timeoutSec: 30 });
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  dbs.push(db);
  await waitFor(async () => (await db.query("r", (sql) => sql`SELECT pg_is_in_recovery() AS r`))[0]?.r === standby, { timeoutMs: 10_000, what: `${name} up` });
  const ckpt = Number((await db.query("ckpt", (sql) => sql`SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`))[0]!.pid);
  return { node, db, port, write, ckpt };
}

async function commitWithin(port: number, db: Db, table: string, ms: number): Promise<string> {
  const w = openDb({ host: s.socketDir, port, user: "postgres", log });
  dbs.push(w);
  const done = w.query("commit", (sql) => sql`CREATE TABLE ${sql(table)} (id int)`, 60_000).then(() => "committed", (e: Error) => `failed: ${e.message}`);
  const outcome = await Promise.race([done, Bun.sleep(ms).then(() => "waiting")]);
  if (outcome === "waiting") {
    await db.query("cancel", (sql) => sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CREATE TABLE%' AND state = 'active'`);
    await done;
  }
  return outcome;
}

/** syncNamesBeforePromotion while the checkpointer is held: still pending after `ms`, then done once it runs again. */
async function heldThenDone(sb: { db: Db; ckpt: number; node: PgNode }, ms: number): Promise<{ pendingWhileHeld: boolean; did: string }> {
  let did: string | null = null;
  const call = syncNamesBeforePromotion(sb.db, NAMES, false, sb.node).then((d) => (did = d.did));
  await Bun.sleep(ms);
  const pendingWhileHeld = did === null;
  process.kill(sb.ckpt, "SIGCONT");
  return { pendingWhileHeld, did: await call };
}

/** A standby whose files got the names, its checkpointer held: optionally reloaded first (the upkeep), then promoted. */
async function promoteWithCheckpointerHeld(name: string, upkeepReloaded: boolean): Promise<void> {
  const sb = await server(name, true);
  await sb.write(NAMES);
  process.kill(sb.ckpt, "SIGSTOP"); stopped.push(sb.ckpt);
  if (upkeepReloaded) {
    await sb.db.query("reload", (sql) => sql`SELECT pg_reload_conf()`); // the standby upkeep's reload (durability.ts)
    await waitFor(async () => (await sb.db.query("v", (sql) => sql`SELECT current_setting('synchronous_standby_names') AS v`))[0]?.v === NAMES, { timeoutMs: 5000, what: "session sees names" });
  }
  const r = await heldThenDone(sb, 1000);
  console.log(`${name}: ${r.did} (pending while the checkpointer was held: ${r.pendingWhileHeld})`);
  expect(r.pendingWhileHeld).toBe(true);
  expect(await promote(sb.db, sb.node, 30)).toBe("promoted");
  expect(await commitWithin(sb.port, sb.db, "t_first", 1000)).toBe("waiting");
}

// On 2f8e9fe the call returned at once ("already in force"), and the first commit after the promotion was acknowledged.
test("standby: names reloaded by the upkeep before, not yet taken by the checkpointer: the promotion waits for it, and the first commit waits for a standby", () => promoteWithCheckpointerHeld("sb", true), 60_000);

test("standby: '' -> names reloaded by the promotion itself: the CHECKPOINT barrier is what waits for the checkpointer", () => promoteWithCheckpointerHeld("sb2", false), 60_000);

// Why a primary's '' -> names (resync after a degrade) lifts its block only after the barrier
// (durability.ts publishGuard): reloaded and seen by the session, the names do not yet make commits wait.
test("why (primary side): '' -> names reloaded, session confirms, the checkpointer has not taken them: commits are acknowledged without a standby (resync / async->quorum / k 0->1)", async () => {
  const pr = await server("pr", false);
  await pr.write(NAMES);
  process.kill(pr.ckpt, "SIGSTOP"); stopped.push(pr.ckpt);
  await pr.db.query("reload", (sql) => sql`SELECT pg_reload_conf()`);
  await waitFor(async () => (await pr.db.query("v", (sql) => sql`SELECT current_setting('synchronous_standby_names') AS v`))[0]?.v === NAMES, { timeoutMs: 5000, what: "session sees names" });
  const first = await commitWithin(pr.port, pr.db, "p_first", 1000);
  // A SIGHUP of its own (the postmaster may signal it a moment after the backends), then the
  // checkpointer takes the pending reload before it starts a checkpoint: once this one is done, the names are taken.
  process.kill(pr.ckpt, "SIGHUP");
  process.kill(pr.ckpt, "SIGCONT");
  await pr.db.query("checkpoint", (sql) => sql`CHECKPOINT`, 30_000);
  const later = await commitWithin(pr.port, pr.db, "p_later", 1000);
  console.log(`primary path: commit after the reload '${first}' (checkpointer held), after SIGCONT '${later}'`);
  expect(first).toBe("committed");
  expect(later).toBe("waiting");
}, 60_000);
