// A bootstrap from a backup with a recovery target (backup/bootstrap.ts) against real PostgreSQL and
// a real pgBackRest repository: the restore either ends exactly at its target or stops and says why,
// and what it leaves keeps every later round from promoting it past the target (review: the wait
// gave up after a fixed 1,200 s, the next round promoted the server as a standby, which dropped the
// target, and the start after the fence replayed the whole archive).
//
// The repository holds a full backup of a source server, then in the archive: a table, a few
// segments, 100 rows, the target time, 100 more rows. A target past the archive's end: PostgreSQL ends the recovery with
// a FATAL, the marker says so, and the rule refuses to start it again. A restore_command held on the
// segment with the rows: the replay stands still, the wait stops without a promotion, the marker
// makes the rule go on with the restore (never a promotion), and once the segment comes the restore
// ends at its target with exactly the 100 rows. A restore_command that takes 2 s per segment: the
// replay takes longer than the bound a replay may stand still (10 s here, once the whole wait's
// bound), and is waited for to its target. A restore to the end of the archive with the segment with
// the rows unreadable in the repository (archive-get fails with an error, not "not found"): the
// server stops and its log says why, and once the segment can be read the resume replays it all
// (review: PostgreSQL took the failure as the end of the archive and promoted without the rows).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bootstrapFromBackup, type BootstrapHost, resumeRestore } from "../../src/backup/bootstrap.ts";
import { archiveSettings, backrest, backrestPaths, type BackrestPaths } from "../../src/backup/pgbackrest.ts";
import { ensureBackrestConf } from "../../src/backup/wal-settings.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { decideHa, type HaInput } from "../../src/core/ha.ts";
import { memoryLogger } from "../../src/log.ts";
import { initdb, start, type PgNode } from "../../src/postgres/ctl.ts";
import { inspectDataDir, readPostmasterPid } from "../../src/postgres/datadir.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { probe } from "../../src/postgres/probe.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { RestoreMarker } from "../../src/store/restore-marker.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("bootstrap from a backup against real PostgreSQL and pgBackRest", pgSkipReason);

const log = memoryLogger();
const STANZA = "boot";
let s: Scratch;
let repo = "";
/** The time between the two inserts, and the archived segment holding both. */
let target = "";
let rowsSegment = "";
const dbs: Db[] = [];

function cfgFor(name: string, port: number, targetTime: string): Config {
  return parseConfig([
    `cluster = "c"`, `secret = "${"s".repeat(40)}"`, `node_name = "${name}"`, `state_dir = "${join(s.root, `${name}.state`)}"`,
    "[postgres]", `data_dir = "${join(s.root, name)}"`, `os_user = "${PG_OS_USER}"`, `port = ${port}`, `socket_dir = "${s.root}"`,
    // pg_ctl -w gives up after 1 s (the wait goes on), and a replay that stands still for 10 s is reported.
    "start_timeout_s = 1",
    "[backup]", `tool = "pgbackrest"`, `repo_path = "${repo}"`, `stanza = "${STANZA}"`,
    "[bootstrap]", "from_backup = true", `target_time = "${targetTime}"`,
  ].join("\n"), "test");
}

const conf = (p: BackrestPaths, port: number, archive: { archiveCommand: string; restoreCommand: string }) => ({
  listenAddresses: ["127.0.0.1"], port, maxWalSenders: 2, maxReplicationSlots: 2, hotStandby: true as const, walLogHints: true as const, unixSocketDir: s.root,
  archive: { archiveMode: "on" as const, ...archive }, parameters: { fsync: false, shared_buffers: "16MB" },
});
const hba = { superuser: "postgres", replUser: "r", monitorUser: "m", peers: [] };

const q = async (db: Db, text: string): Promise<Record<string, unknown>[]> => [...(await db.query("q", (sql) => sql.unsafe(text)))] as Record<string, unknown>[];

