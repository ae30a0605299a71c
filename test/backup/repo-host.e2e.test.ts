// A repository host ([backup] repo_host): a fourth namespace host with no agent runs `pgbackrest
// server` with the certificate and pgbackrest.conf `pgherd backup repo-cert` made on a node, and
// holds the repository. The nodes archive to it over pgBackRest's TLS transport (every write goes
// through that server; the files are read here only to check them): the primary pushes, standbys
// wait for its copy (pgherd backup wal-push). A full backup started on the repository host takes
// the files from a standby; a fourth node is cloned from it and the primary serves it no base
// backup; across a switchover with a writer every segment is archived, no archive_command fails on
// any node, no node's pgBackRest log has an error, and `pgbackrest check` on the repository host
// passes; the same across a crash of the primary's host whose archiver was stopped, so the
// promoted standby's wal-push pushes the segment the old primary never archived.
import { expect, test } from "bun:test";
import { chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { PgCluster, type ClusterNode } from "../helpers/cluster.ts";
import type { Host } from "../helpers/lab.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { type Proc, waitFor } from "../helpers/proc.ts";
import { boundsOf, faultRound, logMark, logSince, waitReplicating, Writer } from "../helpers/writer.ts";
import { loadConfig } from "../../src/config/load.ts";
import { REPO_PROBE_MS } from "../../src/backup/pgbackrest.ts";
import { archivePushProcesses } from "../../src/backup/stuck-push.ts";
import { archiveGaps, backrestLogs, backupExtra, pgherdCli, serverLog, stanzaFor, switchoverToStandby } from "./helpers.ts";

interface Fx { c: PgCluster; repoHost: Host; repo: string; conf: string; server: Proc; extra: Record<string, unknown> }

const PG = { parameters: { log_replication_commands: true } } as never;
/** What the repository host's supervisor prints when its pgBackRest server exits. */
const SERVER_EXITED = "pgbackrest server exited";

async function start(): Promise<Fx> {
  const c = await PgCluster.create({ test: "backup-repohost", tag: "bkrh" });
  try {
    const repoHost = await c.addBareHost();
    const u = await lookupOsUser(PG_OS_USER);
    const repo = join(c.scratch, "repo");
    const certs = join(c.scratch, "repo-certs");
    const log = join(c.scratch, "repo-log");
    for (const d of [repo, certs, log]) {
      mkdirSync(d, { mode: 0o700 });
      chownSync(d, u.uid, u.gid);
    }
    const extra = backupExtra(repo, { backup: { repo_host: repoHost.ip, retention_full: 5 } });
    for (let i = 0; i < 3; i++) await c.addNode({ extra, postgres: PG });
    await Promise.all(c.nodes.map((n) => n.start()));
    // The operator's step, as soon as the cluster CA exists: on a node (as the agent's user, which
    // reads the cluster CA), sign the repository host's certificate and print its pgbackrest.conf.
    // The nodes share one filesystem here, so each has its own data directory: host=data_dir.
    const nodes = c.nodes.map((x) => `${x.host.ip}=${x.dataDir}`).join(",");
    let cert = { code: -1, stdout: "", stderr: "" };
    await waitFor(async () => {
      for (const n of c.nodes) {
        cert = await n.host.exec([BINARY, "backup", "repo-cert", "--host", repoHost.ip, "--out", certs, "--nodes", nodes, "--config", n.configPath], { user: PG_OS_USER, timeoutMs: 30_000 });
        if (cert.code === 0) return true;
      }
      return false;
    }, { timeoutMs: 60_000, intervalMs: 250, what: "pgherd backup repo-cert (the cluster CA)" });
    console.log(`repo-cert: ${cert.stderr.trim()}`);
    const conf = join(c.scratch, "repo-host.conf");
    writeFileSync(conf, cert.stdout.replace(/^log-path=.*$/m, `log-path=${log}\nlock-path=${join(log, "lock")}`), { mode: 0o600 });
    chownSync(conf, u.uid, u.gid);
    // Under a supervisor, as docs/backup.md asks (systemd, Restart=): pgBackRest 2.45's server
    // (Debian 12) segfaulted once here (CI134, during a switchover), and nothing started it again.
    const server = repoHost.spawn(["sh", "-c", `trap 'kill $c 2>/dev/null; exit 0' TERM INT; while :; do pgbackrest server '--config=${conf}' & c=$!; wait $c; echo "${SERVER_EXITED} $? (started again in 1 s)"; sleep 1; done`], { user: PG_OS_USER, logFile: join(c.artifacts, "repo-host-server.log") });
    const h = await c.diagnose(() => c.waitHealthy(120_000));
    await new Writer([]).prepare(h.primary);
    return { c, repoHost, repo, conf, server, extra };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

describeCluster("backup: a repository host reached over pgBackRest's TLS transport", {
  start,
  beforeDestroy: async (fx) => {
    await fx.server?.stop();
  },
}, (fx) => {
  /** `pgbackrest` on the repository host with the config repo-cert printed. */
  const onRepoHost = (args: string[], timeoutMs = 120_000) =>
    fx.repoHost.exec(["pgbackrest", `--config=${fx.conf}`, `--stanza=${stanzaFor(fx.repo)}`, ...args], { user: PG_OS_USER, timeoutMs });
  const info = async () => JSON.parse((await onRepoHost(["info", "--output=json"], 30_000)).stdout || "[]")[0] as
    { status: { message: string }; archive: { max: string | null }[]; backup: { label: string; type: string }[] } | undefined;
  const expectContinuous = async (label: string) => {
    const h = await waitReplicating(fx.c, 60_000);
    await h.primary.query("select pg_switch_wal()");
    let last = { missing: ["(not checked)"], checked: 0, timelines: [] as number[] };
    await waitFor(async () => {
      last = await archiveGaps(h.primary, fx.repo, 1);
      return last.missing.length === 0;
    }, { timeoutMs: 60_000, intervalMs: 500, what: `${label}: every segment on the repository host` }).catch(() => undefined);
    console.log(`${label}: ${last.checked} segments along timelines ${last.timelines.join(" -> ")} on the repository host, missing: ${last.missing.join(", ") || "none"}`);
    expect(last.missing).toEqual([]);
    return h;
  };
  /** Where archiving is checked from: after bootstrap (the primary's pushes before the stanza existed failed, as they must). */
  let since = "";
  const pgLogAt = new Map<string, number>();
  const brLogAt = new Map<string, number>();
  const markArchiving = (rows: Record<string, unknown>[]) => {
    since = String(rows[0]!.t);
    serverLinesAt = fx.server.lines.length;
    for (const n of fx.c.nodes) {
      pgLogAt.set(n.name, serverLog(n).length);
      brLogAt.set(n.name, backrestLogs(n).length);
    }
  };
  /**
   * No archive_command failed since the mark, unless the repository host's server crashed meanwhile
   * (a pgBackRest bug, not pgherd's: pushes fail until its supervisor starts it again, and PostgreSQL
   * retries them; expectContinuous checks that every segment arrived).
   */
  const expectNoArchiveErrors = async (primary: ClusterNode) => {
    const failed = await archiveErrors(primary);
    const crashes = fx.server.lines.slice(serverLinesAt).filter((l) => l.includes(SERVER_EXITED));
    if (crashes.length === 0) return expect(failed).toEqual([]);
    // Only failures to reach it are excused (never a lock conflict, the thing this check is for).
    console.log(`the repository host's pgBackRest server exited meanwhile (${crashes.join("; ")}): archive failures while it was down: ${failed.length}`);
    expect(failed.filter((l) => /LockAcquireError/.test(l) || (/ERROR: \[/.test(l) && !/HostConnectError|unable to connect|TLS error|unexpected eof|\[103\]/.test(l)))).toEqual([]);
  };
  let serverLinesAt = 0;
  /** Since the mark: archive_command failures (pg_stat_archiver, the server logs) and errors in the nodes' pgBackRest logs (a LockAcquireError would be one). */
  const archiveErrors = async (primary: ClusterNode) => {
    const failed: string[] = [];
    for (const n of fx.c.nodes) {
      const [a] = await n.query(`select last_failed_wal as f, last_failed_time::text as t from pg_stat_archiver where last_failed_time >= '${since}'::timestamptz`);
      if (a) failed.push(`${n.name}: ${String(a.f)} at ${String(a.t)}`);
      failed.push(...serverLog(n).slice(pgLogAt.get(n.name) ?? 0).split("\n").filter((l) => /archive command failed|archive_command failed|LockAcquireError/.test(l)).map((l) => `${n.name}: ${l}`));
      failed.push(...backrestLogs(n).slice(brLogAt.get(n.name) ?? 0).split("\n").filter((l) => /ERROR: \[/.test(l)).map((l) => `${n.name}: ${l}`));
      const [s] = await n.query("select archived_count as a from pg_stat_archiver");
      const own = serverLog(n).slice(pgLogAt.get(n.name) ?? 0).match(/pushing this standby's copy/g) ?? [];
      console.log(`${n.name} (${n === primary ? "primary" : "standby"}): archived ${String(s!.a)} since start; pushed its own copy as a standby (wal-push): ${own.length}`);
    }
    return failed;
  };

  /**
   * Until no .ready is left on these nodes. Bounded below wal-push's 30 s wait on purpose: a standby
   * waiting out that wait for a segment that never arrives under its name is the defect looked for.
   */
  const idleArchivers = async (nodes: ClusterNode[]) => {
    for (const s of nodes) {
      await waitFor(async () => (await s.query("select count(*)::int as n from pg_ls_archive_statusdir() where name like '%.ready'"))[0]!.n === 0,
        { timeoutMs: 20_000, intervalMs: 200, what: `${s.name}'s archiver to have nothing pending (wal-push not waiting out its 30 s)` });
    }
  };

  test("the nodes archive to the repository host; a full backup there comes from a standby; pgherd backup names the command", () => fx.c.diagnose(async () => {
    const t0 = performance.now();
    await waitFor(async () => !!(await info())?.archive.at(-1)?.max, { timeoutMs: 60_000, intervalMs: 500, what: "the stanza and archived WAL on the repository host (stanza-create by the primary through its TLS server)" });
    console.log(`stanza ok on the repository host ${Math.round(performance.now() - t0)} ms after its server started`);
    const h = await expectContinuous("after bootstrap");
    // Standbys archive through wal-push; it waits for the primary's copy, so it is done with these too.
    for (const n of fx.c.nodes) {
      const [r] = await n.query("select current_setting('archive_command') as c");
      expect(String(r!.c)).toContain("backup wal-push");
    }
    await waitFor(async () => {
      for (const s of h.standbys) {
        const [r] = await s.query("select count(*)::int as n from pg_ls_dir('pg_wal/archive_status') f where f like '%.ready'");
        if (Number(r!.n) > 0) return false;
      }
      return true;
    }, { timeoutMs: 60_000, intervalMs: 500, what: "the standbys' archivers caught up (no .ready left)" });
    markArchiving(await h.primary.query("select now()::text as t"));
    const refused = await pgherdCli(fx.c.nodes[1]!, ["backup", "--type", "full"], 30_000);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain(`pgbackrest --stanza=${stanzaFor(fx.repo)} backup --type=full || pgbackrest --stanza=${stanzaFor(fx.repo)} backup --type=full --no-backup-standby`);
    // The command that message names, on the repository host: pgBackRest finds the primary and a standby among pg1..pg3.
    const t1 = performance.now();
    const b = await onRepoHost(["backup", "--type=full"], 300_000);
    console.log(`backup on the repository host: exit ${b.code} in ${Math.round(performance.now() - t1)} ms ${(b.stdout + b.stderr).trim()}`);
    expect(b.code).toBe(0);
    const i = await info();
    const full = i?.backup.at(-1);
    expect(full?.type).toBe("full");
    expect(readFileSync(join(fx.repo, "backup", stanzaFor(fx.repo), full!.label, "backup.manifest"), "utf8")).toMatch(/^option-backup-standby=true$/m);
    // The command's second half (no standby up): the same config, from the primary.
    const incr = await onRepoHost(["backup", "--type=incr", "--no-backup-standby"], 300_000);
    expect(incr.code).toBe(0);
    const last = (await info())?.backup.at(-1);
    expect(last?.type).toBe("incr");
    expect(readFileSync(join(fx.repo, "backup", stanzaFor(fx.repo), last!.label, "backup.manifest"), "utf8")).toMatch(/^option-backup-standby=false$/m);
    // `pgherd backup ls` on a node reads the repository through the repository host.
    const ls = await pgherdCli(fx.c.nodes[2]!, ["backup", "ls", "--json"], 60_000);
    expect(ls.code).toBe(0);
    expect((JSON.parse(ls.stdout) as { backups: { label: string }[] }).backups.map((x) => x.label)).toEqual(expect.arrayContaining([full!.label, last!.label]));
  }), 240_000);

  test("a fourth node is cloned from the repository host's backup, not the primary, and streams", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    // The bootstrap clones did ask the primary of that time for base backups: the proof below can fail.
    expect(fx.c.nodes.some((n) => /BASE_BACKUP/.test(serverLog(n)))).toBe(true);
    const before = serverLog(h.primary).length;
    const mark = logMark(h.primary);
    const n4 = await fx.c.addNode({ extra: fx.extra, postgres: PG });
    pgLogAt.set(n4.name, 0);
    brLogAt.set(n4.name, 0);
    await n4.start();
    const healthy = await waitReplicating(fx.c, 120_000);
    expect(healthy.primary).toBe(h.primary);
    expect(serverLog(h.primary).slice(before).split("\n").filter((l) => /BASE_BACKUP/.test(l))).toEqual([]);
    expect(n4.lines(/restored from the backup repository/).length).toBe(1);
    expect(n4.lines(/cloning from the primary/)).toEqual([]);
    expect(logSince(h.primary, mark, /error/)).toEqual([]);
  }), 240_000);

  test("switchover with a writer: every segment archived, no archive error on any node, pgbackrest check passes", () => fx.c.diagnose(async () => {
    const r = await faultRound(fx.c, {
      label: "switchover", expect: "other", waitMs: 30_000,
      inject: async (p) => switchoverToStandby(fx.c, p),
    });
    expect(r.lost).toEqual([]);
    const h = await expectContinuous("after the switchover");
    const check = await onRepoHost(["check"], 120_000);
    console.log(`pgbackrest check on the repository host: exit ${check.code} ${(check.stdout + check.stderr).trim()}`);
    expect(check.code).toBe(0);
    expect((await info())?.status.message).toBe("ok");
    await expectNoArchiveErrors(h.primary);
    // A standby that followed the promotion on its stream holds the old timeline's last segment as
    // .ready; wal-push returns once the new primary's .partial copy is in the repository, so no
    // standby's archiver stays busy for wal-push's 30 s wait.
    await idleArchivers(h.standbys);
    const waitedOut = fx.c.nodes.flatMap((n) => serverLog(n).slice(pgLogAt.get(n.name) ?? 0).split("\n").filter((l) => /not in the repository 30 s after/.test(l)).map((l) => `${n.name}: ${l}`));
    expect(waitedOut).toEqual([]);
    const partial = fx.c.nodes.flatMap((n) => serverLog(n).slice(pgLogAt.get(n.name) ?? 0).split("\n").filter((l) => /in the repository as .*\.partial/.test(l)).map((l) => `${n.name}: ${l.trim()}`));
    console.log(`after the switchover, standbys that returned on the .partial copy: ${partial.join("; ") || "none"}`);
  }), 240_000);

  test("host crash of a primary that had not archived its last segments: the promoted standby pushes them, no archive error", () => fx.c.diagnose(async () => {
    markArchiving(await fx.c.nodes[0]!.query("select now()::text as t"));
    let unarchived = "";
    const r = await faultRound(fx.c, {
      label: "host crash", expect: "other",
      inject: async (p) => {
        // Idle standby archivers first, so that the segment below is the one each waits on.
        await idleArchivers(fx.c.nodes.filter((n) => n !== p));
        // The primary's archiver stops (SIGSTOP) while the writer runs: segments it completes reach
        // the standbys, whose wal-push waits for the primary's copy, which never comes.
        const [a] = await p.query("select pid from pg_stat_activity where backend_type = 'archiver'");
        const stop = await p.host.exec(["kill", "-STOP", String(a!.pid)]);
        if (stop.code !== 0) throw new Error(`kill -STOP archiver: ${stop.stderr}`);
        const [w] = await p.query("select pg_walfile_name(pg_current_wal_lsn()) as f");
        unarchived = String(w!.f);
        await p.query("select pg_switch_wal()");
        // A position in the next segment (the writer keeps writing): a standby past it has the whole segment.
        const h = await waitReplicating(fx.c, 10_000);
        const [n] = await p.query("select pg_current_wal_lsn()::text as l, pg_walfile_name(pg_current_wal_lsn()) as f");
        if (String(n!.f) <= unarchived) throw new Error(`pg_switch_wal did not leave ${unarchived}`);
        for (const s of h.standbys) {
          await waitFor(async () => {
            const [x] = await s.query(`select pg_last_wal_receive_lsn() >= '${String(n!.l)}'::pg_lsn as ok`);
            return x!.ok === true;
          }, { timeoutMs: 10_000, intervalMs: 50, what: `${s.name} to receive segment ${unarchived} whole` });
        }
        const [st] = await p.query("select coalesce(last_archived_wal, '') as f from pg_stat_archiver");
        console.log(`crash: ${p.name} archived up to ${String(st!.f)}; ${unarchived} is complete on every standby, not archived`);
        await p.host.killAll("SIGKILL");
      },
      restore: (old) => old.start(),
    });
    expect(r.analysis.splitBrain).toEqual([]);
    expect(r.lost).toEqual([]);
    const h = await expectContinuous("after the host crash");
    expect(serverLog(r.neu).includes(`${unarchived} is not in the repository and this node was promoted while it waited`)).toBe(true);
    await expectNoArchiveErrors(h.primary);
  }), 240_000);

  test("the repository host cut off: a switchover's promotion does not wait on restore_command; the archive catches up once it is back", () => fx.c.diagnose(async () => {
    const bounds = boundsOf(loadConfig(fx.c.nodes[0]!.configPath));
    const marks = new Map(fx.c.nodes.map((n) => [n.name, logMark(n)] as const));
    await fx.repoHost.cut();
    let r: Awaited<ReturnType<typeof faultRound>>;
    try {
      r = await faultRound(fx.c, {
        label: "switchover, repository host cut off", expect: "other", waitMs: 30_000,
        inject: async (p) => {
          // A segment to archive: the old primary's archiver is in a push that waits on the silent
          // host when the switchover stops it.
          await p.query("select pg_switch_wal()");
          const osUid = (await lookupOsUser(PG_OS_USER)).uid;
          await waitFor(() => archivePushProcesses(p.dataDir, osUid).length > 0, { timeoutMs: 10_000, intervalMs: 20, what: `${p.name}'s archiver to push` });
          await switchoverToStandby(fx.c, p);
        },
      });
    } finally {
      await fx.repoHost.heal();
    }
    // The old primary's stop ends the archive push under way (backup/stuck-push.ts) and its archiver
    // with it, once a look at the host found it silent; the target looks too before pg_promote, and
    // its restore_command under way stops within 100 ms of the flag (pgbackrest.ts flagged).
    const allowance = 2 * REPO_PROBE_MS + 1000;
    console.log(`switchover with the repository host cut off: outage ${r.analysis.outageMs} ms (bound ${bounds.switchoverMs} + ${allowance} ms)`);
    expect(r.lost).toEqual([]);
    expect(logSince(r.neu, marks.get(r.neu.name)!, /the repository host \S+ does not answer: restore_command fails at once until it does/)).toHaveLength(1);
    expect(logSince(r.old, marks.get(r.old.name)!, /stopping PostgreSQL: ended [1-9]\d* archive push process\(es\) under way, the repository host does not answer/)).toHaveLength(1);
    // Back: the flag goes (the next round looks again).
    await waitFor(async () => logSince(r.neu, marks.get(r.neu.name)!, /the repository host \S+ answers again: restore_command runs archive-get again/).length === 1, { timeoutMs: 30_000, intervalMs: 200, what: `${r.neu.name} to find the repository host answering again` });
    expect(r.analysis.outageMs).toBeLessThanOrEqual(bounds.switchoverMs + allowance);
    await expectContinuous("after the repository host came back");
  }), 240_000);
});

