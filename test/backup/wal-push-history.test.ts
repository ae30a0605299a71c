// `pgherd backup wal-push` against real PostgreSQL WAL, a real timeline history file and a real
// pgBackRest repository: a node's copy of the segment its old timeline ended in (a former primary's,
// with WAL written after the switch) is refused by pgBackRest when the repository has another copy,
// and wal-push then returns done without pushing, because the node's history file says that timeline
// ended inside the segment. A different copy of a segment wholly in the history is still refused.
//
// The two histories are made as a failover makes them: a copy of the primary's data directory is
// promoted (timeline 2, switch point X inside segment S), and the old primary then writes on past X
// and completes S. The promoted copy's old S (renamed S.partial by the promotion) is the copy a
// standby that followed the promotion completes at X: the same WAL up to X, other bytes after it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { historyEnds, segmentSpan } from "../../src/core/wal-history.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { agentBinary } from "../helpers/agents.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { run, waitFor, type RunResult } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("wal-push against real WAL and pgBackRest", pgSkipReason);

const log = memoryLogger();
const STANZA = "hist";
const SEG_BYTES = 16 * 1024 * 1024;
let s: Scratch;
let a: PgNode;
let b: PgNode;
let conf: string;
const dbs: Db[] = [];
/** The segment the switch point fell in, and the one before it (wholly timeline 1's history). */
let S = "";
let before = "";

const as = (cmd: string[], cwd = "/"): Promise<RunResult> => run(cmd, { user: PG_OS_USER, cwd, timeoutMs: 60_000 });
const pgbackrest = (...args: string[]) => as(["pgbackrest", `--config=${conf}`, `--stanza=${STANZA}`, ...args]);
const walPush = (dataDir: string, name: string) => as([agentBinary(), "backup", "wal-push", "--direct", "--pgbackrest=pgbackrest", `--pgbackrest-config=${conf}`, `--stanza=${STANZA}`, `pg_wal/${name}`], dataDir);

async function up(n: PgNode, port: number, standby: boolean): Promise<Db> {
  await writeManagedConfig({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby, log,
    conf: { listenAddresses: ["127.0.0.1"], port, maxWalSenders: 2, maxReplicationSlots: 2, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB", wal_keep_size: "1GB" } },
    hba: { superuser: "postgres", replUser: "r", monitorUser: "m", peers: [] },
  });
  await start(n, { logFile: `${n.dataDir}.log`, timeoutSec: 30 });
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: "postgres", log });
  dbs.push(db);
  return db;
}

/** The name of timeline 1's segment holding `lsn` (PostgreSQL's XLogFileName). */
const timeline1Segment = (lsn: bigint): string => {
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, "0");
  return `00000001${hex(lsn >> 32n)}${hex((lsn & 0xffffffffn) / BigInt(SEG_BYTES))}`;
};

const q = async (db: Db, text: string): Promise<Record<string, unknown>[]> => [...(await db.query("q", (sql) => sql.unsafe(text)))] as Record<string, unknown>[];

