// Continuous archiving that follows the primary: three namespace hosts archiving to one pgBackRest
// repository, a writer on every node. After a switchover and after a host crash the archive holds
// every WAL segment along the new primary's timeline history; a standby stopped until the primary
// recycled the WAL it needs catches up from the archive without a clone; a fourth node is cloned
// from the repository and the primary serves it no base backup (its walsenders log every
// replication command: BASE_BACKUP would show); `pgherd backup` runs on a healthy standby (pgBackRest
// backup-standby through the primary's pgBackRest TLS server), on the primary once no standby runs.
import { expect, test } from "bun:test";
import { chownSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { placeholderText } from "../../src/core/timelines.ts";
import { historyFileName } from "../../src/postgres/timeline-files.ts";
import { RESTORE_MARKER_FILE } from "../../src/store/restore-marker.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { faultRound, logMark, logSince, waitReplicating } from "../helpers/writer.ts";
import { PgCluster, primaryTimeline, type ClusterNode } from "../helpers/cluster.ts";
import { archiveGaps, backrest, backupExtra, pgherdCli, serverLog, stanzaFor, startBackupCluster, switchoverToStandby } from "./helpers.ts";
import { type Family, parseProm, sample } from "../api/prom.ts";

const readOr = (f: string) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};

const readdirOr = (d: string) => {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
};

/**
 * Three full backups are taken here: none expires (with the default 2 the archive from segment 1
 * would). Archiving that fails is said after 3 s (default 60 s), so the test of it stays short.
 */
const ARCHIVE_FAILING_S = 3;
const KEEP = { backup: { retention_full: 5, archive_failing_s: ARCHIVE_FAILING_S } };

/** /metrics of a node's agent, in its namespace (the API's default address). */
const metricsOf = async (n: ClusterNode) => {
  const r = await n.host.exec(["curl", "-s", "-m", "5", "http://127.0.0.1:7402/metrics"], { timeoutMs: 10_000 });
  return parseProm(r.stdout);
};
const valueOr = (fams: Map<string, Family>, name: string) => fams.has(name) ? sample(fams, name) : NaN;

