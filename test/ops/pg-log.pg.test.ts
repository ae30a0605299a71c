// The server log settings pgherd writes, on a real server: the collector writes into the
// configured directory (0600 files of the OS user), and a rotation opens the next file while
// start errors still reach pg_ctl's -l file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { serverLogDir, serverLogParameters } from "../../src/ops/pg-log.ts";
import { initdb, start, type PgNode } from "../../src/postgres/ctl.ts";
import { ensureDir } from "../../src/postgres/fsutil.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("server log tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
let db: Db | undefined;
let port: number;

beforeAll(async () => {
  s = await pgScratch("pglog");
  n = s.node("data", log);
  port = await freePort();
}, 30_000);
afterAll(async () => {
  await db?.close();
  await s?.cleanup();
});

test("the collector writes rotated 0600 files into [log] postgres_dir", async () => {
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[postgres]\ndata_dir = "${n.dataDir}"\n[log]\npostgres_filename = "pg-%H%M%S.log"\n`, "pgherd.toml");
  const dir = serverLogDir(cfg);
  expect(dir).toBe(`${n.dataDir}.log`);
  const u = await lookupOsUser(PG_OS_USER);
  await initdb(n, { superuser: "postgres", noSync: true });
  await ensureDir(dir, 0o700, u);
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: false, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 2, maxReplicationSlots: 2, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, serverLog: serverLogParameters(cfg), parameters: { fsync: false } },
    hba: { superuser: "postgres", replUser: "r_user", monitorUser: "m_user", peers: [] },
  });
  const startLog = join(s.root, "start.log");
  await start(n, { logFile: startLog, timeoutSec: 30 });
  db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  await db.query("mark", (sql) => sql`SELECT pg_catalog.pg_log_backend_memory_contexts(pg_backend_pid())`);
  await waitFor(() => readdirSync(dir).some((f) => readFileSync(join(dir, f), "utf8").includes("logging memory contexts")), { timeoutMs: 10_000, what: "the marker in the collector's file" });
  const first = readdirSync(dir);
  expect(first.every((f) => /^pg-\d{6}\.log$/.test(f))).toBe(true);
  for (const f of first) expect({ f, mode: statSync(join(dir, f)).mode & 0o777, uid: statSync(join(dir, f)).uid }).toEqual({ f, mode: 0o600, uid: u.uid });
  expect(readFileSync(startLog, "utf8")).toContain("redirecting log output to logging collector process");
  // A rotation (here forced; the collector does it every postgres_rotation_age) opens the next file.
  await Bun.sleep(1100); // the file name has a one-second resolution: a rotation within the same second reuses it
  await db.query("rotate", (sql) => sql`SELECT pg_rotate_logfile()`);
  await waitFor(() => readdirSync(dir).length > first.length, { timeoutMs: 10_000, what: "a second log file after pg_rotate_logfile()" });
}, 90_000);
