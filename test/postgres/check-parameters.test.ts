// Names and values the real PostgreSQL refuses, found by the leader before a cluster-wide change
// goes into every node's files (src/postgres/check-parameters.ts): an unknown name, a value of the
// wrong kind, one out of range; extension settings (a dot in the name) and good values pass; a
// running server beside the check is left alone, and the scratch file is gone afterwards.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { memoryLogger } from "../../src/log.ts";
import { refusedParameters } from "../../src/postgres/check-parameters.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("check-parameters tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
let owner: OsUser;

beforeAll(async () => {
  s = await pgScratch("checkparams");
  n = s.node("n", log.withTag("pg"));
  owner = await lookupOsUser(PG_OS_USER);
  await initdb(n, { superuser: "postgres", noSync: true });
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: false, log,
    conf: { listenAddresses: ["127.0.0.1"], port: await freePort(), maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB" } },
    hba: { superuser: "postgres", replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: [] },
  });
  await start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 });
});

afterAll(async () => {
  await stop(n, "fast", 30).catch(() => {});
  await s?.cleanup();
});

test("good values and extension settings pass, beside the running server", async () => {
  expect(await refusedParameters(n, { work_mem: "64MB", max_connections: 200, "pg_stat_statements.max": 1000, log_min_duration_statement: "250ms", jit: false }, owner)).toBeNull();
  expect(existsSync(`${n.dataDir}.check.conf`)).toBe(false);
});

test("an unknown name, a value of the wrong kind, one out of range: PostgreSQL's words, each named", async () => {
  // PostgreSQL checks the names first and the values only when every name is known.
  expect(await refusedParameters(n, { work_mme: "64MB", work_mem: "64MB" }, owner)).toBe('unrecognized configuration parameter "work_mme"');
  const said = await refusedParameters(n, { max_connections: "lots", work_mem: "1kB", wal_level: "replica" }, owner);
  expect(said).toContain('invalid value for parameter "max_connections": "lots"');
  expect(said).toMatch(/1 kB is outside the valid range for parameter "work_mem"/);
  expect(said).not.toContain(n.dataDir); // the scratch file's path is left out of the message
  expect(existsSync(`${n.dataDir}.check.conf`)).toBe(false);
});

test("a data directory PostgreSQL cannot read says nothing of the values: not checked (null), with a warning", async () => {
  const gone = { ...n, dataDir: `${s.root}/absent` };
  expect(await refusedParameters(gone, { work_mme: "1" }, owner)).toBeNull();
  expect(log.lines.some((l) => l.includes("checking parameters with postgres -C") && l.includes("not checked"))).toBe(true);
});
