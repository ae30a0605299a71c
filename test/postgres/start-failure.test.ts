// A standby whose start failed three times is rebuilt from a fresh clone, unless PostgreSQL said
// why in terms a clone does not change (src/postgres/start-failure.ts): a library not installed,
// memory, a value it refuses. Before, such a standby was re-cloned (a base backup of the whole
// database) at every third failed start. On a real server: each cause as PostgreSQL reports it,
// and a damaged pg_control, which a clone does repair, told apart.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { initdb, PgCtlError, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { sameOnFreshCopy } from "../../src/postgres/start-failure.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("start-failure tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
let auto: string;
let autoText: string;

beforeAll(async () => {
  s = await pgScratch("startfail");
  n = s.node("n", log.withTag("pg"));
  const port = await freePort();
  await initdb(n, { superuser: "postgres", noSync: true });
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: false, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB" } },
    hba: { superuser: "postgres", replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: [] },
  });
  await start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 });
  await stop(n, "fast", 30);
  auto = join(n.dataDir, "postgresql.auto.conf");
  autoText = readFileSync(auto, "utf8");
});

afterAll(async () => {
  await s?.cleanup();
});

/** The error of a start with `line` added to postgresql.auto.conf (the file restored after). */
async function failedStart(line: string): Promise<unknown> {
  writeFileSync(auto, `${autoText}${line}\n`);
  try {
    await start(n, { logFile: `${n.dataDir}-start.log`, timeoutSec: 30 });
    await stop(n, "fast", 30);
    return null;
  } catch (e) {
    return e;
  } finally {
    writeFileSync(auto, autoText);
  }
}

test("a library not installed, memory the host lacks, a value PostgreSQL refuses: a clone would fail the same way", async () => {
  const lib = await failedStart("shared_preload_libraries = 'pgherd_no_such_library'");
  expect(lib).toBeInstanceOf(PgCtlError);
  expect(sameOnFreshCopy(lib)).toContain('could not access file "pgherd_no_such_library": No such file or directory');
  const memory = await failedStart("shared_buffers = '1TB'");
  expect(memory).toBeInstanceOf(PgCtlError);
  expect(sameOnFreshCopy(memory)).toMatch(/could not map anonymous shared memory|out of memory/);
  const value = await failedStart("max_connections = 'lots'");
  expect(value).toBeInstanceOf(PgCtlError);
  expect(sameOnFreshCopy(value)).toMatch(/invalid value for parameter "max_connections"|configuration file ".*" contains errors/);
  expect(await failedStart("")).toBeNull(); // the data directory itself starts
}, 120_000);

test("a damaged pg_control is about the data: a fresh clone may help, so the rebuild stays", async () => {
  const control = join(n.dataDir, "global", "pg_control");
  const bytes = readFileSync(control);
  bytes.fill(0x5a, 16, 64);
  writeFileSync(control, bytes);
  const e = await failedStart("");
  expect(e).toBeInstanceOf(PgCtlError);
  expect(`${(e as PgCtlError).message}\n${(e as PgCtlError).detail}`).toMatch(/control file|checkpoint/i);
  expect(sameOnFreshCopy(e)).toBeNull();
  expect(sameOnFreshCopy(new Error("anything else"))).toBeNull();
}, 60_000);
