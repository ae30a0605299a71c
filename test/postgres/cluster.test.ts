// The controller against real PostgreSQL: initdb → managed config → start/adopt → probe →
// roles + pg_hba (scram login allowed, others refused) → slot + pg_basebackup → streaming
// standby → promotion; plus port-in-use, foreign system identifier and stale pid file.
// One scratch dir, servers on free loopback ports, everything removed afterwards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { chmodSync, chownSync, copyFileSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { basebackup, BasebackupError } from "../../src/postgres/basebackup.ts";
import { initdb, PgCtlError, reload, restart, start, status, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { fixDataDirOwnership, inspectDataDir, pidAlive, readPostmasterPid } from "../../src/postgres/datadir.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { generatePassword, writePassfile } from "../../src/postgres/passwords.ts";
import { buildConninfo } from "../../src/postgres/pgconf.ts";
import { pendingRestart, probe, type ProbeUp } from "../../src/postgres/probe.ts";
import { promote } from "../../src/postgres/promote.ts";
import { ensureRoles, scramVerifier } from "../../src/postgres/roles.ts";
import { ensureSlot, listSlots } from "../../src/postgres/slots.ts";
import { DbTimeoutError, openDb, openLocalDb, sqlState, type Db } from "../../src/postgres/sql.ts";
import { Maintenance } from "../../src/agent/pg/durability.ts";
import { ExclusionKeeper } from "../../src/agent/pg/sync-exclusion.ts";
import { slotFor } from "../../src/agent/pg/context.ts";
import { syncStandbyNames } from "../../src/core/durability.ts";
import { replayHeld, restoring } from "../../src/core/catch-up.ts";
import { SlotKeeper } from "../../src/agent/pg/slots.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { PrimaryStarter } from "../../src/agent/pg/primary.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { uidOf } from "../../src/postgres/orphans.ts";
import { lsnDiff } from "../../src/postgres/lsn.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";
import { waitFor } from "../helpers/proc.ts";
import { PostmasterWatch } from "../../src/agent/pg/postmaster-watch.ts";
import { readSettings } from "../../src/agent/pg/restart-node.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { realClock } from "../../src/fence/clock.ts";
import { freshCheck, fsRoom } from "../../src/postgres/liveness-obs.ts";
import { roomRefusal } from "../../src/core/clone-room.ts";
import { mustRun } from "../helpers/proc.ts";
import { LocalSession } from "../../src/postgres/local-session.ts";

const SU = "postgres";
const REPL = "pgherd_repl";
const MON = "pgherd_mon";
const replPassword = generatePassword();
const monPassword = generatePassword();
const log = memoryLogger();

let s: Scratch;
let primary: PgNode;
let standby: PgNode;
let other: PgNode;
let ports: { p: number; s: number; o: number };
const dbs: Db[] = [];
let pdb: Db;

const local = (port: number) => {
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: SU, log });
  dbs.push(db);
  return db;
};
const tcp = (port: number, user: string, password: string, database = "postgres") => {
  const db = openDb({ host: "127.0.0.1", port, user, password, database, log, connectTimeoutSec: 5 });
  dbs.push(db);
  return db;
};
const managed = (n: PgNode, port: number, peers: string[], extra: Partial<ManagedConfig> = {}): ManagedConfig => ({
  dataDir: n.dataDir, osUser: PG_OS_USER, standby: false, log,
  conf: {
    listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true,
    unixSocketDir: s.socketDir, parameters: {
      fsync: false, shared_buffers: "16MB", "pgherd.quoting": "it's a \\ test",
      checkpoint_timeout: "1h", // spreads the post-promotion checkpoint: its TimeLineID lags (see the promote test)
    },
  },
  hba: { superuser: SU, replUser: REPL, monitorUser: MON, peers },
  ...extra,
});
const up = async (db: Db): Promise<ProbeUp> => {
  const p = await probe(db);
  if (!p.up) throw new Error(`probe failed: ${p.error}`);
  return p;
};
const logFile = (n: PgNode) => `${n.dataDir}.log`;
/** Back to no synchronous standby on the primary, for the tests that follow. */
const noNamesAgain = async (db: Db) => {
  await writeManagedConfig(managed(primary, ports.p, []));
  await reload(primary);
  await waitFor(async () => (await up(db)).syncNames === "", { timeoutMs: 10_000, what: "synchronous_standby_names '' again" });
};

requireReal("PostgreSQL controller tests", pgSkipReason);

