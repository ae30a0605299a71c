// The detach before a vote on real PostgreSQL, through the loop's own entry (PostgresLoop.detach)
// on an agent whose monitoring round has not run yet (a restarted agent, a round that timed out):
// the server is looked at afresh, a streaming standby is stopped and confirmed, and only a server
// that does not run is skipped. And a promotion that fails before pg_promote says so (NotPromoted),
// the server still the standby it was; one that goes through is done while the checkpoint after it
// still runs. A primary and a standby streaming from it, on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { PostgresLoop } from "../../src/agent/pg/loop.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { NotPromoted, PrimaryStarter, type SyncPlanner } from "../../src/agent/pg/primary.ts";
import type { Fencer } from "../../src/fence/fencer.ts";
import { slotFor, type ClusterContext } from "../../src/agent/pg/context.ts";
import { parseConfig } from "../../src/config/load.ts";
import { LeaseFile } from "../../src/fence/lease-file.ts";
import { memoryLogger } from "../../src/log.ts";
import { basebackup } from "../../src/postgres/basebackup.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { generatePassword, writePassfile } from "../../src/postgres/passwords.ts";
import { probe, type ProbeUp } from "../../src/postgres/probe.ts";
import type { Position } from "../../src/core/position.ts";
import { ensureRoles } from "../../src/postgres/roles.ts";
import { ensureSlot } from "../../src/postgres/slots.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const NODE_ID = "5a5a5a5a5a5a5a5a";
const log = memoryLogger();
const replPassword = generatePassword();
const monitorPassword = generatePassword();

let s: Scratch;
let primary: PgNode;
let ports: { p: number; s: number };
let pdb: Db;
let sdb: Db;
let loop: PostgresLoop;
let host: PgHost;
let finalPosition: Position | null = null;
let reserves = false;
const became: string[] = [];

const up = async (db: Db): Promise<ProbeUp> => {
  const p = await probe(db);
  if (!p.up) throw new Error(`probe failed: ${p.error}`);
  return p;
};

requireReal("detach on real PostgreSQL", pgSkipReason);

