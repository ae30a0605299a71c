// The position a node votes with when its PostgreSQL is stopped, on real servers: what its pg_wal
// holds, not pg_control's checkpoint. A standby acknowledges a synchronous commit once the WAL is
// flushed to its pg_wal, before replaying it: here a standby whose replay is paused receives and
// flushes WAL from the primary, both lose power (immediate stops), and the monitoring round of an
// agent that starts then (nothing observed before) publishes the received position at once, in its
// first round. Started again, it reports its replay position until it streams: the round keeps the
// position it found. Promoted and stopped before the checkpoint that names its timeline in
// pg_control, its position is the end of its WAL on the new timeline (the newest real history file,
// a placeholder above it left aside), not the old timeline's WAL it received further. A standby that
// followed that promotion, stopped before its first restartpoint on the new timeline, votes with the
// new timeline's end, not on the old timeline; nothing is scanned while a pg_rewind is unfinished.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { appendFileSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { MonitorRound, type RoundParts } from "../../src/agent/pg/round.ts";
import { parseConfig } from "../../src/config/load.ts";
import { dataWasPrimary } from "../../src/core/ha.ts";
import type { Position } from "../../src/core/position.ts";
import type { Fencer } from "../../src/fence/fencer.ts";
import { memoryLogger } from "../../src/log.ts";
import { basebackup } from "../../src/postgres/basebackup.ts";
import { initdb, start, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { inspectDataDir } from "../../src/postgres/datadir.ts";
import { lsnCompare, lsnToBigInt } from "../../src/postgres/lsn.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { generatePassword, writePassfile } from "../../src/postgres/passwords.ts";
import { buildConninfo } from "../../src/postgres/pgconf.ts";
import { probe, type ProbeUp } from "../../src/postgres/probe.ts";
import { promote } from "../../src/postgres/promote.ts";
import { ensureRoles } from "../../src/postgres/roles.ts";
import { ensureSlot } from "../../src/postgres/slots.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { placePlaceholders } from "../../src/postgres/timeline-files.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER, pgBins, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("stopped-position tests", pgSkipReason);

const SU = "postgres";
const REPL = "pgherd_repl";
const log = memoryLogger();
const replPassword = generatePassword();
let s: Scratch;
let primary: PgNode;
let standby: PgNode;
let ports: { p: number; s: number };
const dbs: Db[] = [];

const local = (port: number) => {
  const db = openLocalDb({ socketDir: s.socketDir, port, superuser: SU, log });
  dbs.push(db);
  return db;
};
const up = async (db: Db): Promise<ProbeUp> => {
  const p = await probe(db);
  if (!p.up) throw new Error(`probe failed: ${p.error}`);
  return p;
};
const one = async (db: Db, query: string): Promise<string> => String(Object.values((await db.query("q", (sql) => sql.unsafe(query)))[0] ?? {})[0]);
const managed = (n: PgNode, port: number, extra: Partial<ManagedConfig["conf"]> = {}, standbyOf = false): ManagedConfig => ({
  dataDir: n.dataDir, osUser: PG_OS_USER, standby: standbyOf, log,
  conf: {
    listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: s.socketDir,
    // No autovacuum (WAL of its own at any moment); checkpoint_timeout 1 h spreads the checkpoint after a promotion (its TimeLineID lags).
    parameters: { fsync: false, shared_buffers: "16MB", autovacuum: false, checkpoint_timeout: "1h" },
    ...extra,
  },
  hba: { superuser: SU, replUser: REPL, monitorUser: "pgherd_mon", peers: ["127.0.0.1"] },
});

/** The agent's monitoring round for `n`, as an agent that has just started runs it (nothing observed before, no leader): the positions it publishes. */
function agentRound(n: PgNode, port: number, bins = pgBins!): { round: MonitorRound; published: Position[]; host: PgHost } {
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "b"\nstate_dir = "${n.dataDir}.state"\n[postgres]\ndata_dir = "${n.dataDir}"\nos_user = "${PG_OS_USER}"\nport = ${port}\nsocket_dir = "${s.socketDir}"\n`, "test");
  const published: Position[] = [];
  const ctx = {
    nodeId: "b", secrets: () => undefined, leaderPg: () => null, candidates: () => [], nobodyHasData: () => false, othersHaveData: () => true,
    paused: () => false, guardState: () => ({ guard: null, committed: 0 }), record: () => {},
    leadership: () => ({ term: 3, leading: false, acquiringLease: false, leaderId: null, member: true }),
    publish: (_r: unknown, p: Position) => published.push(p),
  } as unknown as ClusterContext;
  const host = new PgHost(cfg, bins, ctx, log.withTag("agent"));
  host.fencer = { settle: () => {} } as unknown as Fencer;
  const parts = {
    maintenance: { guarantee: "", pending: [], ordered: [] }, slots: { slots: [], slotBytes: {}, permanentReport: [], archiver: { report: undefined } }, primary: {}, rebuild: {},
    rejoin: () => ({ request: null, progress: null }), observed: () => {}, failed: () => {}, promotionRequested: () => false, followingHeld: () => false, again: () => {},
  } as unknown as RoundParts;
  return { round: new MonitorRound(host, parts), published, host };
}

let replayAtPause = "";
let received = "";

beforeAll(async () => {
  s = await pgScratch("walend");
  primary = s.node("primary", log.withTag("primary"));
  standby = s.node("standby", log.withTag("standby"));
  const p = await freePort();
  ports = { p, s: await freePort([p]) };
});

afterAll(async () => {
  if (process.env.PG_TEST_DUMP) console.log(log.lines.join("\n"));
  for (const db of dbs) await db.close();
  await s?.cleanup();
});

test("a stopped standby's first position is the WAL it received and flushed, not pg_control's", async () => {
  await initdb(primary, { superuser: SU, noSync: true });
  await writeManagedConfig(managed(primary, ports.p));
  await start(primary, { logFile: `${primary.dataDir}.log`, timeoutSec: 30 });
  const pdb = local(ports.p);
  await ensureRoles(pdb, { replUser: REPL, replPassword, monitorUser: "pgherd_mon", monitorPassword: generatePassword() }, log);
  await ensureSlot(pdb, "sb");
  const passfile = join(s.root, "pgpass");
  await writePassfile(passfile, [{ host: "127.0.0.1", port: ports.p, database: "*", user: REPL, password: replPassword }], await lookupOsUser(PG_OS_USER));
  await basebackup({ bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, passfile, target: standby.dataDir, slot: "sb", timeoutMs: 60_000, noSync: true });
  // A clone before its first start holds its source's pg_control ("in production") and backup_label:
  // with the standby.signal a rebuild writes into it before the swap, a standby's data, never a
  // former primary's to rewind (core/ha.ts dataWasPrimary; found by review).
  const cloned = (await inspectDataDir(standby.dataDir, standby)).control!;
  expect(cloned.state).toBe("in production");
  expect(existsSync(join(standby.dataDir, "backup_label"))).toBe(true);
  expect(dataWasPrimary(cloned.state, true, true)).toBe(false);
  const conninfo = buildConninfo({ host: "127.0.0.1", port: ports.p, user: REPL, passfile, applicationName: "sb" });
  await writeManagedConfig(managed(standby, ports.s, { primaryConninfo: conninfo, primarySlotName: "sb" }, true));
  await start(standby, { logFile: `${standby.dataDir}.log`, timeoutSec: 30 });
  const sdb = local(ports.s);
  await waitFor(async () => (await up(sdb)).walReceiver?.status === "streaming", { timeoutMs: 20_000, what: "the standby to stream" });

  // A restartpoint, then data replayed after it (dirty buffers: the checkpoint after the promotion below has work to spread out).
  await pdb.query("t", (sql) => sql`CHECKPOINT`);
  const caughtUp = async () => {
    const target = await one(pdb, "SELECT pg_current_wal_lsn()");
    await waitFor(async () => lsnCompare((await up(sdb)).replayLsn ?? "0/0", target) >= 0, { timeoutMs: 20_000, what: "the standby's replay to catch up" });
  };
  await caughtUp();
  await sdb.query("t", (sql) => sql`CHECKPOINT`);
  await pdb.query("t", (sql) => sql`CREATE TABLE bulk AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 5000) g`);
  await caughtUp();

  // Replay paused: what the primary writes now is received and flushed (what a synchronous commit waits for), not replayed.
  replayAtPause = (await up(sdb)).replayLsn!;
  await sdb.query("t", (sql) => sql`SELECT pg_wal_replay_pause()`);
  await waitFor(async () => (await one(sdb, "SELECT pg_get_wal_replay_pause_state()")) === "paused", { timeoutMs: 10_000, what: "replay paused" });
  await pdb.query("t", (sql) => sql`CREATE TABLE acked AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 80000) g`);
  await pdb.query("t", (sql) => sql`INSERT INTO acked VALUES (0, 'the last commit')`);
  const written = await one(pdb, "SELECT pg_current_wal_lsn()");
  const flushed = await waitFor(async () => {
    const f = (await up(sdb)).walReceiver?.flushedLsn;
    return f && lsnCompare(f, written) >= 0 && f;
  }, { timeoutMs: 20_000, what: "the standby to flush the primary's WAL" });
  // Both hosts lose power: the primary first (nothing more reaches the standby), then the standby.
  await stop(primary, "immediate");
  received = await one(sdb, "SELECT pg_last_wal_receive_lsn()");
  const replayed = (await up(sdb)).replayLsn!;
  await stop(standby, "immediate");
  console.log(`standby: replayed ${replayed}, flushed ${flushed} (pg_stat_wal_receiver), received ${received} at the stop`);
  expect(lsnCompare(received, flushed)).toBeGreaterThanOrEqual(0);
  expect(lsnCompare(replayed, received)).toBeLessThan(0);

  const c = (await inspectDataDir(standby.dataDir, standby)).control!;
  console.log(`standby's pg_control: checkpoint ${c.checkpointLsn}, minimum recovery ending location ${c.minRecoveryEndLsn}, timeline ${c.timeline}`);
  expect(lsnCompare(c.checkpointLsn, received)).toBeLessThan(0);
  expect(lsnCompare(c.minRecoveryEndLsn, received)).toBeLessThan(0);
  // More than one segment past the replay: the scan starts at the newest one whose first page is current.
  expect(lsnToBigInt(received) >> 24n).toBeGreaterThan(lsnToBigInt(replayed) >> 24n);

  // Preallocated segments ahead of the end (zero-filled, not written yet), one listed first: told no
  // segment to start with, pg_waldump takes the segment size from the first file it lists.
  const wal = join(standby.dataDir, "pg_wal");
  const pg = await lookupOsUser(PG_OS_USER);
  const firstListedIsZero = () => {
    const first = readdirSync(wal).find((n) => /^[0-9A-F]{24}$/.test(n));
    return first !== undefined && readFileSync(join(wal, first)).subarray(0, 40).every((b) => b === 0);
  };
  for (let segno = (lsnToBigInt(received) >> 24n) + 2n; segno < 200n && !firstListedIsZero(); segno++) {
    const name = join(wal, `0000000100000000${segno.toString(16).toUpperCase().padStart(8, "0")}`);
    writeFileSync(name, "");
    truncateSync(name, 16 << 20);
    chownSync(name, pg.uid, pg.gid);
  }
  expect(firstListedIsZero()).toBe(true);

  const agent = agentRound(standby, ports.s);
  await agent.round.run();
  expect(agent.published).toEqual([{ timeline: 1, lsn: received }]);
  const scan = log.lines.find((l) => l.includes("its WAL on timeline 1 ends at"));
  console.log(`scan: ${scan?.replace(/^.*stopped PostgreSQL: /, "")}`);
  await agent.host.close();
}, 120_000);