beforeAll(async () => {
  s = await pgScratch("walhist");
  a = s.node("a", log.withTag("a"));
  b = s.node("b", log.withTag("b"));
  const [pa, pb] = [await freePort(), await freePort()];
  await initdb(a, { superuser: "postgres", noSync: true });
  let db = await up(a, pa, false);
  await q(db, "create table t (x int)");
  await q(db, "insert into t select generate_series(1, 1000)");
  await q(db, "select pg_switch_wal()");
  await q(db, "insert into t select generate_series(1, 1000)");
  await stop(a, "fast");
  // b: a's data directory, promoted: timeline 2 from the end of a's WAL (its shutdown checkpoint).
  expect((await as(["cp", "-a", a.dataDir, b.dataDir])).code).toBe(0);
  db = await up(b, pb, true);
  await q(db, "select pg_promote()");
  await waitFor(async () => (await q(db, "select pg_is_in_recovery() as r"))[0]!.r === false, { timeoutMs: 30_000, what: "b promoted" });
  // a writes on past the switch point on timeline 1 and completes the segment it fell in.
  db = await up(a, pa, false);
  await q(db, "insert into t select generate_series(1, 5000)");
  await q(db, "select pg_switch_wal()");
  await stop(a, "fast");
  const x = historyEnds(readFileSync(join(b.dataDir, "pg_wal", "00000002.history"), "utf8"))!.get(1)!;
  S = timeline1Segment(x);
  const span = segmentSpan(S, SEG_BYTES)!;
  expect(x > span.start && x < span.end).toBe(true); // the switch point lies inside S, not on its boundary
  const prev = span.start - BigInt(SEG_BYTES);
  before = timeline1Segment(prev);
  // The repository: the stanza made against b (running), archiving off (the test pushes by hand).
  const u = await lookupOsUser(PG_OS_USER);
  const repo = join(s.root, "repo");
  const brDir = join(s.root, "br");
  for (const d of [repo, brDir]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, u.uid, u.gid);
  }
  conf = join(brDir, "pgbackrest.conf");
  writeFileSync(conf, `[global]\nrepo1-path=${repo}\nlock-path=${brDir}\nlog-path=${brDir}\nspool-path=${brDir}\nlog-level-file=off\n\n[${STANZA}]\npg1-path=${b.dataDir}\npg1-port=${pb}\npg1-socket-path=${s.socketDir}\npg1-user=postgres\n`, { mode: 0o644 });
  const made = await pgbackrest("stanza-create");
  expect(made.stderr + made.stdout).not.toContain("ERROR");
  expect(made.code).toBe(0);
  await stop(b, "fast");
}, 180_000);

afterAll(async () => {
  for (const d of dbs) await d.close();
  await s?.cleanup();
});

/** Puts `file`'s bytes at b's pg_wal/`name` (b is the node that sees timeline 2's history), owned by the OS user. */
async function place(file: string, name: string): Promise<void> {
  const u = await lookupOsUser(PG_OS_USER);
  const to = join(b.dataDir, "pg_wal", name);
  copyFileSync(file, to);
  chownSync(to, u.uid, u.gid);
}

test("the repository has a follower's copy of S: the old primary's copy is refused by pgBackRest, and wal-push returns done once the node's history says timeline 1 ended inside S", async () => {
  // the follower's copy (timeline 1 up to X, then other bytes) is pushed first, as a standby that followed the promotion pushes it
  const u = await lookupOsUser(PG_OS_USER);
  const follower = join(s.root, "follower");
  mkdirSync(follower);
  // b's own copy of S: renamed S.partial by the promotion when archiving is on; here archiving is off
  const mine = join(b.dataDir, "pg_wal", existsSync(join(b.dataDir, "pg_wal", `${S}.partial`)) ? `${S}.partial` : S);
  copyFileSync(mine, join(follower, S));
  for (const f of [follower, join(follower, S)]) chownSync(f, u.uid, u.gid);
  const seeded = await pgbackrest("archive-push", join(follower, S));
  expect(seeded.code).toBe(0);

  // the old primary's copy of S, WAL after X included, on a node whose history is timeline 2's
  await place(join(a.dataDir, "pg_wal", S), S);
  const hist = join(b.dataDir, "pg_wal", "00000002.history");
  renameSync(hist, `${hist}.away`);
  const refused = await walPush(b.dataDir, S);
  expect(refused.code).not.toBe(0); // without the history file: pushed, and pgBackRest refuses the other copy
  expect(refused.stderr + refused.stdout).toMatch(/different checksum/);
  renameSync(`${hist}.away`, hist);
  const done = await walPush(b.dataDir, S);
  expect(done.stderr).toContain(`${S} runs past the end of its timeline in this node's history and the repository has that segment: done without pushing`);
  expect(done.code).toBe(0);
}, 120_000);

test("a different copy of a segment wholly in the history is still refused: two histories, and the archiver says so", async () => {
  const pushed = await pgbackrest("archive-push", join(a.dataDir, "pg_wal", before));
  expect(pushed.code).toBe(0);
  // the same WAL with one byte changed in its last page (the header stays valid)
  const bytes = readFileSync(join(a.dataDir, "pg_wal", before));
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0xff, bytes.length - 100);
  const other = join(s.root, "other");
  writeFileSync(other, bytes);
  await place(other, before);
  const r = await walPush(b.dataDir, before);
  expect(r.stderr + r.stdout).toMatch(/different checksum/);
  expect(r.code).not.toBe(0);
}, 120_000);