describeCluster("backup: archiving that follows the primary", {
  start: () => startBackupCluster("backup-archive", "bkarch", { extra: KEEP, postgres: { parameters: { log_replication_commands: true } } as never }),
}, (fx) => {
  /** Pushes the current segment, then waits until the archive has no gap (the last reason names the missing segments). */
  const expectContinuous = async (label: string) => {
    const h = await waitReplicating(fx.c, 60_000);
    await h.primary.query("select pg_switch_wal()");
    let last = { missing: ["(not checked)"], checked: 0, timelines: [] as number[] };
    await waitFor(async () => {
      last = await archiveGaps(h.primary, fx.repo, 1);
      return last.missing.length === 0;
    }, { timeoutMs: 60_000, intervalMs: 500, what: `${label}: every segment archived` }).catch(() => undefined);
    console.log(`${label}: ${last.checked} segments along timelines ${last.timelines.join(" -> ")}, missing: ${last.missing.join(", ") || "none"}`);
    expect(last.missing).toEqual([]);
    const info = await backrest(h.primary, "info");
    expect(info.stdout).toContain("status: ok");
    await drained(label);
    return h;
  };

  /**
   * Every node's archiver keeps up: no .ready stays in any node's archive_status. A copy a node cannot
   * push would stay there for good and hold every later segment of that node (PostgreSQL archives
   * the oldest first): a former primary's copy of the segment its timeline ended in did. The bound
   * is PostgreSQL's: its archiver tries a failed file again at the latest 60 s later.
   */
  const drained = async (label: string) => {
    let stuck: string[] = [];
    await waitFor(async () => {
      stuck = fx.c.nodes.flatMap((n) => readdirOr(join(n.dataDir, "pg_wal", "archive_status")).filter((f) => f.endsWith(".ready")).map((f) => `${n.name}: ${f}`));
      return stuck.length === 0;
    }, { timeoutMs: 90_000, intervalMs: 500, what: `${label}: every node's archiver drained` }).catch(() => undefined);
    expect(stuck).toEqual([]);
    const skipped = fx.c.nodes.flatMap((n) => serverLog(n).split("\n").filter((l) => /runs past the end of its timeline/.test(l)).map((l) => `${n.name}: ${l.trim()}`));
    console.log(`${label}: copies past their timeline's end not pushed so far: ${skipped.length ? `\n  ${skipped.join("\n  ")}` : "none"}`);
  };

  test("the primary created the stanza; every node archives with archive_mode = always and restores from the archive", () => fx.c.diagnose(async () => {
    for (const n of fx.c.nodes) {
      await waitFor(async () => {
        const [r] = await n.query("select current_setting('archive_mode') as m, current_setting('restore_command') as rc, current_setting('archive_command') as ac");
        return r?.m === "always" && String(r.rc).includes("archive-get") && String(r.ac).includes("backup wal-push --direct");
      }, { timeoutMs: 30_000, what: `${n.name}: archive settings in force` });
    }
    const h = await waitReplicating(fx.c, 30_000);
    const b = await pgherdCli(h.primary, ["backup", "--type", "incr"]);
    console.log(`pgherd backup on ${h.primary.name}: exit ${b.code}: ${(b.stdout + b.stderr).trim()}`);
    expect(b.code).toBe(0);
    const ls = await pgherdCli(h.standbys[0]!, ["backup", "ls", "--json"]);
    expect(JSON.parse(ls.stdout).backups.map((x: { type: string }) => x.type)).toEqual(["full"]);
    await expectContinuous("after bootstrap");
  }), 120_000);

  test("a promotion past a placeholder history file no one marked (a retried promotion's): the placeholder reaches the repository and a walk over the archive reaches the new timeline", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[0]!;
    const mark = logMark(target);
    const tli = await primaryTimeline(h.primary);
    // As a first attempt that failed after placing it leaves it: in pg_wal, no archive status.
    const name = historyFileName(tli + 1);
    const file = join(target.dataDir, "pg_wal", name);
    writeFileSync(file, placeholderText(tli + 1, 0), { mode: 0o600 });
    const u = await lookupOsUser(PG_OS_USER);
    chownSync(file, u.uid, u.gid);
    await switchoverToStandby(fx.c, h.primary, target);
    const after = await waitReplicating(fx.c, 60_000);
    expect(after.primary.name).toBe(target.name);
    expect(await primaryTimeline(after.primary)).toBe(tli + 2); // PostgreSQL's walk went past the placeholder
    // The repository's history files (pgBackRest keeps them in the archive id's directory).
    const base = join(fx.repo, "archive", stanzaFor(fx.repo));
    const histories = () => new Set(readdirSync(base).filter((d) => /^\d+-\d+$/.test(d)).flatMap((db) => readdirSync(join(base, db))).map((f) => /^([0-9A-F]{8})\.history/.exec(f)?.[1]).filter((x): x is string => !!x).map((x) => parseInt(x, 16)));
    await waitFor(async () => {
      await after.primary.query("select pg_switch_wal()"); // wakes the archiver: it scans archive_status again
      return histories().has(tli + 1) && histories().has(tli + 2);
    }, { timeoutMs: 60_000, intervalMs: 1000, what: `history files ${tli + 1} (the placeholder) and ${tli + 2} in the repository` });
    // PostgreSQL's findNewestTimeLine over the archive: up to the first number missing.
    let newest = 1;
    while (histories().has(newest + 1)) newest++;
    expect(newest).toBe(tli + 2);
    expect(logSince(target, mark, /placeholder history file\(s\) of timeline\(s\) \d+ marked for the archive/).length).toBe(1);
    await expectContinuous("after a promotion past a placeholder");
  }), 240_000);

  test("switchover with a writer: the archive stays continuous", () => fx.c.diagnose(async () => {
    const r = await faultRound(fx.c, {
      label: "switchover", expect: "other", waitMs: 30_000,
      inject: async (p) => switchoverToStandby(fx.c, p),
    });
    expect(r.lost).toEqual([]);
    await expectContinuous("after the switchover");
  }), 240_000);

  test("host crash with a writer: the archive stays continuous", () => fx.c.diagnose(async () => {
    const r = await faultRound(fx.c, {
      label: "host crash", expect: "other",
      inject: (p) => p.host.killAll("SIGKILL"),
      restore: (old) => old.start(),
    });
    expect(r.analysis.splitBrain).toEqual([]);
    await expectContinuous("after the host crash");
  }), 240_000);

  test("a standby stopped until the primary recycled its WAL catches up from the archive, without a clone", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const s = h.standbys[0]!;
    const [pos] = await s.query("select pg_last_wal_replay_lsn()::text as lsn");
    const mark = s.mark();
    const logBefore = serverLog(s).length;
    await s.stopAgent();
    const stop = await s.pgCtl("stop", "-m", "fast", "-w");
    expect(stop.code).toBe(0);
    const [seg] = await h.primary.query(`select pg_walfile_name('${String(pos!.lsn)}') as f`);
    const need = String(seg!.f);
    // Its slot goes once a checkpoint's redo point is past that segment: the agent makes a new slot
    // at once, and a physical slot starts at the last checkpoint's redo point, so one made while
    // that point was still in the segment would hold it for good.
    await h.primary.query("insert into failover_w (id, node) select 900000 + g, 'filler' from generate_series(1, 10) g");
    await h.primary.query("select pg_switch_wal()");
    await h.primary.query("checkpoint");
    await h.primary.query(`select pg_drop_replication_slot('pgherd_${s.nodeId()}')`);
    let rounds = 0;
    await waitFor(async () => {
      rounds++;
      await h.primary.query("insert into failover_w (id, node) select 1000000 + g + " + rounds * 1000 + ", 'filler' from generate_series(1, 200) g");
      await h.primary.query("select pg_switch_wal()");
      await h.primary.query("checkpoint");
      const gone = (await h.primary.query(`select 1 from pg_ls_waldir() where name = '${need}'`)).length === 0;
      if (!gone && rounds % 20 === 3) {
        console.log("DBG slots", JSON.stringify(await h.primary.query("select slot_name, restart_lsn::text, active, wal_status from pg_replication_slots")));
        console.log("DBG archiver", JSON.stringify(await h.primary.query("select archived_count, last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver")));
        console.log("DBG ready", JSON.stringify(await h.primary.query("select name from pg_ls_archive_statusdir() where name like '%.ready'")));
        console.log("DBG redo", JSON.stringify(await h.primary.query("select redo_lsn::text, pg_walfile_name(redo_lsn) from pg_control_checkpoint()")));
        console.log("DBG keep", JSON.stringify(await h.primary.query("select name, setting from pg_settings where name in ('wal_keep_size','max_slot_wal_keep_size','min_wal_size','archive_mode','archive_command')")));
      }
      return gone;
    }, { timeoutMs: 60_000, intervalMs: 200, what: `the primary to recycle ${need}` });
    console.log(`primary recycled ${need} (the standby's replay position ${String(pos!.lsn)}) after ${rounds} segment switches`);
    await s.start();
    await waitReplicating(fx.c, 90_000);
    const restored = serverLog(s).slice(logBefore).split("\n").filter((l) => /restored log file .* from archive/.test(l));
    console.log(`${s.name}: ${restored.length} segments restored from the archive, then streaming`);
    expect(restored.length).toBeGreaterThan(0);
    expect(s.lines(/decision: (rewind|clone)|cloning/, mark)).toEqual([]);
  }), 240_000);

  test("a fourth node is cloned from the backup repository, not the primary, and streams", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    // The bootstrap clones did ask the primary of that time for base backups: the proof below can fail.
    expect(fx.c.nodes.some((n) => /BASE_BACKUP/.test(serverLog(n)))).toBe(true);
    const b = await pgherdCli(h.primary, ["backup", "--type", "incr"]);
    console.log(`pgherd backup: exit ${b.code}: ${(b.stdout + b.stderr).trim()}`);
    expect(b.code).toBe(0);
    const before = serverLog(h.primary).length;
    const mark = logMark(h.primary);
    const n4 = await fx.c.addNode({ extra: backupExtra(fx.repo, KEEP) });
    await n4.start();
    const healthy = await waitReplicating(fx.c, 120_000);
    expect(healthy.primary).toBe(h.primary);
    const served = serverLog(h.primary).slice(before).split("\n").filter((l) => /BASE_BACKUP/.test(l));
    expect(served).toEqual([]);
    expect(n4.lines(/restored from the backup repository/).length).toBe(1);
    expect(n4.lines(/cloning from the primary/)).toEqual([]);
    // The restore's room was checked against the backup's database size (core/clone-room.ts) before it began.
    const room = n4.lines(/room for a clone of the latest backup \(\S+\) \(\d+\.\d [kMG]B\): \d+\.\d [kMG]B needed, \d+\.\d [kMG]B free/);
    console.log(room.join("\n"));
    expect(room.length).toBe(1);
    expect(logSince(h.primary, mark, /error/)).toEqual([]);
  }), 240_000);

  test("pgherd backup runs on a healthy standby, the primary only runs pg_backup_start/stop; with the standbys stopped it runs on the primary", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const backupLog = (n: ClusterNode) => readOr(`${n.dataDir}.pgbackrest/log/${stanzaFor(fx.repo)}-backup.log`);
    const logAt = new Map(fx.c.nodes.map((n) => [n, backupLog(n).length] as const));
    const newLog = (n: ClusterNode) => backupLog(n).slice(logAt.get(n));
    const pgAt = serverLog(h.primary).length;
    const mark = logMark(h.primary);
    const t0 = performance.now();
    // Asked on a standby: its agent hands it to the leader, which picks the standby that runs it.
    const running = pgherdCli(h.standbys[0]!, ["backup", "--type", "full"]);
    // A second one asked while it runs is refused, not taken beside it on another member (below:
    // no other node's pgBackRest began a backup).
    await waitFor(() => fx.c.nodes.some((n) => /backup command begin/.test(newLog(n))), { timeoutMs: 60_000, intervalMs: 20, what: "the full backup to begin" });
    const second = await pgherdCli(h.primary, ["backup", "--type", "incr"]);
    console.log(`a second pgherd backup while it runs: exit ${second.code}: ${(second.stdout + second.stderr).trim()}`);
    expect(second.code).not.toBe(0);
    expect(second.stdout + second.stderr).toMatch(/a full backup is already under way on standby \S+ \(since [^)]+\): one backup at a time/);
    const r = await running;
    console.log(`pgherd backup --type full: exit ${r.code} after ${Math.round(performance.now() - t0)} ms: ${(r.stdout + r.stderr).trim()}`);
    expect(r.code).toBe(0);
    const listed = async () => JSON.parse((await pgherdCli(h.primary, ["backup", "ls", "--json"], 60_000)).stdout).backups as { label: string; type: string; node?: string; fromStandby?: boolean }[];
    const b = (await listed()).at(-1)!;
    expect(b.type).toBe("full");
    expect(b.fromStandby).toBe(true);
    const site = fx.c.nodes.find((n) => n.name === b.node)!;
    expect(h.standbys).toContain(site);
    expect(r.stdout).toContain(`from standby ${site.name}`);
    // pgBackRest's own record of the backup: taken with backup-standby.
    expect(readFileSync(join(fx.repo, "backup", stanzaFor(fx.repo), b.label, "backup.manifest"), "utf8")).toMatch(/^option-backup-standby=true$/m);
    // The pgbackrest backup process ran on the standby's host (its log), on no other node.
    expect(newLog(site)).toMatch(/backup command begin .*--backup-standby/);
    for (const n of fx.c.nodes) if (n !== site) expect(newLog(n)).not.toMatch(/backup command begin/);
    // Which data directory each copied file was read from (pgBackRest logs one line per file).
    const files = newLog(site).split("\n").filter((l) => /backup file /.test(l));
    const fromPrimary = files.filter((l) => l.includes(`${h.primary.dataDir}/`));
    const fromStandby = files.filter((l) => l.includes(`${site.dataDir}/`));
    console.log(`${files.length} files copied: ${fromStandby.length} from standby ${site.name}, ${fromPrimary.length} from primary ${h.primary.name}: ${fromPrimary.map((l) => /backup file \S+?\/pgdata\/(\S+)/.exec(l)?.[1]).join(", ")}`);
    expect(fromStandby.length).toBeGreaterThan(100);
    expect(fromPrimary.filter((l) => /\/pgdata\/base\//.test(l))).toEqual([]);
    // The primary served no base backup; its agent recorded where the backup ran.
    expect(serverLog(h.primary).slice(pgAt).split("\n").filter((l) => /BASE_BACKUP/.test(l))).toEqual([]);
    expect(logSince(h.primary, mark, new RegExp(`history: backup: full backup ${b.label} taken on standby ${site.name}`)).length).toBe(1);

    // The standbys' servers stop, their agents keep running (the voters stay a majority) but start
    // nothing while the cluster is paused.
    expect((await pgherdCli(h.primary, ["pause"], 30_000)).code).toBe(0);
    for (const s of h.standbys) expect((await s.pgCtl("stop", "-m", "fast", "-w")).code).toBe(0);
    const r2 = await pgherdCli(h.primary, ["backup", "--type", "incr"]);
    console.log(`standbys stopped: pgherd backup: exit ${r2.code}: ${(r2.stdout + r2.stderr).trim()}`);
    expect(r2.code).toBe(0);
    const b2 = (await listed()).at(-1)!;
    expect(b2).toMatchObject({ type: "incr", node: h.primary.name, fromStandby: false });
    expect(r2.stdout).toContain(`on primary ${h.primary.name}`);
    expect((await pgherdCli(h.primary, ["resume"], 30_000)).code).toBe(0);
    await waitReplicating(fx.c, 120_000);
  }), 300_000);

  test("the repository gone: every node's metrics, log and status say archiving fails, and that it works again once it is back", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    await expectContinuous("before the repository goes");
    const marks = new Map(fx.c.nodes.map((n) => [n, logMark(n)] as const));
    const before = new Map<ClusterNode, number>();
    for (const n of fx.c.nodes) {
      // The agent reads its archiver every 2 s: a reading after the drain.
      await waitFor(async () => valueOr(await metricsOf(n), "pgherd_archive_ready_segments") === 0, { timeoutMs: 10_000, intervalMs: 500, what: `${n.name}: nothing waiting on /metrics` });
      const m = await metricsOf(n);
      expect(sample(m, "pgherd_archive_failing")).toBe(0);
      before.set(n, sample(m, "pgherd_archive_failed_total"));
    }
    // As an unmounted share: the archive_command (wal-push, its lock file in repo_path) fails on every node.
    const away = `${fx.repo}.away`;
    renameSync(fx.repo, away);
    const failing = /WAL archiving has been failing for \d+ s \(since \S+\): [0-9A-F]{24} is not archived, [1-9]\d* file\(s\) wait in pg_wal/;
    try {
      // Each switch completes a segment on every node (archive_mode = always), which wakes its archiver.
      await waitFor(async () => {
        await h.primary.query("select pg_switch_wal()");
        return fx.c.nodes.every((n) => logSince(n, marks.get(n)!, failing).length > 0);
      }, { timeoutMs: 60_000, intervalMs: 1000, what: `every node to warn that archiving fails (after ${ARCHIVE_FAILING_S} s)` });
      for (const n of fx.c.nodes) {
        // The round publishes its report before its upkeep reads the archiver: the next round's carries what was said.
        await waitFor(async () => valueOr(await metricsOf(n), "pgherd_archive_failing") === 1, { timeoutMs: 5_000, intervalMs: 200, what: `${n.name}: pgherd_archive_failing 1` });
        const m = await metricsOf(n);
        console.log(`${n.name} while failing: ${logSince(n, marks.get(n)!, failing).join(" | ")}; failed_total ${sample(m, "pgherd_archive_failed_total")}, ready ${sample(m, "pgherd_archive_ready_segments")}`);
        expect(sample(m, "pgherd_archive_failing")).toBe(1);
        expect(sample(m, "pgherd_archive_failed_total")).toBeGreaterThan(before.get(n)!);
        expect(sample(m, "pgherd_archive_ready_segments")).toBeGreaterThan(0);
        expect(sample(m, "pgherd_archive_last_failed_timestamp_seconds")).toBeGreaterThan(sample(m, "pgherd_archive_last_archived_timestamp_seconds"));
        const st = await pgherdCli(n, ["status"], 30_000);
        expect(st.stdout).toMatch(/^archive {3}FAILING since \S+, [1-9]\d* file\(s\) waiting, last archived [0-9A-F]{24} at \S+, last failed [0-9A-F]{24} at \S+$/m);
      }
    } finally {
      renameSync(away, fx.repo);
    }
    const works = /WAL archiving works again after \d+ s: [0-9A-F]{24} archived, \d+ file\(s\) still waiting/;
    await waitFor(async () => {
      await h.primary.query("select pg_switch_wal()");
      return fx.c.nodes.every((n) => logSince(n, marks.get(n)!, works).length > 0);
    }, { timeoutMs: 90_000, intervalMs: 1000, what: "every node to say that archiving works again" });
    await expectContinuous("after the repository came back");
    for (const n of fx.c.nodes) {
      // Once per episode each, though the archiver failed again and again in between.
      expect(logSince(n, marks.get(n)!, failing)).toHaveLength(1);
      expect(logSince(n, marks.get(n)!, works)).toHaveLength(1);
      await waitFor(async () => valueOr(await metricsOf(n), "pgherd_archive_ready_segments") === 0, { timeoutMs: 10_000, intervalMs: 500, what: `${n.name}: nothing waiting on /metrics` });
      const m = await metricsOf(n);
      expect(sample(m, "pgherd_archive_failing")).toBe(0);
      expect(sample(m, "pgherd_archive_last_archived_timestamp_seconds")).toBeGreaterThan(sample(m, "pgherd_archive_last_failed_timestamp_seconds"));
      expect((await pgherdCli(n, ["status"], 30_000)).stdout).not.toContain("FAILING");
    }
  }), 240_000);

  test("a cluster bootstrapped from the backup with a target time has exactly the rows committed before it", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    await h.primary.query("create table pitr (id int primary key)");
    await h.primary.query("insert into pitr select generate_series(1, 100)");
    const [t] = await h.primary.query("select clock_timestamp()::text as t");
    const target = String(t!.t);
    await Bun.sleep(50); // commits after the target carry a later timestamp than it
    await h.primary.query("insert into pitr select generate_series(101, 200)");
    await expectContinuous("before the point-in-time bootstrap");
    // The old cluster stops (the new one takes the stanza over); its scratch (and the repository) stays until the end.
    await fx.c.stopAgents();
    for (const n of fx.c.nodes) if (n.postmasterPid() !== null) await n.pgCtl("stop", "-m", "fast", "-w");
    const c2 = await PgCluster.create({ test: "backup-pitr", tag: "bkpitr", bootstrapExpect: 1 });
    try {
      const n = await c2.addNode({ extra: backupExtra(fx.repo, { bootstrap: { from_backup: true, target_time: target } }) });
      await n.start();
      await waitFor(() => n.lines(/recovery to .* complete: promoted/).length === 1, { timeoutMs: 120_000, what: `${n.name}: restored and promoted` });
      const [rec] = await n.query("select pg_is_in_recovery() as r");
      expect(rec?.r).toBe(false);
      const [r] = await n.query("select count(*)::int as n, min(id) as lo, max(id) as hi from pitr");
      console.log(`point-in-time bootstrap to ${target}: ${r!.n} rows (${r!.lo}..${r!.hi}); 100 were committed before it, 100 after`);
      expect(r).toEqual({ n: 100, lo: 1, hi: 100 });
      // The restore ended at its target: no marker holds the data directory any more (store/restore-marker.ts).
      await waitFor(() => !existsSync(join(n.stateDir, RESTORE_MARKER_FILE)), { timeoutMs: 30_000, what: `${n.name}: restore marker removed` });
    } finally {
      await c2.destroy();
    }
  }), 240_000);
});