test("where pg_waldump's records end is where the next one starts, across pages and segments (the standby's WAL)", async () => {
  const { parseWaldump, recordEnd } = await import("../../src/postgres/wal-end.ts");
  // Every record since the pause (not through runTool, which keeps only the last 4 MB of output),
  // with the first and last segment named (a zero-filled one is listed first, above).
  const segment = (lsn: string) => `0000000100000000${(lsnToBigInt(lsn) >> 24n).toString(16).toUpperCase().padStart(8, "0")}`;
  const r = Bun.spawnSync([join(pgBins!.dir, "pg_waldump"), "-p", join(standby.dataDir, "pg_wal"), "-s", replayAtPause, segment(replayAtPause), segment(received)], { env: { LC_ALL: "C" } });
  const records = r.stdout.toString().split("\n").map((l) => parseWaldump(l, "").last).filter((x) => x !== null);
  expect(records.length).toBeGreaterThan(50_000);
  let pages = 0;
  let segments = 0;
  for (let i = 0; i + 1 < records.length; i++) {
    const a = records[i]!;
    const end = lsnToBigInt(recordEnd(a.lsn, a.length, 8192, 16 << 20));
    const next = end % 8192n === 0n ? end + (end % (16n << 20n) === 0n ? 40n : 24n) : end;
    if (next !== lsnToBigInt(records[i + 1]!.lsn)) throw new Error(`record at ${a.lsn} (${a.length} bytes) ends at ${end.toString(16)}, the next starts at ${records[i + 1]!.lsn}`);
    if (lsnToBigInt(a.lsn) / 8192n !== (end - 1n) / 8192n) pages++;
    if (lsnToBigInt(a.lsn) >> 24n !== (end - 1n) >> 24n) segments++;
  }
  const last = records.at(-1)!;
  expect(recordEnd(last.lsn, last.length, 8192, 16 << 20)).toBe(received);
  console.log(`${records.length} records checked, ${pages} across a page boundary, ${segments} across a segment boundary`);
  expect(segments).toBeGreaterThan(0);

  // The WAL cut where a record crosses into a segment that is not there (a crash before it was
  // written): the read ends with the last segment, not on an invalid record, and the end is that
  // record's start (PostgreSQL 15 and later: from the statistics' heading, one pg_waldump run).
  const { findWalEnd } = await import("../../src/postgres/wal-end.ts");
  const crossing = records.find((a) => lsnToBigInt(a.lsn) >> 24n !== (lsnToBigInt(recordEnd(a.lsn, a.length, 8192, 16 << 20)) - 1n) >> 24n)!;
  const cut = join(s.root, "cut");
  mkdirSync(join(cut, "pg_wal"), { recursive: true });
  const owner = await lookupOsUser(PG_OS_USER);
  for (const dir of [cut, join(cut, "pg_wal")]) chownSync(dir, owner.uid, owner.gid);
  for (const name of readdirSync(join(standby.dataDir, "pg_wal"))) {
    if (!/^00000001[0-9A-F]{16}$/.test(name) || name > segment(crossing.lsn)) continue;
    copyFileSync(join(standby.dataDir, "pg_wal", name), join(cut, "pg_wal", name));
    chownSync(join(cut, "pg_wal", name), owner.uid, owner.gid);
  }
  const control = (await inspectDataDir(standby.dataDir, standby)).control!;
  const found = await findWalEnd({ ...standby, dataDir: cut }, control, 1, 10_000);
  expect(found.lsn).not.toBeNull();
  expect(lsnToBigInt(found.lsn!)).toBe(lsnToBigInt(crossing.lsn));
  if (pgBins!.version >= 15) expect(found.runs).toBe(1);
}, 60_000);