/** The agent's side of a bootstrap for node `name` (the shell's parts a PgHost gives it), with `restoreCommand` when given. */
async function bootstrapHost(name: string, targetTime: string, restoreCommand?: (p: BackrestPaths, restoring: boolean) => string): Promise<{ h: BootstrapHost; db: Db; node: PgNode }> {
  const port = await freePort();
  const cfg = cfgFor(name, port, targetTime);
  const node = s.node(name, log.withTag(name));
  const p = backrestPaths(cfg);
  const db = openLocalDb({ socketDir: s.root, port, superuser: "postgres", log });
  dbs.push(db);
  const marker = new RestoreMarker(cfg.state_dir, cfg.postgres.data_dir);
  const h: BootstrapHost = {
    cfg, socketDir: s.root, node, log: log.withTag(name), marker,
    serverLog: { file: `${node.dataDir}.log` },
    localDb: () => db,
    writeConfig: async (standby) => (await writeManagedConfig({
      dataDir: node.dataDir, osUser: PG_OS_USER, standby, log, keepRecoveryTargets: marker.get() !== null, hba,
      conf: conf(p, port, { archiveCommand: "/bin/true", restoreCommand: restoreCommand ? restoreCommand(p, marker.get() !== null) : `pgbackrest --config=${p.conf} --stanza=${STANZA} archive-get %f "%p"` }),
    })).changed,
    startServer: (t) => start(node, { logFile: `${node.dataDir}.log`, timeoutSec: t ?? cfg.postgres.start_timeout_s }),
    now: () => performance.now(),
    sleep: (ms) => Bun.sleep(ms),
  };
  return { h, db, node };
}

/** The leader's decision for this node as a restarted agent's first round would see it. */
function leaderDecision(h: BootstrapHost, p: { running: boolean; up: boolean; inRecovery: boolean | null }): ReturnType<typeof decideHa> {
  const m = h.marker.get();
  const x: HaInput = {
    witness: false, leading: true, acquiringLease: false, leader: null, clusterSystemId: null, haveSecrets: false, nobodyHasData: true, othersHaveData: false,
    member: true, fromExisting: false, rejoinAuto: true, rejoinRequested: null, paused: false,
    local: { data: "present", systemId: "1", ...p, upstream: null, wasPrimary: true, timeline: 1, stuck: false, restore: m ? { target: m.target, ...(m.failed ? { failed: m.failed } : {}) } : null },
  };
  return decideHa(x);
}

beforeAll(async () => {
  s = await pgScratch("boottarget");
  const u = await lookupOsUser(PG_OS_USER);
  repo = join(s.root, "repo");
  mkdirSync(repo, { mode: 0o750 });
  chownSync(repo, u.uid, u.gid);
  // The source: archiving into the repository, one full backup.
  const port = await freePort();
  const cfg = cfgFor("source", port, "");
  const a = s.node("source", log.withTag("source"));
  const p = await ensureBackrestConf(cfg, s.root, log);
  await initdb(a, { superuser: "postgres", noSync: true });
  await writeManagedConfig({ dataDir: a.dataDir, osUser: PG_OS_USER, standby: false, log, hba, conf: conf(p, port, { archiveCommand: `pgbackrest --config=${p.conf} --stanza=${STANZA} archive-push "%p"`, restoreCommand: "/bin/false" }) });
  await start(a, { logFile: `${a.dataDir}.log`, timeoutSec: 30 });
  const db = openLocalDb({ socketDir: s.root, port, superuser: "postgres", log });
  dbs.push(db);
  const run = { osUser: PG_OS_USER, log, timeoutMs: 120_000 };
  await backrest(p, run, "stanza-create");
  await backrest(p, run, "backup", ["--type=full"]);
  // pgBackRest restores to a time from the newest backup that stopped a whole second before it.
  await Bun.sleep(1100);
  await q(db, "create table pitr (id int primary key)");
  // Segments before the rows' one: a replay that takes each of them slowly takes longer than the wait's bound.
  await q(db, "create table filler (x int)");
  for (let i = 0; i < 5; i++) {
    await q(db, `insert into filler values (${i})`);
    await q(db, "select pg_switch_wal()");
  }
  await q(db, "insert into pitr select generate_series(1, 100)");
  target = String((await q(db, "select clock_timestamp()::text as t"))[0]!.t);
  rowsSegment = String((await q(db, "select pg_walfile_name(pg_current_wal_lsn()) as f"))[0]!.f);
  await Bun.sleep(50); // commits after the target carry a later timestamp than it
  await q(db, "insert into pitr select generate_series(101, 200)");
  await q(db, "select pg_switch_wal()");
  await waitFor(async () => String((await q(db, "select coalesce(last_archived_wal, '') as w from pg_stat_archiver"))[0]!.w) >= rowsSegment, { timeoutMs: 60_000, what: `segment ${rowsSegment} archived` });
  await q(db, "checkpoint");
  await db.close();
}, 180_000);