describe("PostgreSQL controller on real servers", () => {
  beforeAll(async () => {
    s = await pgScratch("ctl");
    primary = s.node("primary", log.withTag("primary"));
    standby = s.node("standby", log.withTag("standby"));
    other = s.node("other", log.withTag("other"));
    const p = await freePort();
    const sp = await freePort([p]);
    ports = { p, s: sp, o: await freePort([p, sp]) };
  });

  afterAll(async () => {
    if (process.env.PG_TEST_DUMP) console.log(log.lines.join("\n"));
    for (const db of dbs) await db.close();
    await s?.cleanup();
  });

  test("initdb creates a checksummed cluster whose pg_hba allows nothing yet", async () => {
    await initdb(primary, { superuser: SU, noSync: true });
    const info = await inspectDataDir(primary.dataDir, primary);
    expect(info).toMatchObject({ exists: true, empty: false, pgVersion: primary.bins.version, running: false, postmaster: null });
    expect(info.control).toMatchObject({ state: "shut down", timeline: 1, checksums: true });
    const hba = await readFile(join(primary.dataDir, "pg_hba.conf"), "utf8");
    expect(hba.split("\n").filter((l) => l.trim() && !l.startsWith("#"))).toEqual([]);
    const st = await stat(primary.dataDir);
    const pg = await lookupOsUser(PG_OS_USER);
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: pg.uid, mode: 0o700 });
    await expect(initdb(primary, { superuser: SU })).rejects.toMatchObject({ kind: "not-empty" });
  }, 60_000);

  test("start with pgherd.conf; a running server is detected through postmaster.pid (adopt, not restart)", async () => {
    const res = await writeManagedConfig(managed(primary, ports.p, ["127.0.0.2"]));
    expect(res.changed.sort()).toEqual(["pg_hba.conf", "pg_ident.conf", "pgherd.conf", "postgresql.conf"]);
    const conf = await stat(join(primary.dataDir, "pgherd.conf"));
    expect(conf.mode & 0o777).toBe(0o600);
    expect((await writeManagedConfig(managed(primary, ports.p, ["127.0.0.2"]))).changed).toEqual([]);

    await start(primary, { logFile: logFile(primary), timeoutSec: 30 });
    const info = await inspectDataDir(primary.dataDir, primary);
    expect(info.running).toBe(true);
    expect(info.postmaster).toMatchObject({ port: ports.p, dataDir: primary.dataDir, alive: true, servesThisDir: true });
    expect(info.control?.state).toBe("in production");
    expect((await status(primary)).pid).toBe(info.postmaster!.pid);
    const again = await start(primary, { logFile: logFile(primary) }).catch((e) => e);
    expect(again).toBeInstanceOf(PgCtlError);
    expect(again.kind).toBe("already-running");
    expect(again.message).toContain(`pid ${info.postmaster!.pid}`);
  }, 60_000);

  test("probe on a primary", async () => {
    pdb = local(ports.p);
    const p = await up(pdb);
    const info = await inspectDataDir(primary.dataDir, primary);
    expect(p).toMatchObject({ inRecovery: false, timeline: 1, receiveLsn: null, walReceiver: null, replication: [] });
    expect(p.systemIdentifier).toBe(info.control!.systemIdentifier);
    expect(Math.floor(p.serverVersion / 10000)).toBe(primary.bins.version);
    expect(p.currentLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    // synchronous_standby_names in force, which the round's upkeep compares with its plan.
    expect(p.syncNames).toBe("");
    await pdb.query("t", (sql) => sql`ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (x)'`);
    await pdb.query("t", (sql) => sql`SELECT pg_reload_conf()`);
    try {
      await waitFor(async () => (await up(pdb)).syncNames === "ANY 1 (x)", { timeoutMs: 10_000, what: "the reloaded synchronous_standby_names in the probe" });
    } finally {
      await pdb.query("t", (sql) => sql`ALTER SYSTEM RESET synchronous_standby_names`);
      await pdb.query("t", (sql) => sql`SELECT pg_reload_conf()`);
    }
    await waitFor(async () => (await up(pdb)).syncNames === "", { timeoutMs: 10_000, what: "synchronous_standby_names reset" });
    // The server's slots (a standby's copies of the permanent ones are read from here).
    await pdb.query("t", (sql) => sql`SELECT pg_create_physical_replication_slot('probe_x')`);
    try {
      expect((await up(pdb)).slots).toContainEqual({ name: "probe_x", type: "physical" });
    } finally {
      await pdb.query("t", (sql) => sql`SELECT pg_drop_replication_slot('probe_x')`);
    }
    expect((await up(pdb)).slots.map((x) => x.name)).not.toContain("probe_x");
    const [q] = await pdb.query("t", (sql) => sql`SELECT current_setting('pgherd.quoting') AS v`);
    expect(q?.v).toBe("it's a \\ test"); // conf-file quoting survives the server's parser
    const closed = await probe(local(ports.o)); // nothing listens there
    expect(closed.up).toBe(false);
  });

  test("the fresh-connection check runs on a one-shot session of its own: SELECT 1, the heartbeat commit, the server's errors", async () => {
    const o = { socketDir: s.socketDir, port: ports.p, superuser: SU };
    const xid = async () => Number((await pdb.query("t", (sql) => sql`SELECT txid_current()::text AS x`))[0]!.x);
    const before = await xid();
    const steps: string[] = [];
    const fc = await freshCheck(o, true, 5000, (st) => steps.push(Object.keys(st).join()));
    expect(fc).toMatchObject({ fresh: { kind: "ok" }, write: { kind: "ok" } });
    expect(steps).toEqual(["fresh", "write"]);
    expect(await xid()).toBeGreaterThan(before + 1); // the heartbeat commit took a transaction id of its own
    // The startup settings are in force: the agent's commit never waits for a synchronous standby.
    const session = await LocalSession.open({ socketDir: s.socketDir, port: ports.p, user: SU, settings: { application_name: "pgherd", synchronous_commit: "local" } });
    try {
      await session.query("DO $$ BEGIN IF current_setting('synchronous_commit') <> 'local' OR current_setting('application_name') <> 'pgherd' THEN RAISE EXCEPTION 'startup settings not applied'; END IF; END $$");
      // A server error carries its SQLSTATE (an answer, not a timeout); the session goes on after it.
      await expect(session.query("SELECT 1/0")).rejects.toMatchObject({ name: "ServerError", code: "22012", message: "division by zero" });
      await session.query("SELECT 1");
    } finally {
      session.close();
    }
    await expect(session.query("SELECT 1")).rejects.toMatchObject({ name: "SessionError" });
    // A FATAL error at the startup is the server's answer too.
    await expect(LocalSession.open({ socketDir: s.socketDir, port: ports.p, user: SU, database: "no_such_db" })).rejects.toMatchObject({ name: "ServerError", code: "3D000" });
    // Nothing listening: no answer, no SQLSTATE (a refused connection is never a server error).
    const none = await freshCheck({ ...o, port: ports.o }, true, 5000);
    expect(none.fresh.kind).toBe("timeout");
    expect(none.write).toBeNull();
  });

  test("SCRAM verifiers computed here match the server's algorithm", async () => {
    // Let the server hash a password itself, then recompute with its salt and iteration count.
    await pdb.query("t", (sql) => sql.unsafe("CREATE ROLE scram_probe PASSWORD 'correct horse: battery'"));
    const [row] = await pdb.query("t", (sql) => sql`SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_probe'`);
    const stored = String(row?.rolpassword);
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(stored);
    expect(m).not.toBeNull();
    expect(scramVerifier("correct horse: battery", { iterations: Number(m![1]), salt: Buffer.from(m![2]!, "base64") })).toBe(stored);
    expect(scramVerifier("other", { iterations: Number(m![1]), salt: Buffer.from(m![2]!, "base64") })).not.toBe(stored);
  });

  test("roles log in with scram over TCP only where the managed pg_hba block allows", async () => {
    await ensureRoles(pdb, { replUser: REPL, replPassword, monitorUser: MON, monitorPassword: monPassword }, log);
    await ensureRoles(pdb, { replUser: REPL, replPassword, monitorUser: MON, monitorPassword: monPassword }, log); // idempotent
    const roles = await pdb.query("t", (sql) => sql`SELECT rolname, rolreplication, rolpassword FROM pg_authid WHERE rolname IN (${REPL}, ${MON}) ORDER BY rolname`);
    expect(roles.map((r) => [r.rolname, r.rolreplication, String(r.rolpassword).startsWith("SCRAM-SHA-256$4096:")])).toEqual([
      [MON, false, true], [REPL, true, true],
    ]);
    expect(log.lines.join("\n")).not.toContain(replPassword);

    // Block allows only 127.0.0.2: our 127.0.0.1 connection is refused by pg_hba.
    const refused = await tcp(ports.p, MON, monPassword).query("t", (sql) => sql`SELECT 1`).catch((e) => e);
    expect(sqlState(refused)).toBe("28000");
    expect(refused.message).toContain("no pg_hba.conf entry");

    await writeManagedConfig(managed(primary, ports.p, ["127.0.0.1"]));
    await reload(primary);
    const mon = tcp(ports.p, MON, monPassword);
    await waitFor(async () => (await mon.query("t", (sql) => sql`SELECT current_user AS u`))[0]?.u === MON, { timeoutMs: 10_000, what: "monitor login after reload" });
    const [auth] = await mon.query("t", (sql) => sql`SELECT pg_has_role(${MON}, 'pg_monitor', 'member') AS m`);
    expect(auth?.m).toBe(true);
    const [asRepl] = await tcp(ports.p, REPL, replPassword).query("t", (sql) => sql`SELECT current_user AS u`);
    expect(asRepl?.u).toBe(REPL);

    const badPw = await tcp(ports.p, MON, "wrong").query("t", (sql) => sql`SELECT 1`).catch((e) => e);
    expect(sqlState(badPw)).toBe("28P01");
    // A role with a valid password but outside the block (the server's own scram_probe role).
    const outsider = await tcp(ports.p, "scram_probe", "correct horse: battery").query("t", (sql) => sql`SELECT 1`).catch((e) => e);
    expect(sqlState(outsider)).toBe("28000");
    // The replication user may reach "postgres" (pg_rewind) but no other database.
    const otherDb = await tcp(ports.p, REPL, replPassword, "template1").query("t", (sql) => sql`SELECT 1`).catch((e) => e);
    expect(sqlState(otherDb)).toBe("28000");
  }, 30_000);

  test("a standby cloned with pg_basebackup through a slot streams from the primary", async () => {
    expect(await ensureSlot(pdb, "standby1")).toBe(true);
    expect(await ensureSlot(pdb, "standby1")).toBe(false);
    const [slot] = await listSlots(pdb);
    expect(slot).toMatchObject({ name: "standby1", active: false, walStatus: "reserved" });
    expect(slot!.retainedBytes).toBeGreaterThanOrEqual(0);

    const pg = await lookupOsUser(PG_OS_USER);
    const passfile = join(s.root, "pgpass");
    await writePassfile(passfile, [{ host: "127.0.0.1", port: ports.p, database: "*", user: REPL, password: replPassword }], pg);
    const progress: number[] = [];
    const estimates: number[] = [];
    await basebackup({
      bins: standby.bins, osUser: PG_OS_USER, log: standby.log, host: "127.0.0.1", port: ports.p, user: REPL, passfile,
      target: standby.dataDir, slot: "standby1", timeoutMs: 60_000, noSync: true, onProgress: (p) => progress.push(p.percent),
      room: (estimate) => (estimates.push(estimate), null),
    });
    expect(progress.at(-1)).toBe(100);
    // Asked once, with pg_basebackup's estimate: at least the primary's databases.
    const sized = await pdb.query("t", (sql) => sql`SELECT sum(pg_database_size(oid))::float8 AS size FROM pg_database`);
    expect(estimates).toHaveLength(1);
    expect(estimates[0]!).toBeGreaterThanOrEqual(Number(sized[0]?.size));
    expect((await stat(standby.dataDir)).uid).toBe(pg.uid);
    expect(log.lines.join("\n")).not.toContain(replPassword);

    const conninfo = buildConninfo({ host: "127.0.0.1", port: ports.p, user: REPL, passfile, applicationName: "standby1" });
    const cfg = managed(standby, ports.s, ["127.0.0.1"], { standby: true });
    cfg.conf = { ...cfg.conf, primaryConninfo: conninfo, primarySlotName: "standby1" };
    expect((await writeManagedConfig(cfg)).changed).toContain("standby.signal");
    expect(await readFile(join(standby.dataDir, "pgherd.conf"), "utf8")).not.toContain(replPassword);
    await start(standby, { logFile: logFile(standby), timeoutSec: 30 });

    const sdb = local(ports.s);
    const sp = await waitFor(async () => {
      const p = await up(sdb);
      return p.walReceiver?.status === "streaming" && p;
    }, { timeoutMs: 20_000, what: "standby wal receiver streaming" });
    expect(sp).toMatchObject({ inRecovery: true, timeline: 1, currentLsn: null });
    expect(sp.walReceiver).toMatchObject({ senderHost: "127.0.0.1", senderPort: ports.p, slotName: "standby1", receivedTli: 1 });
    const info = await inspectDataDir(standby.dataDir, standby);
    expect(info.control?.systemIdentifier).toBe((await up(pdb)).systemIdentifier);
    expect(info.control?.state).toBe("in archive recovery");

    const row = await waitFor(async () => (await up(pdb)).replication.find((r) => r.applicationName === "standby1" && r.state === "streaming" && r.replayLsn !== null), {
      timeoutMs: 10_000, what: "pg_stat_replication row for standby1",
    });
    expect(row.clientAddr).toBe("127.0.0.1");
    expect(row.lagBytes).toBeGreaterThanOrEqual(0);
    expect((await listSlots(pdb))[0]?.active).toBe(true);

    await pdb.query("t", (sql) => sql`CREATE TABLE t (v text)`);
    await pdb.query("t", (sql) => sql`INSERT INTO t VALUES ('written on primary')`);
    await waitFor(async () => {
      const r = await sdb.query("t", (sql) => sql`SELECT v FROM t`).catch(() => []);
      return r[0]?.v === "written on primary";
    }, { timeoutMs: 10_000, what: "row replicated to the standby" });

    // Dirty buffers on the standby, so the checkpoint after promotion has work to spread out.
    await pdb.query("t", (sql) => sql`CREATE TABLE bulk AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 5000) g`);
    const target = (await up(pdb)).currentLsn!;
    await waitFor(async () => {
      const r = (await up(sdb)).replayLsn;
      return r !== null && lsnDiff(r, target) >= 0n;
    }, { timeoutMs: 15_000, what: "standby replay to catch up" });

    // What the standby's startup process waits for (core/catch-up.ts replayHeld): WAL, then a pause
    // with WAL to replay, which holds its replay on purpose; a primary has no startup process.
    expect((await up(pdb)).startupWait).toBeNull();
    expect(replayHeld((await up(sdb)).startupWait)).toBe(false);
    await sdb.query("t", (sql) => sql`SELECT pg_wal_replay_pause()`);
    try {
      await pdb.query("t", (sql) => sql`INSERT INTO t VALUES ('while paused')`);
      const paused = await waitFor(async () => {
        const w = (await up(sdb)).startupWait;
        return w === "IPC:RecoveryPause" && w;
      }, { timeoutMs: 10_000, what: "the startup process to wait in RecoveryPause" });
      expect(replayHeld(paused)).toBe(true);
    } finally {
      await sdb.query("t", (sql) => sql`SELECT pg_wal_replay_resume()`);
    }
    await waitFor(async () => (await sdb.query("t", (sql) => sql`SELECT 1 FROM t WHERE v = 'while paused'`)).length === 1, { timeoutMs: 10_000, what: "replay to resume" });

    // A restore_command call in progress (core/catch-up.ts restoring: it holds the stuck clock, for
    // up to RESTORE_MS): the standby cut from its stream fetches from an "archive" whose calls take 8 s
    // and fail (restore_command is reloadable from PostgreSQL 14, the wait event exists from 15).
    const major = Math.floor((await up(sdb)).serverVersion / 10000);
    if (major >= 15) {
      await sdb.query("t", (sql) => sql`ALTER SYSTEM SET restore_command = 'sleep 8; exit 1'`);
      await sdb.query("t", (sql) => sql`ALTER SYSTEM SET primary_conninfo = ''`);
      await sdb.query("t", (sql) => sql`SELECT pg_reload_conf()`);
      try {
        await pdb.query("t", (sql) => sql`INSERT INTO t VALUES ('while restoring')`);
        const w = await waitFor(async () => {
          const p = await up(sdb);
          return p.startupWait === "IPC:RestoreCommand" && p.walReceiver === null && p;
        }, { timeoutMs: 20_000, what: "the startup process to wait in RestoreCommand" });
        expect(restoring(w.startupWait)).toBe(true);
        expect(replayHeld(w.startupWait)).toBe(false);
      } finally {
        await sdb.query("t", (sql) => sql`ALTER SYSTEM RESET restore_command`);
        await sdb.query("t", (sql) => sql`ALTER SYSTEM RESET primary_conninfo`);
        await sdb.query("t", (sql) => sql`SELECT pg_reload_conf()`);
      }
      // The running call ends when it ends (PostgreSQL waits for it), then the stream resumes.
      await waitFor(async () => (await sdb.query("t", (sql) => sql`SELECT 1 FROM t WHERE v = 'while restoring'`)).length === 1, { timeoutMs: 60_000, what: "streaming to resume after the restore" });
    }

    // The heartbeat commit on a server in recovery fails with the server's own error: an answer
    // (SQLSTATE 0A000, not a resource class), never taken for a server that cannot write.
    const fc = await freshCheck({ socketDir: s.socketDir, port: ports.s, superuser: SU }, true, 5000);
    expect(fc.fresh.kind).toBe("ok");
    expect(fc.write).toMatchObject({ kind: "error", sqlstate: "0A000" });
  }, 150_000);

  test("a failed clone removes its partial target and reports pg_basebackup's reason", async () => {
    const target = join(s.root, "failed-clone");
    const e = await basebackup({
      bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, passfile: join(s.root, "pgpass"),
      target, slot: "no_such_slot", timeoutMs: 30_000,
    }).catch((x) => x);
    expect(e).toBeInstanceOf(BasebackupError);
    expect(e.message).toContain("no_such_slot");
    await expect(stat(target)).rejects.toMatchObject({ code: "ENOENT" });
    expect(log.lines.join("\n")).not.toContain(replPassword);
    const notEmpty = await basebackup({
      bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, target: standby.dataDir, timeoutMs: 5000,
    }).catch((x) => x);
    expect(notEmpty.message).toContain("is not empty");
    expect((await inspectDataDir(standby.dataDir, standby)).running).toBe(true); // untouched
  }, 60_000);

  test("a clone with no room on its file system stops at pg_basebackup's estimate, in its first second, and leaves nothing behind", async () => {
    // A 64 MB file system for a primary of ~30 MB: the copy and its first WAL segment would fit, not
    // with the WAL slack and the free share that must remain (core/clone-room.ts).
    const small = join(s.root, "small-fs");
    await mustRun(["mkdir", "-p", small]);
    await mustRun(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "pgherd-ctl-small", small]);
    try {
      const before = fsRoom(small);
      const progress: number[] = [];
      let written = -1;
      // At 2 MB/s (a copy over a slow link) the copy would take ~15 s: the check comes after about a
      // second of it, beside the 16 MB WAL segment the WAL stream (-X stream) creates at once.
      const e = await basebackup({
        bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, passfile: join(s.root, "pgpass"),
        target: join(small, "clone"), timeoutMs: 60_000, noSync: true, maxRateKbPerSec: 2048, onProgress: (p) => progress.push(p.percent),
        room: (estimate) => {
          const now = fsRoom(small);
          written = before.availBytes - now.availBytes;
          return roomRefusal(estimate, before, small, "the primary")?.text ?? null;
        },
      }).catch((x) => x);
      expect(e).toBeInstanceOf(BasebackupError);
      console.log(e.message);
      expect(e.noRoom).toBe(true);
      expect(e.message).toMatch(/^no room for a clone of the primary \(\d+\.\d MB\): it needs \d+\.\d MB free on the file system of .*small-fs .*, which has 64\.0 MB of 64\.0 MB; the clone is not made/);
      expect(progress).toEqual([]);
      console.log(`written when the estimate arrived: ${(written / 2 ** 20).toFixed(1)} MB`);
      expect(written).toBeGreaterThanOrEqual(0);
      expect(written).toBeLessThan(22 * 2 ** 20);
      await expect(stat(join(small, "clone"))).rejects.toMatchObject({ code: "ENOENT" });
      // Everything the stopped copy wrote is gone once its processes are (the WAL streamer is killed with it).
      await waitFor(() => fsRoom(small).availBytes === before.availBytes, { timeoutMs: 5000, what: "the stopped copy's space back" });
      expect(log.lines.some((l) => l.includes("pg_basebackup killed by SIGTERM"))).toBe(true);
    } finally {
      await mustRun(["umount", small]);
    }
  }, 60_000);

  test("a clone that makes no progress (the source's walsender stopped) is stopped after stallMs and leaves nothing behind", async () => {
    const target = join(s.root, "stalled-clone");
    const stopped: number[] = [];
    let stoppedAt = 0;
    try {
      const e = await basebackup({
        bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, passfile: join(s.root, "pgpass"),
        target, timeoutMs: 120_000, noSync: true, maxRateKbPerSec: 1024, stallMs: 2000,
        onProgress: () => {
          if (stoppedAt) return;
          stoppedAt = performance.now();
          // The walsender that sends the files (its command is BASE_BACKUP), frozen as a hung source would be.
          void pdb.query("t", (sql) => sql`SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND query LIKE 'BASE_BACKUP%'`).then((rows) => {
            for (const r of rows) {
              process.kill(Number(r.pid), "SIGSTOP");
              stopped.push(Number(r.pid));
            }
          });
        },
      }).catch((x) => x);
      const ms = performance.now() - stoppedAt;
      console.log(`${e.message} (${Math.round(ms)} ms after the walsender was stopped)`);
      expect(stopped.length).toBe(1);
      expect(e).toBeInstanceOf(BasebackupError);
      expect(e.message).toMatch(/^pg_basebackup from 127\.0\.0\.1:\d+ made no progress for 2 s: stopped/);
      expect(ms).toBeGreaterThanOrEqual(2000);
      expect(ms).toBeLessThan(10_000);
      await expect(stat(target)).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      for (const pid of stopped) process.kill(pid, "SIGCONT");
    }
  }, 60_000);

  test("promoting the standby moves it to timeline 2", async () => {
    const sdb = local(ports.s);
    expect(await promote(sdb, standby, 30)).toBe("promoted");
    const p = await up(sdb);
    expect(p.inRecovery).toBe(false);
    expect(p.timeline).toBe(2);
    // The checkpoint that records TLI 2 in pg_control is still running (spread over checkpoint_timeout):
    // a probe reading pg_control_checkpoint() would still say 1 here.
    const [c] = await sdb.query("t", (sql) => sql`SELECT timeline_id FROM pg_control_checkpoint()`);
    expect(c?.timeline_id).toBe(1);
    expect(p.walReceiver).toBeNull();
    expect(await promote(sdb, standby, 30)).toBe("not-in-recovery");
    await sdb.query("t", (sql) => sql`INSERT INTO t VALUES ('written after promotion')`);
  }, 60_000);

  test("a cluster from another initdb has a different system identifier", async () => {
    await initdb(other, { superuser: SU, noSync: true });
    const [o, p] = await Promise.all([inspectDataDir(other.dataDir, other), inspectDataDir(primary.dataDir, primary)]);
    expect(o.control!.systemIdentifier).not.toBe(p.control!.systemIdentifier);
  }, 60_000);

  test("start on a port that is already taken fails with an error saying so", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r, j) => blocker.once("error", j).listen(ports.o, "127.0.0.1", () => r()));
    try {
      await writeManagedConfig(managed(other, ports.o, ["127.0.0.1"]));
      const e = await start(other, { logFile: logFile(other), timeoutSec: 20 }).catch((x) => x);
      expect(e).toBeInstanceOf(PgCtlError);
      expect(e.kind).toBe("port-in-use");
      expect(e.message).toContain(`port ${ports.o} is already in use`);
      expect((await inspectDataDir(other.dataDir, other)).running).toBe(false);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  }, 60_000);

  test("the same with the log collector on: the reason is read from the collector's file once the syslogger wrote it", async () => {
    // PostgreSQL redirects its output before it binds: the -l file says only "redirecting log output".
    const collector = `${other.dataDir}.collector`;
    const u = await lookupOsUser(PG_OS_USER);
    await mkdir(collector, { recursive: true, mode: 0o700 });
    await chown(collector, u.uid, u.gid);
    // The file of the day holds earlier runs' lines: they must not be taken for this start's reason.
    const day = join(collector, "pg.log");
    await writeFile(day, 'LOG:  database system is shut down\nFATAL:  lock file "postmaster.pid" already exists\n', { mode: 0o600 });
    await chown(day, u.uid, u.gid);
    const blocker: Server = createServer();
    await new Promise<void>((r, j) => blocker.once("error", j).listen(ports.o, "127.0.0.1", () => r()));
    const cfg = managed(other, ports.o, ["127.0.0.1"]);
    try {
      await writeManagedConfig({ ...cfg, conf: { ...cfg.conf, parameters: { ...cfg.conf.parameters, logging_collector: true, log_directory: collector, log_filename: "pg.log" } } });
      for (let i = 0; i < 3; i++) {
        const e = await start(other, { logFile: logFile(other), collectorDir: collector, timeoutSec: 20 }).catch((x) => x);
        expect(e).toBeInstanceOf(PgCtlError);
        expect(e.message).toContain(`port ${ports.o} is already in use`);
        expect(e.kind).toBe("port-in-use");
        expect(e.detail).not.toContain("lock file"); // only what this start wrote
      }
      expect(await readFile(logFile(other), "utf8")).toContain("redirecting log output to logging collector");
    } finally {
      await new Promise((r) => blocker.close(r));
      await writeManagedConfig(cfg);
    }
  }, 60_000);

  test("a reload reports settings that need a restart; restart applies them", async () => {
    const cfg = managed(primary, ports.p, ["127.0.0.1"]);
    cfg.conf = { ...cfg.conf, maxWalSenders: 7 };
    expect((await writeManagedConfig(cfg)).changed).toEqual(["pgherd.conf"]);
    await reload(primary);
    await waitFor(async () => (await pendingRestart(pdb)).includes("max_wal_senders"), { timeoutMs: 10_000, what: "pending_restart" });
    // The monitoring round's one query (restart-node.ts) says the same, with the ordered setting's next value.
    const host = { localDb: () => pdb, node: primary } as unknown as PgHost;
    const before = await readSettings(host, false);
    expect(before.pending).toContain("max_wal_senders");
    expect(before.ordered.find((v) => v.name === "max_wal_senders")).toEqual({ name: "max_wal_senders", running: 5, next: 7, control: null });
    await restart(primary, { logFile: logFile(primary), timeoutSec: 30 });
    const [r] = await pdb.query("t", (sql) => sql`SELECT current_setting('max_wal_senders') AS v`);
    expect(r?.v).toBe("7");
    expect(await pendingRestart(pdb)).toEqual([]);
    const after = await readSettings(host, false);
    expect(after.pending).toEqual([]);
    expect(after.ordered.find((v) => v.name === "max_wal_senders")).toMatchObject({ running: 7, next: 7 });
  }, 60_000);

  test("the round's upkeep on a frozen server ends at its first deadline instead of waiting one per query", async () => {
    const db = openLocalDb({ socketDir: s.socketDir, port: ports.p, superuser: SU, log, queryTimeoutMs: 300 });
    dbs.push(db);
    const up = await probe(db);
    expect(up.up).toBe(true);
    const timeouts: string[] = [];
    const counted: Db = { target: db.target, close: () => db.close(), query: (what, fn, ms) => db.query(what, fn, ms).catch((e) => { if (e instanceof DbTimeoutError) timeouts.push(what); throw e; }) };
    const warn = memoryLogger();
    let slotsKept = false;
    const host = { localDb: () => counted, node: primary, log: warn, writeConfig: async () => [], cfg: { postgres: { parameters: {} } }, syncNamesTaken: true, ctx: { secrets: () => undefined, peerAddresses: () => [], leaderPg: () => null, durabilityMode: () => "quorum", votersCount: () => 3, standbyMembers: () => ["a", "b"], syncSet: () => ({ names: ["a", "b"], wanted: [], pending: [] }), unheardStandbys: () => [], announcedEpoch: () => undefined } } as unknown as PgHost;
    const upkeep = new Maintenance(host, { maintain: async () => { slotsKept = true; }, archiver: { look: async () => {} } } as unknown as SlotKeeper, {} as PrimaryStarter);
    const pm = (await readPostmasterPid(primary.dataDir))!.pid;
    const frozen = [pm, ...Bun.spawnSync(["pgrep", "-P", String(pm)]).stdout.toString().split("\n").filter(Boolean).map(Number)];
    for (const pid of frozen) process.kill(pid, "SIGSTOP");
    let frozenCheck: Awaited<ReturnType<typeof freshCheck>> | null = null;
    try {
      await upkeep.maintain(false, up);
      // The fresh connection to a frozen server: the kernel accepts it, nobody answers; our deadline ends it.
      frozenCheck = await freshCheck({ socketDir: s.socketDir, port: ports.p, superuser: SU }, true, 300);
    } finally {
      for (const pid of frozen) process.kill(pid, "SIGCONT");
    }
    // Before: each remaining step waited out its own deadline (settings, then the slots' queries).
    expect(timeouts).toEqual(["pending and ordered settings"]);
    expect(slotsKept).toBe(false);
    expect(warn.lines.some((l) => l.includes("round upkeep cut short"))).toBe(true);
    expect(frozenCheck).toMatchObject({ fresh: { kind: "timeout" }, write: null });
    expect((frozenCheck!.fresh as { error: string }).error).toContain("no answer within 300 ms");
    await waitFor(async () => (await probe(pdb)).up, { timeoutMs: 10_000, what: "the server to answer again" });
  }, 30_000);

  test("names planned but not in force (a missed reload): the upkeep reloads, and a barrier confirmed before counts no more until a new one has run", async () => {
    const names = syncStandbyNames(1, ["a", "b"].map(slotFor));
    const withNames = managed(primary, ports.p, [], { conf: { ...managed(primary, ports.p, []).conf, synchronousStandbyNames: names } });
    await writeManagedConfig(withNames); // in the files, not reloaded: the server still runs with ''
    const db = local(ports.p);
    const p0 = await up(db);
    expect(p0.syncNames).toBe("");
    const warn = memoryLogger();
    const guards: unknown[] = [];
    const host = {
      localDb: () => db, sideDb: () => openLocalDb({ socketDir: s.socketDir, port: ports.p, superuser: SU, log }),
      node: primary, log: warn, clock: realClock, queryDeadlineMs: 5000, upstream: null,
      writeConfig: async () => [], // the files already say `names`
      cfg: { postgres: { parameters: {} }, failover: { max_lag_bytes: 1048576 } },
      syncNames: names, syncNamesTaken: true, syncNamesEmptied: 0, // a barrier confirmed names earlier
      namesMayBeEmpty: PgHost.prototype.namesMayBeEmpty, reload: () => reload(primary),
      ctx: {
        secrets: () => ({ systemId: p0.systemIdentifier }), peerAddresses: () => [], leaderPg: () => null, durabilityMode: () => "quorum",
        votersCount: () => 3, standbyMembers: () => ["a", "b"], syncSet: () => ({ names: ["a", "b"], wanted: [], pending: [] }), unheardStandbys: () => [], announcedEpoch: () => undefined, guardState: () => ({ guard: null, committed: 0 }), voterChangePending: () => false,
        reachableStandbys: () => 0, setGuard: (block: boolean, floor: unknown) => guards.push({ block, floor }),
      },
    } as unknown as PgHost;
    // Every value syncNamesTaken takes, in order: the barrier started in the upkeep may end before it returns.
    const taken: boolean[] = [];
    let takenNow = true;
    Object.defineProperty(host, "syncNamesTaken", { get: () => takenNow, set: (v: boolean) => { taken.push(v); takenNow = v; } });
    const upkeep = new Maintenance(host, { maintain: async () => undefined, archiver: { look: async () => undefined } } as unknown as SlotKeeper, { archivePlaceholders: async () => undefined, timelineCheckpoint: { ensure: () => {} } } as unknown as PrimaryStarter);
    upkeep.rolesEnsured(p0.systemIdentifier);
    try {
      await upkeep.maintain(true, p0);
      expect(warn.lines.some((l) => l.includes(`synchronous_standby_names in force is '', planned '${names}': reloading`))).toBe(true);
      // The checkpointer ran with '' (commits did not wait): the earlier confirmation no longer holds.
      expect(taken[0]).toBe(false);
      expect(host.syncNamesEmptied).toBe(1);
      expect(guards).toEqual([{ block: true, floor: null }]); // no standby streams: the plan degrades
      // A new barrier runs at once on a connection of its own and confirms the names with the checkpointer.
      await waitFor(() => host.syncNamesTaken, { timeoutMs: 20_000, what: "the barrier to confirm the names again" });
      expect(warn.lines.some((l) => l.includes(`'${names}' taken by the checkpointer`))).toBe(true);
      expect((await up(db)).syncNames).toBe(names);
    } finally {
      await writeManagedConfig(managed(primary, ports.p, [])); // back to no synchronous standby for the tests below
      await reload(primary);
      await waitFor(async () => (await up(db)).syncNames === "", { timeoutMs: 10_000, what: "synchronous_standby_names '' again" });
    }
  }, 40_000);

  test("names already in force when the agent starts (its first plan equals them): a barrier still confirms them taken", async () => {
    const names = syncStandbyNames(1, ["a", "b"].map(slotFor));
    const withNames = managed(primary, ports.p, [], { conf: { ...managed(primary, ports.p, []).conf, synchronousStandbyNames: names } });
    await writeManagedConfig(withNames);
    await reload(primary);
    const db = local(ports.p);
    await waitFor(async () => (await up(db)).syncNames === names, { timeoutMs: 10_000, what: "the names in force" });
    const p0 = await up(db);
    const warn = memoryLogger();
    const host = {
      localDb: () => db, sideDb: () => openLocalDb({ socketDir: s.socketDir, port: ports.p, superuser: SU, log }),
      node: primary, log: warn, clock: realClock, queryDeadlineMs: 5000, upstream: null,
      writeConfig: async () => [], // the files already say `names`
      cfg: { postgres: { parameters: {} }, failover: { max_lag_bytes: 1048576 } },
      syncNames: names, syncNamesTaken: false, syncNamesEmptied: 0, // a fresh agent: unknown
      namesMayBeEmpty: PgHost.prototype.namesMayBeEmpty,
      ctx: {
        secrets: () => ({ systemId: p0.systemIdentifier }), peerAddresses: () => [], leaderPg: () => null, durabilityMode: () => "strict",
        votersCount: () => 3, standbyMembers: () => ["a", "b"], syncSet: () => ({ names: ["a", "b"], wanted: [], pending: [] }), unheardStandbys: () => [], announcedEpoch: () => undefined,
        guardState: () => ({ guard: null, committed: 0 }), voterChangePending: () => false, reachableStandbys: () => 0, setGuard: () => undefined,
      },
    } as unknown as PgHost;
    const upkeep = new Maintenance(host, { maintain: async () => undefined, archiver: { look: async () => undefined } } as unknown as SlotKeeper, { archivePlaceholders: async () => undefined, timelineCheckpoint: { ensure: () => {} } } as unknown as PrimaryStarter);
    upkeep.rolesEnsured(p0.systemIdentifier);
    try {
      await upkeep.maintain(true, p0); // strict, nobody streams: the plan keeps the guard and the names in force
      expect(warn.lines.some((l) => l.includes("reloading"))).toBe(false);
      // Before: no reload and no guard change, so no barrier ever ran and no exclusion could be confirmed.
      await waitFor(() => host.syncNamesTaken, { timeoutMs: 20_000, what: "the barrier to confirm the names in force" });
    } finally {
      await noNamesAgain(db);
    }
  }, 40_000);

  test("a primary that ran degraded, promoted again (fenced and rewound meanwhile) gets the grace period of a promotion (no leftover degraded flag)", async () => {
    const db = local(ports.p);
    const p0 = await up(db);
    const guards: unknown[] = [];
    const host = {
      localDb: () => db, node: primary, log: memoryLogger(), clock: realClock, queryDeadlineMs: 5000, upstream: null,
      writeConfig: async () => [], reload: async () => undefined, namesMayBeEmpty: () => undefined,
      cfg: { postgres: { parameters: {} }, failover: { max_lag_bytes: 1048576 } },
      syncNames: "", syncNamesTaken: true, syncNamesEmptied: 0, // no barrier in this test
      ctx: {
        secrets: () => ({ systemId: p0.systemIdentifier }), peerAddresses: () => [], leaderPg: () => null, durabilityMode: () => "quorum",
        votersCount: () => 3, standbyMembers: () => ["a", "b"], syncSet: () => ({ names: ["a", "b"], wanted: [], pending: [] }), unheardStandbys: () => [], announcedEpoch: () => undefined,
        guardState: () => ({ guard: null, committed: 0 }), voterChangePending: () => false, reachableStandbys: () => 1,
        setGuard: (block: boolean, floor: unknown) => guards.push({ block, floor }),
      },
    } as unknown as PgHost;
    const upkeep = new Maintenance(host, { maintain: async () => undefined, archiver: { look: async () => undefined } } as unknown as SlotKeeper, { archivePlaceholders: async () => undefined, timelineCheckpoint: { ensure: () => {} } } as unknown as PrimaryStarter);
    upkeep.rolesEnsured(p0.systemIdentifier);
    upkeep.markDegraded(); // it ran degraded as a primary (a voter change, or too few standbys)
    // Fenced, rewound and elected again before any round as a standby: promoted (primary.ts prepareToPromote).
    upkeep.promoting();
    await upkeep.maintain(true, p0); // nobody streams yet
    expect(upkeep.guarantee).toContain("waiting for 1 synchronous standby");
    expect(guards).toEqual([]); // before: no grace, a block at once and then writes without a standby
  });

  test("the exclusion is confirmed for one generation of the names: A -> B -> A between two checks, a reload, a promotion or start: no old record", async () => {
    const names = syncStandbyNames(1, ["a", "b"].map(slotFor));
    await writeManagedConfig(managed(primary, ports.p, [], { conf: { ...managed(primary, ports.p, []).conf, synchronousStandbyNames: names } }));
    await reload(primary);
    const db = local(ports.p);
    await waitFor(async () => (await up(db)).syncNames === names, { timeoutMs: 10_000, what: "the names in force" });
    const host = Object.setPrototypeOf({
      localDb: () => db, node: primary, log, queryDeadlineMs: 5000, syncNamesGen: 0, syncNamesTaken: true,
      ctx: { standbyMembers: () => ["a", "b", "c"], syncSet: () => ({ names: [], wanted: [], pending: [] }), announcedEpoch: (id: string) => (id === "c" ? 5 : undefined) },
    }, PgHost.prototype) as PgHost;
    host.syncNames = names;
    const keeper = new ExclusionKeeper(host);
    try {
      await keeper.step(await up(db));
      const first = keeper.record(7);
      expect(first).toMatchObject({ term: 7, excluded: [{ id: "c", epoch: 5 }] });
      // Another plan and back before the next check (a round cut short by a deadline skips step()):
      host.syncNames = syncStandbyNames(1, ["a", "b", "c"].map(slotFor));
      host.syncNames = names;
      expect(keeper.record(7)).toBeNull(); // before: the same string, so the old X was published again
      await keeper.step(await up(db));
      expect(keeper.record(7)).not.toBeNull(); // confirmed again, from a fresh position
      host.namesMayHaveChanged(); // a promotion or a start as primary (primary.ts), a reload (PgHost.reload)
      expect(keeper.record(7)).toBeNull();
    } finally {
      await noNamesAgain(db);
    }
  }, 40_000);

  test("a member's slot that PostgreSQL invalidated (max_slot_wal_keep_size) is dropped and made again, reserving WAL", async () => {
    const bounded = managed(primary, ports.p, []);
    await writeManagedConfig({ ...bounded, conf: { ...bounded.conf, parameters: { ...bounded.conf.parameters, max_slot_wal_keep_size: "1MB" } } });
    await reload(primary);
    const db = local(ports.p);
    const name = slotFor("behind");
    try {
      await waitFor(async () => (await db.query("t", (sql) => sql`SHOW max_slot_wal_keep_size`))[0]?.max_slot_wal_keep_size === "1MB", { timeoutMs: 10_000, what: "max_slot_wal_keep_size in force" });
      await ensureSlot(db, name);
      // A member that stopped consuming while the primary wrote on: three segments later a checkpoint invalidates its slot.
      await db.query("t", (sql) => sql`CREATE TABLE IF NOT EXISTS wal_filler (x int)`);
      for (let i = 0; i < 3; i++) await db.query("t", (sql) => sql`INSERT INTO wal_filler SELECT 1; SELECT pg_switch_wal()`.simple());
      await db.query("t", (sql) => sql`CHECKPOINT`);
      expect((await listSlots(db)).find((x) => x.name === name)?.walStatus).toBe("lost");
      const warn = memoryLogger();
      const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[postgres]\ndata_dir = "${primary.dataDir}"\n`, "pgherd.toml");
      const host = {
        cfg, log: warn, node: primary, socketDir: s.socketDir, clock: realClock, localDb: () => db,
        ctx: { secrets: () => null, leaderPg: () => null, standbyMembers: () => ["behind"], syncSet: () => ({ names: ["behind"], wanted: [], pending: [] }), announcedEpoch: () => undefined, slotIdleForMs: () => 0, slotKeptMembers: () => [] },
      } as unknown as PgHost;
      const keeper = new SlotKeeper(host);
      await keeper.maintain(true);
      expect(warn.lines.some((l) => l.includes(`replication slot ${name} was invalidated by PostgreSQL`))).toBe(true);
      const made = (await listSlots(db)).find((x) => x.name === name);
      expect(made).toMatchObject({ active: false, walStatus: "reserved" });
      expect(keeper.slots).toContain(name);
      // A slot that reserves WAL is left as it is.
      await keeper.maintain(true);
      expect(warn.lines.filter((l) => l.includes("was invalidated by PostgreSQL"))).toHaveLength(1);
      expect((await listSlots(db)).find((x) => x.name === name)?.restartLsn).toBe(made!.restartLsn);
      await keeper.close();
    } finally {
      await db.query("t", (sql) => sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${name}`);
      await writeManagedConfig(bounded);
      await reload(primary);
    }
  }, 40_000);

  test("stop is idempotent; a stale postmaster.pid is not mistaken for a running server", async () => {
    expect(await stop(primary, "fast")).toBe(true);
    expect(await stop(primary, "fast")).toBe(false);
    const info = await inspectDataDir(primary.dataDir, primary);
    expect(info).toMatchObject({ running: false, postmaster: null });
    expect(info.control?.state).toBe("shut down");

    // A pid file left by a crash, naming a pid that no longer exists.
    const dead = Bun.spawnSync(["/bin/sh", "-c", "echo $$"]).stdout.toString().trim();
    expect(pidAlive(Number(dead))).toBe(false);
    await writeFile(join(other.dataDir, "postmaster.pid"), `${dead}\n${other.dataDir}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
    expect(await readPostmasterPid(other.dataDir)).toMatchObject({ pid: Number(dead), alive: false });
    expect((await inspectDataDir(other.dataDir, other)).running).toBe(false);

    // A reload signals a server of the data directory itself: with no pg_ctl to run (binaries
    // pointed nowhere) a running server still reloads, and a stopped one fails.
    const noCtl = (x: PgNode): PgNode => ({ ...x, bins: { ...x.bins, dir: join(s.root, "no-binaries") } });
    await reload(noCtl(standby));
    await expect(reload(primary)).rejects.toThrow();
    // A live process that postmaster.pid names and that is no server of the data directory is
    // refused before any signal (pg_ctl reload would signal it unchecked): one working elsewhere,
    // one that is not postgres, one of another user (a copy of sleep named postgres, run as root).
    await mkdir(join(s.root, "bin"), { recursive: true });
    await writeFile(join(s.root, "bin", "postgres"), await readFile(Bun.which("sleep")!), { mode: 0o755 });
    const victims = [
      Bun.spawn(["sleep", "60"], { cwd: s.root }),
      Bun.spawn(["sleep", "60"], { cwd: other.dataDir }),
      Bun.spawn([join(s.root, "bin", "postgres"), "60"], { cwd: other.dataDir }),
    ];
    try {
      for (const v of victims) {
        await writeFile(join(other.dataDir, "postmaster.pid"), `${v.pid}\n${other.dataDir}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
        const e = await reload(other).then(() => null, (err: unknown) => err);
        expect(e).toBeInstanceOf(PgCtlError);
        expect((e as PgCtlError).kind).toBe("reload-refused");
      }
    } finally {
      for (const v of victims) v.kill("SIGKILL");
    }
    // Nor does a root agent signal another user's server through a link the OS user put in the
    // data directory's place (it may own the parent): here nobody's "postgres" in nobody's directory.
    const foreign = mkdtempSync("/tmp/pgherd-foreign-");
    let theirs: ReturnType<typeof spawn> | null = null;
    try {
      chmodSync(foreign, 0o755);
      copyFileSync(Bun.which("sleep")!, join(foreign, "postgres"));
      chmodSync(join(foreign, "postgres"), 0o755);
      chownSync(foreign, 65534, 65534);
      const p = spawn(join(foreign, "postgres"), ["60"], { cwd: foreign, uid: 65534, gid: 65534, stdio: "ignore" });
      theirs = p;
      await waitFor(() => { try { return readlinkSync(`/proc/${p.pid}/exe`).endsWith("/postgres"); } catch { return false; } }, { timeoutMs: 5000, what: "nobody's process to run" });
      writeFileSync(join(foreign, "postmaster.pid"), `${p.pid}\n${foreign}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
      const linked = join(s.root, "linked-data");
      symlinkSync(foreign, linked);
      const e = await reload({ ...other, dataDir: linked }).then(() => null, (err: unknown) => err);
      expect((e as PgCtlError).kind).toBe("reload-refused");
    } finally {
      theirs?.kill("SIGKILL");
      rmSync(foreign, { recursive: true, force: true });
    }
  }, 60_000);

  test("stop on a postmaster.pid left by a crash: a process of the OS user with its pid is not signalled; a gone postmaster's leftovers are killed by an immediate stop; a zombie postmaster is waited for", async () => {
    // pg_ctl stop signals the pid the file names whenever a process has it; as the OS user it can
    // reach that user's processes (another cluster's server): stop() checks the process first.
    const u = await lookupOsUser(PG_OS_USER);
    const victim = spawn("sleep", ["60"], { cwd: s.root, uid: u.uid, gid: u.gid, stdio: "ignore" });
    try {
      await waitFor(() => { try { return uidOf(victim.pid!) === u.uid && readlinkSync(`/proc/${victim.pid}/cwd`) === realpathSync(s.root); } catch { return false; } }, { timeoutMs: 5000, what: "the OS user's process to run" });
      await writeFile(join(other.dataDir, "postmaster.pid"), `${victim.pid}\n${other.dataDir}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
      for (const mode of ["fast", "immediate"] as const) expect(await stop(other, mode)).toBe(false);
      expect(pidAlive(victim.pid!)).toBe(true);
      expect(victim.exitCode).toBeNull();
      expect(victim.signalCode).toBeNull();
    } finally {
      victim.kill("SIGKILL");
      rmSync(join(other.dataDir, "postmaster.pid"), { force: true });
    }
    // The postmaster gone, a process it started still working in the data directory (a backend:
    // here a copy of sleep named postgres): an immediate stop, a fence, ends it; a fast stop finds
    // nothing running, as pg_ctl did.
    await mkdir(join(s.root, "leftover-bin"), { recursive: true });
    copyFileSync(Bun.which("sleep")!, join(s.root, "leftover-bin", "postgres"));
    chmodSync(join(s.root, "leftover-bin", "postgres"), 0o755);
    const backend = spawn(join(s.root, "leftover-bin", "postgres"), ["60"], { cwd: other.dataDir, uid: u.uid, gid: u.gid, stdio: "ignore" });
    try {
      await waitFor(() => { try { return readlinkSync(`/proc/${backend.pid}/exe`).endsWith("/leftover-bin/postgres"); } catch { return false; } }, { timeoutMs: 5000, what: "the leftover to run" });
      const dead = Number(Bun.spawnSync(["/bin/sh", "-c", "echo $$"]).stdout.toString().trim());
      await writeFile(join(other.dataDir, "postmaster.pid"), `${dead}\n${other.dataDir}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
      expect(await stop(other, "fast")).toBe(false);
      expect(pidAlive(backend.pid!)).toBe(true);
      expect(await stop(other, "immediate")).toBe(true);
      await waitFor(() => backend.signalCode !== null || backend.exitCode !== null, { timeoutMs: 5000, what: "the leftover to end" });
      expect(backend.signalCode).toBe("SIGKILL");
    } finally {
      backend.kill("SIGKILL");
      rmSync(join(other.dataDir, "postmaster.pid"), { force: true });
    }
    // A postmaster killed a moment ago may still be a zombie, its parent not having reaped it: its
    // pid stays in use and PostgreSQL refuses the lock file until then (pg_rewind after a fence
    // failed so in CI187). A fast stop waits for the reap, a few seconds at most. The parent here
    // reaps its child when told to (a line on its stdin), then waits for its end.
    const holder = spawn("/usr/bin/python3", ["-c", "import os, sys\np = os.fork()\nif p == 0: os.execvp('sleep', ['sleep', '60'])\nprint(p, flush=True)\nsys.stdin.readline()\nos.waitpid(p, 0)\nsys.stdin.readline()\n"], { cwd: s.root, uid: u.uid, gid: u.gid, stdio: ["pipe", "pipe", "ignore"] });
    try {
      const child = Number(await new Promise<string>((resolve) => holder.stdout!.once("data", (d) => resolve(String(d).trim()))));
      process.kill(child, "SIGKILL");
      const state = () => { try { const st = readFileSync(`/proc/${child}/stat`, "utf8"); return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3); } catch { return "gone"; } };
      await waitFor(() => state() === "Z", { timeoutMs: 5000, what: "the killed child to be a zombie" });
      await writeFile(join(other.dataDir, "postmaster.pid"), `${child}\n${other.dataDir}\n0\n${ports.o}\n${s.socketDir}\n127.0.0.1\n0 0\nready\n`);
      await expect(stop(other, "fast", 1)).rejects.toThrow(/exited but was not reaped within 1 s/);
      expect(state()).toBe("Z");
      const stopping = stop(other, "fast");
      holder.stdin!.write("reap\n");
      expect(await stopping).toBe(false);
      expect(state()).toBe("gone");
      expect(await stop(other, "immediate")).toBe(false); // nothing of it left: nothing to kill either
    } finally {
      holder.kill("SIGKILL");
      rmSync(join(other.dataDir, "postmaster.pid"), { force: true });
    }
  }, 30_000);

  test("an idle monitoring connection hears the server end it the moment its postmaster is SIGKILLed (before the backend exits and it closes): the watch reports it within ms", async () => {
    const pidFile = join(standby.dataDir, "postmaster.pid");
    const gone: Array<{ pid: number; at: number }> = [];
    const watch = new PostmasterWatch({ clock: realClock, everyMs: 60_000, pidFile, gone: (pid) => gone.push({ pid, at: performance.now() }) });
    let [endingAt, closedAt] = [0, 0];
    const db = openLocalDb({
      socketDir: s.socketDir, port: ports.s, superuser: SU, log,
      onEnding: () => ((endingAt ||= performance.now()), watch.closed()),
      onClose: () => ((closedAt ||= performance.now()), watch.closed()),
    });
    dbs.push(db);
    await db.query("open", (sql) => sql`SELECT 1`); // the connection stays open, idle
    watch.start();
    const pm = (await readPostmasterPid(standby.dataDir))?.pid;
    expect(pm).toBeGreaterThan(0);
    const killedAt = performance.now();
    process.kill(pm!, "SIGKILL");
    try {
      await waitFor(() => gone.length > 0, { timeoutMs: 2000, intervalMs: 2, what: "the dead postmaster to be reported" });
    } finally {
      watch.stop();
    }
    expect(gone[0]!.pid).toBe(pm!);
    await waitFor(() => closedAt > 0, { timeoutMs: 2000, intervalMs: 2, what: "the connection to close" });
    console.log(`postmaster exit reported ${(gone[0]!.at - killedAt).toFixed(1)} ms after SIGKILL (safety poll 60 s); the server's "terminating connection" came ${(endingAt - killedAt).toFixed(1)} ms after it, the close ${(closedAt - killedAt).toFixed(1)} ms`);
    // The backend sends its FATAL (57P01) before it exits: the socket delivers it before the end of the stream.
    expect(endingAt).toBeGreaterThan(0);
    expect(endingAt).toBeLessThanOrEqual(closedAt);
    expect(gone[0]!.at - killedAt).toBeLessThan(250);
  }, 30_000);

  test("ownership and mode of a data dir are repaired when root", async () => {
    Bun.spawnSync(["chown", "-R", "root:root", other.dataDir]);
    Bun.spawnSync(["chmod", "0755", other.dataDir]);
    const changed = await fixDataDirOwnership(other.dataDir, PG_OS_USER, log);
    expect(changed).toBeGreaterThan(100);
    const pg = await lookupOsUser(PG_OS_USER);
    const [top, pv, ctl] = await Promise.all([stat(other.dataDir), stat(join(other.dataDir, "PG_VERSION")), stat(join(other.dataDir, "global/pg_control"))]);
    expect([top.uid, pv.uid, ctl.uid, top.mode & 0o777]).toEqual([pg.uid, pg.uid, pg.uid, 0o700]);
    expect(await fixDataDirOwnership(other.dataDir, PG_OS_USER, log)).toBe(0);
  });
});
