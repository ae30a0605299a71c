// A standby whose primary raises an ordered setting (here max_connections) before the standby runs
// the higher value: PostgreSQL 14+ pauses its replay ("insufficient parameter settings") while it
// keeps receiving WAL, and a paused standby cannot be promoted. On real servers: the agent's look
// at the pause names the setting (restart-node.ts pausedForSettings; a pause someone asked for
// names none), and the restart core/ha.ts then decides brings replay back, the start raised to
// pg_control's value where the standby's files are lower.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { pausedForSettings } from "../../src/agent/pg/restart-node.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { basebackup } from "../../src/postgres/basebackup.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { generatePassword, writePassfile } from "../../src/postgres/passwords.ts";
import { buildConninfo } from "../../src/postgres/pgconf.ts";
import { ensureRoles } from "../../src/postgres/roles.ts";
import { ensureSlot } from "../../src/postgres/slots.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER, pgBins, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("replay-paused tests", pgSkipReason);

const REPL = "pgherd_repl";
const log = memoryLogger();
let s: Scratch;
let primary: PgNode;
let standby: PgNode;
const dbs: Db[] = [];

beforeAll(async () => {
  s = await pgScratch("paused");
  primary = s.node("primary", log.withTag("primary"));
  standby = s.node("standby", log.withTag("standby"));
});

afterAll(async () => {
  for (const db of dbs) await db.close();
  await s?.cleanup();
});

const local = (port: number) => {
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  dbs.push(db);
  return db;
};
const one = async (db: Db, q: string) => String(Object.values((await db.query("q", (sql) => sql.unsafe(q)))[0] ?? {})[0]);
const managed = (n: PgNode, port: number, maxConnections: number, extra: Partial<ManagedConfig["conf"]> = {}, standbyOf = false): ManagedConfig => ({
  dataDir: n.dataDir, osUser: PG_OS_USER, standby: standbyOf, log,
  conf: {
    listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir,
    parameters: { fsync: false, shared_buffers: "16MB", autovacuum: false, max_connections: maxConnections }, ...extra,
  },
  hba: { superuser: "postgres", replUser: REPL, monitorUser: "pgherd_mon", peers: ["127.0.0.1"] },
});

test("a primary that raised max_connections pauses its standby's replay; the pause is named, and a restart brings replay back", async () => {
  const pp = await freePort();
  const sp = await freePort([pp]);
  await initdb(primary, { superuser: "postgres", noSync: true });
  await writeManagedConfig(managed(primary, pp, 30));
  await start(primary, { logFile: `${primary.dataDir}-start.log`, timeoutSec: 30 });
  const pdb = local(pp);
  const replPassword = generatePassword();
  await ensureRoles(pdb, { replUser: REPL, replPassword, monitorUser: "pgherd_mon", monitorPassword: generatePassword() }, log);
  await ensureSlot(pdb, "sb");
  const passfile = join(s.root, "pgpass");
  await writePassfile(passfile, [{ host: "127.0.0.1", port: pp, database: "*", user: REPL, password: replPassword }], await lookupOsUser(PG_OS_USER));
  await basebackup({ bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: pp, user: REPL, passfile, target: standby.dataDir, slot: "sb", timeoutMs: 60_000, noSync: true });
  const conninfo = buildConninfo({ host: "127.0.0.1", port: pp, user: REPL, passfile, applicationName: "sb" });
  await writeManagedConfig(managed(standby, sp, 30, { primaryConninfo: conninfo, primarySlotName: "sb" }, true));
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "sb"\nstate_dir = "${standby.dataDir}.state"\n` +
    `[postgres]\ndata_dir = "${standby.dataDir}"\nos_user = "${PG_OS_USER}"\nport = ${sp}\nsocket_dir = "${s.socketDir}"\n`, "test");
  const host = new PgHost(cfg, pgBins!, { nodeId: "sb" } as unknown as ClusterContext, log.withTag("agent"));
  await host.startServer(30);
  const sdb = local(sp);
  await waitFor(async () => (await one(sdb, "SELECT status FROM pg_stat_wal_receiver")) === "streaming", { timeoutMs: 20_000, what: "the standby to stream" });

  // Someone's pg_wal_replay_pause(): not for settings, left alone.
  await sdb.query("pause", (sql) => sql`SELECT pg_wal_replay_pause()`);
  await waitFor(async () => (await one(sdb, "SELECT pg_get_wal_replay_pause_state()")) === "paused", { timeoutMs: 10_000, what: "replay paused by hand" });
  expect(await pausedForSettings(host)).toEqual([]);
  await sdb.query("resume", (sql) => sql`SELECT pg_wal_replay_resume()`);

  // The primary restarts with 40: its parameter-change record pauses the standby's replay.
  await writeManagedConfig(managed(primary, pp, 40));
  await stop(primary, "fast", 30);
  await start(primary, { logFile: `${primary.dataDir}-start.log`, timeoutSec: 30 });
  await waitFor(async () => (await one(sdb, "SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'startup'").catch(() => "")) === "RecoveryPause", { timeoutMs: 20_000, what: "the standby's replay paused for the primary's max_connections" });
  expect(await pausedForSettings(host)).toEqual(["max_connections"]);

  // The restart the decision asks for (round.ts "restart-standby"): its files still say 30, so the
  // start is made with pg_control's 40; replay goes on.
  await host.stopServer("fast", 30);
  await host.startServer(30);
  expect(await one(sdb, "SHOW max_connections")).toBe("40");
  const target = await one(pdb, "SELECT pg_current_wal_lsn()");
  await waitFor(async () => (await one(sdb, `SELECT pg_last_wal_replay_lsn() >= '${target}'::pg_lsn`)) === "true", { timeoutMs: 20_000, what: "replay to pass the primary's position" });
  expect(await one(sdb, "SELECT pg_get_wal_replay_pause_state()")).toBe("not paused");
  await stop(standby, "fast", 30);
  await stop(primary, "fast", 30);
}, 180_000);
