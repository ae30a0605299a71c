// A standby whose start failed three times is rebuilt from a fresh clone once per cause: when the
// clone's start fails the same way (a library not installed, memory, a value the cluster runs),
// it is not rebuilt again (src/agent/pg/loop.ts). The cause is what ended the start, as PostgreSQL
// said it (src/postgres/start-failure.ts): its FATAL or PANIC line, not the LOG lines before it.
// On a real server, for each of those and for a damaged pg_control.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { initdb, PgCtlError, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { failedStartCause } from "../../src/postgres/start-failure.ts";
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

test("the cause of a failed start is PostgreSQL's FATAL line: a library not installed, memory the host lacks, a value it refuses", async () => {
  const lib = await failedStart("shared_preload_libraries = 'pgherd_no_such_library'");
  expect(lib).toBeInstanceOf(PgCtlError);
  expect(failedStartCause(lib)).toBe('FATAL: could not access file "pgherd_no_such_library": No such file or directory');
  const memory = await failedStart("shared_buffers = '1TB'");
  expect(memory).toBeInstanceOf(PgCtlError);
  expect(failedStartCause(memory)).toMatch(/^FATAL: (could not map anonymous shared memory|could not create shared memory segment|out of memory)/);
  const value = await failedStart("max_connections = 'lots'");
  expect(value).toBeInstanceOf(PgCtlError);
  // PostgreSQL logs the bad value (LOG) and then ends the start (FATAL): the cause is the FATAL line.
  expect((value as PgCtlError).detail).toMatch(/LOG: +invalid value for parameter "max_connections": "lots"/);
  expect(failedStartCause(value)).toMatch(/^FATAL: configuration file ".*postgresql\.auto\.conf" contains errors$/);
  expect(failedStartCause(await failedStart("shared_preload_libraries = 'pgherd_no_such_library'"))).toBe(failedStartCause(lib)); // the same each time
  expect(await failedStart("")).toBeNull(); // the data directory itself starts
}, 120_000);

test("a damaged pg_control: its own cause; an error without a server log: its message", async () => {
  const control = join(n.dataDir, "global", "pg_control");
  const bytes = readFileSync(control);
  bytes.fill(0x5a, 16, 64);
  writeFileSync(control, bytes);
  const e = await failedStart("");
  expect(e).toBeInstanceOf(PgCtlError);
  expect(failedStartCause(e)).toMatch(/^(FATAL|PANIC): .*(control file|checkpoint)/i);
  expect(failedStartCause(new Error("pg_ctl exit 1"))).toBe("pg_ctl exit 1");
}, 60_000);
