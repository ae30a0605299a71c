// A repository host ([backup] repo_host): a fourth namespace host with no agent runs `pgbackrest
// server` with the certificate and pgbackrest.conf `pgherd backup repo-cert` made on a node, and
// holds the repository. The three nodes archive to it over pgBackRest's TLS transport (every write
// goes through the repository host's server; the files are read here only to check them), also
// across a switchover; `pgherd backup ls` reads it through that host; `pgherd backup` refuses
// (pgBackRest runs backups only on the repository host).
import { expect, test } from "bun:test";
import { chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { PgCluster, type ClusterNode } from "../helpers/cluster.ts";
import type { Host } from "../helpers/lab.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { type Proc, waitFor } from "../helpers/proc.ts";
import { faultRound, waitReplicating, Writer } from "../helpers/writer.ts";
import { archiveGaps, backupExtra, pgherdCli, STANZA } from "./helpers.ts";

interface Fx { c: PgCluster; repoHost: Host; repo: string; conf: string; server: Proc; extra: Record<string, unknown> }

const readOr = (f: string) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};
const serverLog = (n: ClusterNode) => {
  const dir = `${n.dataDir}.log`;
  let files: string[] = [];
  try {
    files = readdirSync(dir).sort().map((f) => join(dir, f));
  } catch { /* no collector yet */ }
  return [n.pgLogFile, ...files].map(readOr).join("");
};

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
    for (let i = 0; i < 3; i++) await c.addNode({ extra, postgres: { parameters: { log_replication_commands: true } } as never });
    await Promise.all(c.nodes.map((n) => n.start()));
    // The operator's step, as soon as the cluster CA exists: on a node (as the agent's user, which
    // reads the cluster CA), sign the repository host's certificate and print its pgbackrest.conf.
    let cert = { code: -1, stdout: "", stderr: "" };
    await waitFor(async () => {
      for (const n of c.nodes) {
        cert = await n.host.exec([BINARY, "backup", "repo-cert", "--host", repoHost.ip, "--out", certs, "--nodes", c.nodes.map((x) => x.host.ip).join(","), "--config", n.configPath], { user: PG_OS_USER, timeoutMs: 30_000 });
        if (cert.code === 0) return true;
      }
      return false;
    }, { timeoutMs: 60_000, intervalMs: 250, what: "pgherd backup repo-cert (the cluster CA)" });
    console.log(`repo-cert: ${cert.stderr.trim()}`);
    const conf = join(c.scratch, "repo-host.conf");
    writeFileSync(conf, cert.stdout.replace(/^log-path=.*$/m, `log-path=${log}\nlock-path=${join(log, "lock")}`), { mode: 0o600 });
    chownSync(conf, u.uid, u.gid);
    const server = repoHost.spawn(["pgbackrest", "server", `--config=${conf}`], { user: PG_OS_USER, logFile: join(c.artifacts, "repo-host-server.log") });
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
    fx.repoHost.exec(["pgbackrest", `--config=${fx.conf}`, `--stanza=${STANZA}`, ...args], { user: PG_OS_USER, timeoutMs });
  const info = async () => JSON.parse((await onRepoHost(["info", "--output=json"], 30_000)).stdout || "[]")[0] as
    { status: { message: string }; archive: { max: string | null }[]; backup: { label: string; type: string }[] } | undefined;
  /** Nodes whose archive_command failed since `since` (an ISO time), with the segment it failed on. */
  const archiveFailuresSince = async (since: string) => {
    const out: string[] = [];
    for (const n of fx.c.nodes) {
      const [r] = await n.query(`select last_failed_wal as f from pg_stat_archiver where last_failed_time >= '${since}'::timestamptz`);
      if (r) out.push(`${n.name}: ${String(r.f)}`);
    }
    return out;
  };
  const expectContinuous = async (label: string) => {
    const h = await waitReplicating(fx.c, 60_000);
    await h.primary.query("select pg_switch_wal()");
    let last = { missing: ["(not checked)"], checked: 0, timelines: [] as number[] };
    let tries = 0;
    await waitFor(async () => {
      // PostgreSQL's archiver retries a failed segment when woken (a new segment) or after a minute.
      if (++tries % 10 === 0) await h.primary.query("select pg_switch_wal()");
      last = await archiveGaps(h.primary, fx.repo, 1);
      return last.missing.length === 0;
    }, { timeoutMs: 60_000, intervalMs: 500, what: `${label}: every segment on the repository host` }).catch(() => undefined);
    console.log(`${label}: ${last.checked} segments along timelines ${last.timelines.join(" -> ")} on the repository host, missing: ${last.missing.join(", ") || "none"}`);
    expect(last.missing).toEqual([]);
    return h;
  };

  test("the nodes archive to the repository host; pgherd backup ls reads it; pgherd backup says backups run there", () => fx.c.diagnose(async () => {
    const t0 = performance.now();
    await waitFor(async () => !!(await info())?.archive.at(-1)?.max, { timeoutMs: 60_000, intervalMs: 500, what: "the stanza and archived WAL on the repository host (stanza-create by the primary through its TLS server)" });
    console.log(`stanza ok on the repository host ${Math.round(performance.now() - t0)} ms after its server started`);
    await expectContinuous("after bootstrap");
    const refused = await pgherdCli(fx.c.nodes[1]!, ["backup", "--type", "full"], 30_000);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain("runs a backup only on the repository host");
    // `pgherd backup ls` on a node reads the repository through the repository host.
    const ls = await pgherdCli(fx.c.nodes[2]!, ["backup", "ls", "--json"], 60_000);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout).archiveMax).toBeTruthy();
  }), 240_000);

  test("switchover with a writer: no missing segment, no archive error but lock contention", () => fx.c.diagnose(async () => {
    const [t] = await fx.c.nodes[0]!.query("select now()::text as t");
    const since = String(t!.t);
    const logAt = new Map(fx.c.nodes.map((n) => [n, serverLog(n).length] as const));
    const r = await faultRound(fx.c, {
      label: "switchover", expect: "other", waitMs: 30_000,
      inject: async (p) => {
        const h = await waitReplicating(fx.c, 10_000);
        const target = h.standbys[0]!;
        let cli = await pgherdCli(p, ["switchover", "--to", target.name], 100_000);
        for (let i = 0; i < 20 && cli.code !== 0 && /lags .* behind/.test(cli.stderr + cli.stdout); i++) {
          await Bun.sleep(250);
          cli = await pgherdCli(p, ["switchover", "--to", target.name], 100_000);
        }
        if (cli.code !== 0) throw new Error(`switchover: ${cli.stderr}${cli.stdout}`);
      },
    });
    expect(r.lost).toEqual([]);
    const h = await expectContinuous("after the switchover");
    const failed = await archiveFailuresSince(since);
    console.log(`archive_command failures on the three nodes across the switchover: ${failed.length ? failed.join(", ") : "none"}`);
    for (const n of fx.c.nodes) console.log(`${n.name}: ${serverLog(n).split("\n").filter((l) => /ERROR: \[|archive command failed|repo1:|Error\]/.test(l)).slice(-6).join("\n")}`);
    // Several nodes push each segment (archive_mode = always); the repository host's archive lock
    // refuses a concurrent push (LockAcquireError) and PostgreSQL retries it: any other error fails.
    const other = fx.c.nodes.flatMap((n) => serverLog(n).slice(logAt.get(n)).split("\n").filter((l) => /repo1: \[/.test(l) && !/LockAcquireError/.test(l)));
    expect(other).toEqual([]);
  }), 240_000);

});