afterAll(async () => {
  for (const d of dbs) await d.close().catch(() => {});
  await s?.cleanup();
});

test("a target past the archive's end: PostgreSQL ends the recovery short of it; not promoted, the marker says why, and the rule refuses to start it again", async () => {
  // An hour from now: after every commit in the archive.
  const later = `${new Date(Date.now() + 3600_000).toISOString().slice(0, 19).replace("T", " ")}+00`;
  const { h, node } = await bootstrapHost("past-end", later);
  const err = await bootstrapFromBackup(h).then(() => null, (e: Error) => e);
  console.log(`bootstrap to ${later}: ${err?.message}`);
  expect(err?.message).toMatch(/ended the recovery before its target .*recovery ended before configured recovery target was reached/);
  expect(h.marker.get()).toMatchObject({ target: `to ${later}`, failed: expect.stringContaining("recovery ended before configured recovery target was reached") });
  // Stopped, never promoted; its files still hold the target (a start without it would replay to the end and promote).
  expect((await readPostmasterPid(node.dataDir))?.alive ?? false).toBe(false);
  expect((await inspectDataDir(node.dataDir, node)).control?.state).not.toBe("in production");
  expect(readFileSync(join(node.dataDir, "postgresql.auto.conf"), "utf8")).toContain(`recovery_target_time = '${later}'`);
  const d = leaderDecision(h, { running: false, up: false, inRecovery: null });
  expect(d).toEqual({ kind: "refuse", reason: expect.stringContaining("recovery ended before configured recovery target was reached") });
}, 120_000);

test("a replay that stands still: the wait stops without a promotion; the marker keeps the next round from promoting; once the WAL comes the restore ends exactly at its target", async () => {
  const held = join(s.root, "hold-restore");
  writeFileSync(held, "");
  const script = join(s.root, "restore-held.sh");
  // The segment with the rows is held while the file exists: the replay waits at the end of the one before it.
  writeFileSync(script, `#!/bin/sh\nwhile [ -e ${held} ] && [ "$1" = "${rowsSegment}" ]; do sleep 0.1; done\nexec pgbackrest --config="$3" --stanza=${STANZA} archive-get "$1" "$2"\n`, { mode: 0o755 });
  const { h, db, node } = await bootstrapHost("held", target, (p) => `${script} %f "%p" ${p.conf}`);
  const t0 = performance.now();
  const err = await bootstrapFromBackup(h).then(() => null, (e: Error) => e);
  console.log(`bootstrap with the segment held: ${err?.message} (after ${Math.round((performance.now() - t0) / 1000)} s)`);
  expect(err?.message).toMatch(/the replay has stood at .* for 10 s.*not promoted/);
  expect(h.marker.get()).toMatchObject({ target: `to ${target}` });
  expect(h.marker.get()?.failed).toBeUndefined();
  const pr = await probe(db);
  expect(pr.up && pr.inRecovery).toBe(true);
  // What an agent restarted now decides: the restore goes on; before this change, a promotion.
  expect(leaderDecision(h, { running: true, up: true, inRecovery: true })).toEqual({ kind: "resume-restore" });
  // The WAL comes: the restore goes on and ends at its target, with the rows committed before it only.
  rmSync(held);
  await resumeRestore(h, h.marker.get()!.target);
  const [r] = await q(db, "select pg_is_in_recovery() as rec, count(*)::int as n, min(id) as lo, max(id) as hi from pitr");
  expect(r).toEqual({ rec: false, n: 100, lo: 1, hi: 100 });
  expect(readFileSync(join(node.dataDir, "postgresql.auto.conf"), "utf8")).not.toContain("recovery_target");
  expect(existsSync(join(node.dataDir, "recovery.signal"))).toBe(false);
}, 180_000);

