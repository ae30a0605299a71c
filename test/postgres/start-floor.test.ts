// A standby refuses to start when one of the five ordered settings (max_connections,
// max_worker_processes, max_wal_senders, max_prepared_transactions, max_locks_per_transaction) is
// lower than its pg_control holds: the primary's value, replayed from WAL, or its source's after a
// clone or rewind. Lowering one cluster-wide writes the lower value into every node's files at
// once, so any standby start before the primary runs it (a switchover's old primary, a rewound or
// cloned node, a crashed standby) failed, and the agent re-cloned it in a loop. On a real server:
// the agent's start, refused, is made once more with pg_control's values on pg_ctl's command line
// (above pgherd.conf and postgresql.auto.conf alike); the files keep the configured values.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { freePort, PG_OS_USER, pgBins, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("start-floor tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
let port: number;
let db: Db;

beforeAll(async () => {
  s = await pgScratch("floor");
  n = s.node("n", log.withTag("pg"));
  port = await freePort();
  db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
});

afterAll(async () => {
  await db?.close();
  await s?.cleanup();
});

const show = async (name: string) => String((await db.query("show", (sql) => sql.unsafe(`SHOW ${name}`)))[0]?.[name]);
const managed = (standby: boolean, parameters: Record<string, string | number | boolean>): ManagedConfig => ({
  dataDir: n.dataDir, osUser: PG_OS_USER, standby, log,
  conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB", ...parameters } },
  hba: { superuser: "postgres", replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: [] },
});

test("a standby whose files run max_connections and max_locks_per_transaction below its pg_control starts with pg_control's for that start", async () => {
  // The "primary" ran with 40 and 128: its shutdown checkpoint writes them to pg_control.
  await initdb(n, { superuser: "postgres", noSync: true });
  await writeManagedConfig(managed(false, { max_connections: 40, max_locks_per_transaction: 128 }));
  await start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 });
  await stop(n, "fast", 30);

  // Lowered: max_connections in pgherd.conf (the cluster-wide configuration), max_locks_per_transaction
  // by ALTER SYSTEM (postgresql.auto.conf, read after pgherd.conf); the node comes back as a standby.
  await writeManagedConfig(managed(true, { max_connections: 20 }));
  appendFileSync(join(n.dataDir, "postgresql.auto.conf"), "max_locks_per_transaction = 64\n");

  // As configured, PostgreSQL refuses the start (every standby start before the fix).
  await expect(start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 })).rejects.toThrow();
  expect(readFileSync(`${n.dataDir}-start.log`, "utf8")).toMatch(/insufficient parameter settings/);

  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${n.dataDir}.state"\n` +
    `[postgres]\ndata_dir = "${n.dataDir}"\nos_user = "${PG_OS_USER}"\nport = ${port}\nsocket_dir = "${s.socketDir}"\n`, "test");
  const host = new PgHost(cfg, pgBins!, { nodeId: "n" } as unknown as ClusterContext, log.withTag("agent"));
  await host.startServer(30);
  expect(await show("max_connections")).toBe("40");
  expect(await show("max_locks_per_transaction")).toBe("128");
  expect(log.lines.some((l) => l.includes("starting as a standby with max_connections = 40, max_locks_per_transaction = 128 from its pg_control for this start"))).toBe(true);
  // The files keep the configured values: in force at a restart once the primary runs them.
  const inFiles = await db.query("file", (sql) => sql`SELECT name, setting FROM pg_file_settings WHERE name IN ('max_connections', 'max_locks_per_transaction') ORDER BY seqno`);
  expect(Object.fromEntries(inFiles.map((r) => [String(r.name), String(r.setting)]))).toEqual({ max_connections: "20", max_locks_per_transaction: "64" });
  await stop(n, "fast", 30);
}, 120_000);