test("started again, a standby reports its replay position until it streams: the round keeps what it found stopped", async () => {
  const agent = agentRound(standby, ports.s);
  await agent.round.run(); // the agent starts with the server stopped
  expect(agent.published).toEqual([{ timeline: 1, lsn: received }]);
  // Its primary is gone: it replays only to where its replay stood (a recovery target, which the
  // managed files refuse: written beside them), and does not stream.
  appendFileSync(join(standby.dataDir, "postgresql.auto.conf"), `recovery_target_lsn = '${replayAtPause}'\nrecovery_target_action = 'pause'\n`);
  await start(standby, { logFile: `${standby.dataDir}.log`, timeoutSec: 30 });
  const sdb = local(ports.s);
  await waitFor(async () => (await one(sdb, "SELECT pg_get_wal_replay_pause_state()")) === "paused", { timeoutMs: 20_000, what: "replay paused at the target" });
  const p = await up(sdb);
  console.log(`standby running: received ${p.receiveLsn}, replayed ${p.replayLsn}`);
  expect(lsnCompare(p.receiveLsn ?? p.replayLsn!, received)).toBeLessThan(0);
  await agent.round.run();
  expect(agent.published.at(-1)).toEqual({ timeline: 1, lsn: received });
  await agent.host.close();
}, 60_000);

