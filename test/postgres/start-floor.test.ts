// A standby refuses to start when one of the five ordered settings (max_connections,
// max_worker_processes, max_wal_senders, max_prepared_transactions, max_locks_per_transaction) is
// lower than its pg_control holds: the primary's value, replayed from WAL, or its source's after a
// clone or rewind. Lowering one cluster-wide writes the lower value into every node's files at
// once, so any standby start before the primary runs it (a switchover's old primary, a rewound or
// cloned node, a crashed standby) failed, and the agent re-cloned it in a loop. On a real server:
// the agent's start raises the value to pg_control's for that start, and the next write of the
// files puts the configured value back (pending a restart).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { forgetParametersInForce } from "../../src/agent/dynamic-config.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { freePort, PG_OS_USER, pgBins, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("start-floor tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
let port: number;
let db: Db;

beforeAll(async () => {
  forgetParametersInForce(); // a cluster-wide document another test file's DynamicConfig left in force (one bun test process)
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

test("a standby whose configured max_connections and max_locks_per_transaction are below its pg_control starts with pg_control's, the configured ones pending", async () => {
  // The "primary" ran with 40 and 128: its shutdown checkpoint writes them to pg_control.
  await initdb(n, { superuser: "postgres", noSync: true });
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: false, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir,
      parameters: { fsync: false, shared_buffers: "16MB", max_connections: 40, max_locks_per_transaction: 128 } },
    hba: { superuser: "postgres", replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: [] },
  });
  await start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 });
  await stop(n, "fast", 30);

  // The cluster-wide configuration lowered both; the node comes back as a standby.
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${n.dataDir}.state"\n` +
    `[postgres]\ndata_dir = "${n.dataDir}"\nos_user = "${PG_OS_USER}"\nport = ${port}\nsocket_dir = "${s.socketDir}"\nmax_wal_senders = 5\n` +
    `[postgres.parameters]\nfsync = false\nshared_buffers = "16MB"\nmax_connections = 20\nmax_locks_per_transaction = 64\n`, "test");
  const ctx = { nodeId: "n", secrets: () => undefined, peerAddresses: () => [], record: () => {} } as unknown as ClusterContext;
  const host = new PgHost(cfg, pgBins!, ctx, log.withTag("agent"));
  await host.writeConfig(true);
  const conf = join(n.dataDir, "pgherd.conf");
  expect(readFileSync(conf, "utf8")).toContain("max_connections = 20");

  // As configured, PostgreSQL refuses the start (what every standby start did before the fix).
  await expect(start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 })).rejects.toThrow();
  // The server's own words, in the start log or the log collector's directory (the agent's [log] settings).
  const logs = [`${n.dataDir}-start.log`, ...readdirSync(`${n.dataDir}.log`).map((f) => join(`${n.dataDir}.log`, f))].map((f) => readFileSync(f, "utf8")).join("");
  expect(logs).toMatch(/insufficient parameter settings/);

  await host.startServer(30);
  expect(await show("max_connections")).toBe("40");
  expect(await show("max_locks_per_transaction")).toBe("128");
  expect(log.lines.some((l) => l.includes("starting as a standby with max_connections = 40, max_locks_per_transaction = 128 from its pg_control"))).toBe(true);
  // The next write puts the configured values back: pending until a restart after the primary runs them.
  await host.writeConfig(true);
  expect(readFileSync(conf, "utf8")).toContain("max_connections = 20");
  await db.query("reload", (sql) => sql`SELECT pg_reload_conf()`);
  const pending = async () => (await db.query("pending", (sql) => sql`SELECT name FROM pg_settings WHERE pending_restart ORDER BY name`)).map((r) => String(r.name));
  await waitFor(async () => (await pending()).includes("max_connections"), { timeoutMs: 10_000, what: "max_connections pending a restart" });
  await stop(n, "fast", 30);
}, 120_000);
