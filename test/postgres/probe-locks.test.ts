// The monitoring probe answers while a lock queue holds a catalog that every new connection's
// startup reads (S19): a VACUUM FULL or REINDEX of pg_authid waits behind an idle transaction that
// read it, and everyone after it waits too. The probe read pg_stat_activity, pg_stat_replication
// and pg_replication_slots, views that join pg_authid and pg_database, and waited with them: on an
// idle primary (no WAL written) neither the probe nor a fresh connection answered and the leader
// judged its primary stuck and failed it over. It now reads the functions under those views.
// Real PostgreSQL, one primary.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, type PgNode } from "../../src/postgres/ctl.ts";
import { freshCheck } from "../../src/postgres/liveness-obs.ts";
import { LocalSession } from "../../src/postgres/local-session.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { probe } from "../../src/postgres/probe.ts";
import { listSlots } from "../../src/postgres/slots.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("probe under a catalog lock queue", pgSkipReason);

const SU = "postgres";
const log = memoryLogger();
let s: Scratch;
let primary: PgNode;
let port: number;
let db: Db;
const sessions: LocalSession[] = [];

beforeAll(async () => {
  s = await pgScratch("probe-locks");
  primary = s.node("primary", log.withTag("primary"));
  port = await freePort();
  await initdb(primary, { superuser: SU, noSync: true });
  await writeManagedConfig({
    dataDir: primary.dataDir, osUser: PG_OS_USER, standby: false, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB", autovacuum: false } },
    hba: { superuser: SU, replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: ["127.0.0.1"] },
  });
  await start(primary, { logFile: `${primary.dataDir}.log`, timeoutSec: 30 });
  db = openLocalDb({ socketDir: s.socketDir, port, superuser: SU, log });
  const before = await probe(db, 2000);
  expect(before.up).toBe(true);
}, 60_000);

afterAll(async () => {
  for (const x of sessions) x.close();
  await db?.close().catch(() => undefined);
  await s?.cleanup();
});

const open = async () => {
  const x = await LocalSession.open({ socketDir: s.socketDir, port, user: SU, settings: { application_name: "probe-locks" } });
  sessions.push(x);
  return x;
};

for (const catalog of ["pg_authid", "pg_database"]) test(`a lock queue on ${catalog} holds new connections, not the probe nor the slot list`, async () => {
  const reader = await open();
  await reader.query(`BEGIN; SELECT count(*) FROM pg_catalog.${catalog}`); // idle in transaction, AccessShareLock held
  const locker = await open();
  const queued = locker.query(`BEGIN; LOCK TABLE pg_catalog.${catalog} IN ACCESS EXCLUSIVE MODE`); // waits behind the reader
  queued.catch(() => undefined);
  await waitFor(async () => {
    const rows = await db.query("waiting", (sql) => sql`SELECT count(*)::int AS n FROM pg_catalog.pg_lock_status() WHERE NOT granted AND mode = 'AccessExclusiveLock'`, 2000);
    return rows[0]?.n === 1;
  }, { timeoutMs: 10_000, what: "the AccessExclusiveLock request to queue" });
  // A new connection waits in its startup: the case the probe must tell apart from a stuck server.
  const fresh = await freshCheck({ socketDir: s.socketDir, port, superuser: SU }, false, 1000);
  expect(fresh.fresh.kind).toBe("timeout");
  const p = await probe(db, 2000);
  expect(p.up ? "answered" : p.error).toBe("answered"); // the old probe timed out here
  // The primary's member slots, listed every few rounds: a timeout there would drop the probe's connection too.
  expect(await listSlots(db)).toEqual([]);
  reader.query("ROLLBACK").catch(() => undefined);
  await queued;
  await locker.query("ROLLBACK");
}, 60_000);