test("a former primary stopped before the checkpoint that names its timeline: the end of its WAL on that timeline, not the old timeline's it received further", async () => {
  const sdb = local(ports.s);
  expect(await promote(sdb, standby, 30)).toBe("promoted");
  await sdb.query("t", (sql) => sql`CREATE TABLE after_promotion AS SELECT 1 AS x`);
  const end2 = await one(sdb, "SELECT pg_current_wal_lsn()");
  // The checkpoint that records timeline 2 in pg_control is still running (spread over checkpoint_timeout).
  expect(await one(sdb, "SELECT timeline_id FROM pg_control_checkpoint()")).toBe("1");
  await placePlaceholders(standby.dataDir, PG_OS_USER, [3], 9); // a number reserved for another leader's promotion
  await stop(standby, "immediate");
  const c = (await inspectDataDir(standby.dataDir, standby)).control!;
  expect(c.timeline).toBe(1);
  // Less than the WAL received on timeline 1 past the promotion's switch point: counting that would claim it for timeline 2.
  expect(lsnCompare(end2, received)).toBeLessThan(0);
  const agent = agentRound(standby, ports.s);
  await agent.round.run();
  expect(agent.published).toEqual([{ timeline: 2, lsn: end2 }]);
  await agent.host.close();
}, 60_000);

