// promote() on a real hot standby whose backend stalls 6 s (SIGSTOP) as the promotion is asked for:
// the promotion is still reported as done, not failed (a shorter deadline on the call would send
// it to pg_ctl promote, which fails on a server that promoted meanwhile).
import { afterAll, expect, test } from "bun:test";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { promote } from "../../src/postgres/promote.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { freePort, PG_OS_USER, pgScratch, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";

const log = memoryLogger();
let s: Scratch;
let n: PgNode;
const dbs: Db[] = [];
afterAll(async () => {
  for (const d of dbs) await d.close();
  if (n) await stop(n, "immediate").catch(() => {});
  await s?.cleanup();
});

test("a promotion whose backend stalls 6 s is reported promoted", async () => {
  s = await pgScratch("promote");
  n = s.node("sb", log.withTag("sb"));
  const port = await freePort();
  await initdb(n, { superuser: "postgres", noSync: true });
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: true, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 10, maxReplicationSlots: 10, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB" } },
    hba: { superuser: "postgres", replUser: "r", monitorUser: "m", peers: [] },
  });
  await start(n, { logFile: `${n.dataDir}.log`, timeoutSec: 30 });
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  const side = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  dbs.push(db, side);
  await waitFor(async () => (await side.query("r", (sql) => sql`SELECT pg_is_in_recovery() AS r`))[0]?.r === true, { timeoutMs: 10_000, what: "hot standby" });
  const pid = Number((await db.query("pid", (sql) => sql`SELECT pg_backend_pid() AS pid`))[0]!.pid);
  let stalled = false;
  const stalling: Db = {
    target: db.target, close: () => db.close(),
    query: (what, fn, ms) => {
      if (what === "pg_promote" && !stalled) { stalled = true; process.kill(pid, "SIGSTOP"); setTimeout(() => process.kill(pid, "SIGCONT"), 6000); }
      return db.query(what, fn, ms);
    },
  };
  const r = await promote(stalling, n, 30).then((x) => x, (e: Error) => `threw: ${e.message}`);
  const rec = (await side.query("r", (sql) => sql`SELECT pg_is_in_recovery() AS rec`))[0]!.rec;
  expect(rec).toBe(false);
  expect(r).toBe("promoted");
}, 60_000);