describe("detach before a vote, on real PostgreSQL, before the agent's first monitoring round", () => {
  beforeAll(async () => {
    s = await pgScratch("detach");
    primary = s.node("primary", log.withTag("primary"));
    s.node("standby", log.withTag("standby")); // stopped with the scratch
    const p = await freePort();
    ports = { p, s: await freePort([p]) };
    const standbyDir = join(s.root, "standby");
    const cfg = parseConfig(
      `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n2"\nstate_dir = "${join(s.root, "state")}"\n` +
        `[postgres]\ndata_dir = "${standbyDir}"\nos_user = "${PG_OS_USER}"\nport = ${ports.s}\nsocket_dir = "${s.socketDir}"\nlisten_addresses = "127.0.0.1"\nreplication_tls = false\n` +
        `[postgres.parameters]\nfsync = false\nshared_buffers = "16MB"\n`,
      "test",
    );
    const pg = cfg.postgres;
    // The primary: its own managed files (loopback replication allowed), roles and this node's slot.
    await initdb(primary, { superuser: pg.superuser, noSync: true });
    await writeManagedConfig({
      dataDir: primary.dataDir, osUser: PG_OS_USER, standby: false, log,
      conf: { listenAddresses: ["127.0.0.1"], port: ports.p, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir, parameters: { fsync: false, shared_buffers: "16MB" } },
      hba: { superuser: pg.superuser, replUser: pg.repl_user, monitorUser: pg.monitor_user, peers: ["127.0.0.1"] },
    });
    await start(primary, { logFile: `${primary.dataDir}.log`, timeoutSec: 30 });
    pdb = openLocalDb({ socketDir: s.socketDir, port: ports.p, superuser: pg.superuser, log });
    await ensureRoles(pdb, { replUser: pg.repl_user, replPassword, monitorUser: pg.monitor_user, monitorPassword }, log);
    await ensureSlot(pdb, slotFor(NODE_ID));
    const passfile = join(s.root, "clone.pgpass");
    await writePassfile(passfile, [{ host: "127.0.0.1", port: ports.p, database: "*", user: pg.repl_user, password: replPassword }], await lookupOsUser(PG_OS_USER));
    await basebackup({ bins: primary.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: pg.repl_user, passfile, target: standbyDir, slot: slotFor(NODE_ID), timeoutMs: 60_000, noSync: true });

    // The standby, set up as the agent's PgHost does it, then a loop over the same data directory
    // whose rounds never ran: it has not seen the server at all.
    const ctx = {
      nodeId: NODE_ID,
      secrets: () => ({ systemId: null, replPassword, monitorPassword }),
      peerAddresses: () => ["127.0.0.1"],
      leadership: () => ({ term: 4, leading: false, acquiringLease: false, leaderId: null, member: true }),
      record: () => {},
      guardState: () => ({ guard: null, committed: 0 }),
      reserveTimeline: async () => reserves, // false: no majority stores it
      confirmDurability: async () => undefined,
      becamePrimary: (how: string, timeline: number | null) => void became.push(`${how} ${timeline}`),
    } as unknown as ClusterContext;
    host = new PgHost(cfg, primary.bins, ctx, log.withTag("standby"));
    await host.writeConfig(true, `127.0.0.1:${ports.p}`);
    await start(host.node, { logFile: join(s.root, "standby-start.log"), timeoutSec: 30 });
    sdb = openLocalDb({ socketDir: s.socketDir, port: ports.s, superuser: pg.superuser, log });
    await waitFor(async () => (await up(sdb)).walReceiver?.status === "streaming", { timeoutMs: 20_000, what: "the standby to stream" });
    loop = new PostgresLoop(cfg, primary.bins, ctx, log.withTag("pg"), new LeaseFile(join(s.root, "state"), standbyDir, (await lookupOsUser(PG_OS_USER)).uid, log));
  }, 120_000);

  afterAll(async () => {
    if (process.env.PG_TEST_DUMP) console.log(log.lines.join("\n"));
    await loop?.stop();
    for (const db of [pdb, sdb]) await db?.close();
    await s?.cleanup();
  });

  test("a streaming standby the loop never looked at is stopped and confirmed; it votes with its final position", async () => {
    // Failed before: the detach trusted the last round's view (no answering standby: no round yet)
    // and reported ok with no position while the walreceiver went on acknowledging the primary's commits.
    await pdb.query("t", (sql) => sql`CREATE TABLE t (v int)`);
    await pdb.query("t", (sql) => sql`INSERT INTO t VALUES (1)`);
    const r = await loop.detach(5);
    expect(r.ok).toBe(true);
    const after = await up(sdb);
    expect(after.walReceiver).toBeNull();
    expect((await sdb.query("t", (sql) => sql`SELECT current_setting('primary_conninfo') AS v`))[0]?.v).toBe("");
    expect(r.position).toEqual({ timeline: 1, lsn: after.receiveLsn ?? after.replayLsn! });
    finalPosition = r.position;
    // The primary's commits no longer reach it: nothing streams to the slot, the received position stands.
    await pdb.query("t", (sql) => sql`INSERT INTO t VALUES (2)`);
    await Bun.sleep(500);
    expect((await up(pdb)).replication.filter((x) => x.applicationName === slotFor(NODE_ID))).toEqual([]);
    const still = await up(sdb);
    expect(still.receiveLsn ?? still.replayLsn).toBe(r.position!.lsn);
  }, 60_000);

  test("a promotion that fails before pg_promote (its timeline reserved by no majority) leaves the standby it was, and says so", async () => {
    // The round counts a failed promotion as a primary the fence must stop unless it failed as
    // NotPromoted (core/ha.ts failureMayLeavePrimary): the resign after the attempts stopped a healthy standby.
    const starter = new PrimaryStarter(host);
    let promoting = 0;
    starter.sync = { initialSyncNames: () => "", startGrace: () => {}, promoting: () => void promoting++ } as unknown as SyncPlanner;
    host.fencer = { asPrimary: <T>(_what: string, fn: () => Promise<T>) => fn() } as unknown as Fencer;
    const e = await starter.promote().then(() => null, (x: Error) => x);
    expect(e).toBeInstanceOf(NotPromoted);
    expect(e?.message).toContain("was not stored by a majority");
    expect((await up(sdb)).inRecovery).toBe(true);
    expect(promoting).toBe(1); // a promotion starts a new run as primary (durability.ts promoting) before anything else
  }, 60_000);

  test("a server that does not run has nothing to stop: it votes with the end of the WAL its data directory holds, at once", async () => {
    await stop(host.node, "fast", 30);
    const t0 = performance.now();
    const r = await loop.detach(6);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.ok).toBe(true);
    // What it received while streaming (a standby's shutdown writes no WAL), read from its data
    // directory: this loop's rounds never ran, so nothing was remembered. Before: no position at all,
    // and the consensus voted with whatever was last reported.
    expect(r.position).toEqual(finalPosition);
  }, 60_000);

  test("a promotion is done, and recorded, while the checkpoint after it still runs; that checkpoint, beside it, makes pg_control name the new timeline", async () => {
    // Before, the promotion ran an immediate CHECKPOINT and waited for it (up to 60 s): every dirty
    // buffer written while the node went on reporting itself a standby and /primary answered 503.
    // Here the checkpointer is stopped, so that checkpoint cannot end until the test lets it.
    await host.writeConfig(true, `127.0.0.1:${ports.p}`);
    await start(host.node, { logFile: join(s.root, "standby-restart.log"), timeoutSec: 30 });
    await waitFor(async () => (await up(sdb)).inRecovery, { timeoutMs: 20_000, what: "the standby to answer" });
    const [cp] = await sdb.query("checkpointer", (sql) => sql`SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`);
    const pid = Number(cp?.pid);
    expect(pid).toBeGreaterThan(0);
    const starter = new PrimaryStarter(host);
    starter.sync = { initialSyncNames: () => "", startGrace: () => {}, promoting: () => {} } as unknown as SyncPlanner;
    host.fencer = { asPrimary: <T>(_what: string, fn: (still: () => void) => Promise<T>) => fn(() => {}) } as unknown as Fencer;
    reserves = true;
    let stale: ProbeUp | undefined;
    process.kill(pid, "SIGSTOP");
    try {
      await starter.promote();
      const p = await up(sdb);
      stale = p;
      expect(p.inRecovery).toBe(false);
      expect(became).toEqual([`promote ${p.timeline}`]);
      // pg_control still names the standby's timeline: a former primary's pg_rewind would read that.
      expect(p.checkpointTimeline).toBeLessThan(p.timeline);
      // The checkpoint started beside it (its own connection) waits for the stopped checkpointer.
      await waitFor(async () => (await sdb.query("checkpoint", (sql) => sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'CHECKPOINT' AND state = 'active'`))[0]?.n === 1, { timeoutMs: 10_000, what: "the CHECKPOINT waiting for the checkpointer" });
      expect((await up(sdb)).checkpointTimeline).toBeLessThan(p.timeline);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await starter.timelineCheckpoint.settled();
    const after = await up(sdb);
    expect(after.checkpointTimeline).toBe(after.timeline);
    const done = () => log.lines.filter((l) => l.includes("checkpoint after the promotion:") && l.includes("may rewind from this one now")).length;
    expect(done()).toBe(1);
    // A round's probe taken while it ran still shows the old timeline: no second CHECKPOINT for it.
    starter.timelineCheckpoint.ensure(stale!);
    await starter.timelineCheckpoint.settled();
    expect(done()).toBe(1);
  }, 60_000);
});