test("a standby that followed a promotion, stopped before its first restartpoint on the new timeline: the end of the new timeline's WAL, though pg_control names the old one (found by review)", async () => {
  // Before: the scan read pg_control's timeline (1) only, and this standby, holding acknowledged
  // WAL of timeline 2, voted with the old primary's position on timeline 1: equal to it.
  const [a, b, c] = [s.node("tl-a", log.withTag("tl-a")), s.node("tl-b", log.withTag("tl-b")), s.node("tl-c", log.withTag("tl-c"))];
  const pa = await freePort([ports.p, ports.s]);
  const pb = await freePort([ports.p, ports.s, pa]);
  const pc = await freePort([ports.p, ports.s, pa, pb]);
  await initdb(a, { superuser: SU, noSync: true });
  await writeManagedConfig(managed(a, pa));
  await start(a, { logFile: `${a.dataDir}.log`, timeoutSec: 30 });
  const adb = local(pa);
  await ensureRoles(adb, { replUser: REPL, replPassword, monitorUser: "pgherd_mon", monitorPassword: generatePassword() }, log);
  const passfile = join(s.root, "tl.pgpass");
  await writePassfile(passfile, [{ host: "127.0.0.1", port: "*", database: "*", user: REPL, password: replPassword }], await lookupOsUser(PG_OS_USER));
  const follow = async (n: PgNode, port: number, upstream: number, slot: string) => {
    const conninfo = buildConninfo({ host: "127.0.0.1", port: upstream, user: REPL, passfile, applicationName: slot });
    await writeManagedConfig(managed(n, port, { primaryConninfo: conninfo, primarySlotName: slot }, true));
  };
  for (const [n, port, slot] of [[b, pb, "tl_b"], [c, pc, "tl_c"]] as const) {
    await ensureSlot(adb, slot);
    await basebackup({ bins: n.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: pa, user: REPL, passfile, target: n.dataDir, slot, timeoutMs: 60_000, noSync: true });
    await follow(n, port, pa, slot);
    await start(n, { logFile: `${n.dataDir}.log`, timeoutSec: 30 });
  }
  const [bdb, cdb] = [local(pb), local(pc)];
  await adb.query("t", (sql) => sql`CREATE TABLE before_switch AS SELECT g FROM generate_series(1, 2000) g`);
  const endA = await one(adb, "SELECT pg_current_wal_lsn()");
  await waitFor(async () => lsnCompare((await up(bdb)).receiveLsn ?? "0/0", endA) >= 0 && lsnCompare((await up(cdb)).receiveLsn ?? "0/0", endA) >= 0, { timeoutMs: 20_000, what: "both standbys to receive the old primary's WAL" });
  await stop(a, "immediate");
  expect(await promote(bdb, b, 30)).toBe("promoted");
  await ensureSlot(bdb, "tl_c");
  await follow(c, pc, pb, "tl_c");
  await stop(c, "fast");
  await start(c, { logFile: `${c.dataDir}.log`, timeoutSec: 30 });
  await waitFor(async () => { const x = await up(cdb); return x.walReceiver?.status === "streaming" && x.timeline === 2; }, { timeoutMs: 30_000, what: "C to stream timeline 2" });
  await bdb.query("t", (sql) => sql`CREATE TABLE acknowledged AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 20000) g`);
  const written = await one(bdb, "SELECT pg_current_wal_lsn()");
  await waitFor(async () => lsnCompare((await up(cdb)).receiveLsn ?? "0/0", written) >= 0, { timeoutMs: 20_000, what: "C to flush timeline 2's WAL" });
  await stop(b, "immediate");
  await stop(c, "immediate");
  const control = (await inspectDataDir(c.dataDir, c)).control!;
  expect(control.timeline).toBe(1); // no restartpoint on timeline 2 yet
  const agentC = agentRound(c, pc);
  await agentC.round.run();
  expect(agentC.published).toHaveLength(1);
  expect(agentC.published[0]!.timeline).toBe(2);
  expect(lsnCompare(agentC.published[0]!.lsn, written)).toBeGreaterThanOrEqual(0);
  // A pg_rewind that stopped after it began to write may have copied a new primary's history and
  // WAL into pg_wal: while its marker is there, no scan (found by review), pg_control's position.
  agentC.host.rewindMarker.set("127.0.0.1:1");
  await agentC.host.close();
  const rewinding = agentRound(c, pc);
  await rewinding.round.run();
  expect(rewinding.published).toEqual([{ timeline: 1, lsn: control.minRecoveryEndLsn !== "0/0" && lsnCompare(control.minRecoveryEndLsn, control.checkpointLsn) > 0 ? control.minRecoveryEndLsn : control.checkpointLsn }]);
  rewinding.host.rewindMarker.clear();
  await rewinding.host.close();
  // The old primary, on timeline 1, is behind it.
  const agentA = agentRound(a, pa);
  await agentA.round.run();
  expect(agentA.published[0]!.timeline).toBe(1);
  await agentA.host.close();
}, 120_000);