test("a replay slower than the bound it may stand still for, but advancing: waited for to its target, exactly", async () => {
  const script = join(s.root, "restore-slow.sh");
  writeFileSync(script, `#!/bin/sh\ncase "$1" in *.history) ;; *) sleep 2 ;; esac\nexec pgbackrest --config="$3" --stanza=${STANZA} archive-get "$1" "$2"\n`, { mode: 0o755 });
  const { h, db } = await bootstrapHost("slow", target, (p) => `${script} %f "%p" ${p.conf}`);
  const t0 = performance.now();
  await bootstrapFromBackup(h);
  const took = Math.round((performance.now() - t0) / 1000);
  console.log(`bootstrap with 2 s per segment: promoted at its target after ${took} s`);
  expect(took).toBeGreaterThan(10);
  const [r] = await q(db, "select pg_is_in_recovery() as rec, count(*)::int as n, min(id) as lo, max(id) as hi from pitr");
  expect(r).toEqual({ rec: false, n: 100, lo: 1, hi: 100 });
}, 180_000);

test("a restore to the end of the archive while archive-get fails with an error (a segment unreadable in the repository): the server stops, says why, and once the repository answers replays the whole archive", async () => {
  // The segment with the rows, unreadable to the PostgreSQL user: archive-get finds it and cannot
  // read it, an error, not "not in the archive". Before the fix PostgreSQL took that as the end of
  // the archive and promoted itself there, without the rows.
  const segDir = join(repo, "archive", STANZA, readdirSync(join(repo, "archive", STANZA)).find((d) => /^\d+-\d+$/.test(d))!, rowsSegment.slice(0, 16));
  const seg = join(segDir, readdirSync(segDir).find((f) => f.startsWith(rowsSegment))!);
  chmodSync(seg, 0o000);
  // restore_command as the agent writes it (host.ts writeConfig: archiveSettings, restoring while the marker is set).
  const { h, db, node } = await bootstrapHost("unreadable", "", (p, restoring) => archiveSettings(p, ["/bin/true"], { host: false, path: repo }, restoring).restoreCommand);
  try {
    const err = await bootstrapFromBackup(h).then(() => null, (e: Error) => e);
    console.log(`bootstrap with ${rowsSegment} unreadable: ${err?.message}`);
    expect(err).not.toBeNull();
    await waitFor(async () => !((await readPostmasterPid(node.dataDir))?.alive ?? false), { timeoutMs: 30_000, what: "the server stopped" });
    expect((await inspectDataDir(node.dataDir, node)).control?.state).not.toBe("in production");
    const serverLog = readFileSync(`${node.dataDir}.log`, "utf8");
    expect(serverLog).toContain(`pgherd: archive-get ${rowsSegment} failed with exit code`);
    expect(serverLog).toContain(`could not restore file "${rowsSegment}" from archive: child process exited with exit code 200`);
    expect(h.marker.get()).toMatchObject({ target: "to the end of the archive" });
    expect(h.marker.get()?.failed).toBeUndefined();
  } finally {
    chmodSync(seg, 0o640);
  }
  // The repository answers again: the next round's resume replays the rest of the archive.
  await resumeRestore(h, h.marker.get()!.target);
  const [r] = await q(db, "select pg_is_in_recovery() as rec, count(*)::int as n, min(id) as lo, max(id) as hi from pitr");
  expect(r).toEqual({ rec: false, n: 200, lo: 1, hi: 200 });
}, 180_000);