/** The real binaries, with `tool` replaced by a script that fails (an I/O error, a tool that cannot run). */
function binsFailing(tool: string): typeof pgBins & object {
  const dir = join(s.root, `bins-no-${tool}`);
  mkdirSync(dir);
  for (const f of readdirSync(pgBins!.dir)) symlinkSync(join(pgBins!.dir, f), join(dir, f));
  rmSync(join(dir, tool));
  writeFileSync(join(dir, tool), `#!/bin/sh\necho "${tool}: error: could not read: Input/output error" >&2\nexit 1\n`, { mode: 0o755 });
  chownSync(dir, 0, 0);
  return { ...pgBins!, dir };
}

test("at rest: a clean stop says 'shut down' and ends past its shutdown checkpoint; an immediate one does not; unread WAL or pg_control gives no position to vote with (found by review)", async () => {
  const n = s.node("atrest", log.withTag("atrest"));
  const port = await freePort([ports.p, ports.s]);
  await initdb(n, { superuser: SU, noSync: true });
  await writeManagedConfig(managed(n, port));
  await start(n, { logFile: `${n.dataDir}.log`, timeoutSec: 30 });
  const db = local(port);
  await db.query("t", (sql) => sql`CREATE TABLE acked AS SELECT g FROM generate_series(1, 1000) g`);
  await db.close();
  // A switchover's stop: the final position is the end of the shutdown checkpoint's record, which
  // the target must hold whole (pg_control's checkpoint is where that record starts).
  expect(await stop(n, "fast")).toBe(true);
  const agent = agentRound(n, port);
  const clean = await agent.round.rest.atRest(performance.now() + 10_000);
  const control = (await inspectDataDir(n.dataDir, n)).control!;
  expect(clean.running).toBe(false);
  expect(clean.state).toBe("shut down");
  expect(clean.position?.timeline).toBe(1);
  expect(lsnCompare(clean.position!.lsn, control.checkpointLsn)).toBeGreaterThan(0);
  await agent.host.close();
  // Not shut down cleanly: a switchover refuses to hand over from it (loop.ts stopForHandover).
  await start(n, { logFile: `${n.dataDir}.log`, timeoutSec: 30 });
  await stop(n, "immediate");
  const crashed = agentRound(n, port);
  expect((await crashed.round.rest.atRest(performance.now() + 10_000)).state).toBe("in production");
  await crashed.host.close();
  // The WAL's end or pg_control cannot be read: no position, though the node was seen further
  // (before: pg_control's or the last round's position, and the vote was granted with it).
  for (const tool of ["pg_waldump", "pg_controldata"]) {
    const blind = agentRound(n, port, binsFailing(tool));
    blind.host.heldPosition = { timeline: 1, lsn: "0/1000000" };
    expect(await blind.round.rest.restingPosition(performance.now() + 10_000)).toBeNull();
    await blind.host.close();
  }
}, 60_000);
