// What the backup tests share: a three-node cluster archiving to one pgBackRest repository in the
// scratch directory (the namespace hosts share a filesystem, as nodes share an NFS repository),
// pgbackrest run as a node's OS user with the config its agent wrote, and the archive continuity
// check (every WAL segment along the current timeline's history is in the repository).
import { chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parse, stringify } from "smol-toml";
import { BINARY } from "../../scripts/build.ts";
import type { Config } from "../../src/config/schema.ts";
import { PgCluster, primaryTimeline, type ClusterNode, type Healthy } from "../helpers/cluster.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import type { RunResult } from "../helpers/proc.ts";
import { API_TOKEN, type Bounds, readyCluster, waitReplicating } from "../helpers/writer.ts";

/**
 * The stanza of the backup cluster whose repository is `repo` (its scratch directory's name: unique
 * per test and run). pgBackRest's remote commands lock in /tmp/pgbackrest/<stanza>-*.lock, one
 * directory every lab on this machine shares: two clusters with one stanza (npm test's concurrent
 * lanes) would take each other's locks.
 */
export function stanzaFor(repo: string): string {
  return basename(dirname(repo)).toLowerCase().replace(/[^a-z0-9_-]/g, "-").slice(0, 63);
}

/** The stanza in a node's pgherd.toml. */
function stanzaOf(n: ClusterNode): string {
  return String((parse(readFileSync(n.configPath, "utf8")) as { backup: { stanza: string } }).backup.stanza);
}

export interface BackupFixture { c: PgCluster; healthy: Healthy; cfg: Config; bounds: Bounds; repo: string }

/** The [backup]/[slots] keys of every node of a backup cluster (also a node added later). */
export function backupExtra(repo: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  const { backup, ...rest } = more as { backup?: Record<string, unknown> };
  // [shutdown] handover off: restartWithConfig restarts agents in place, the primary's included (the
  // handover on stop has its own test, agent-handover.e2e).
  return { api: { token: API_TOKEN }, election: { auto_join: true }, shutdown: { handover: false }, backup: { tool: "pgbackrest", repo_path: repo, from_standby: true, stanza: stanzaFor(repo), ...backup }, ...rest };
}

/**
 * Edits a node's pgherd.toml and restarts its agent (PostgreSQL keeps running), so the edit takes
 * effect. In place only with `[shutdown] handover = false` in the cluster's config: a leader's agent
 * that stops hands over first otherwise.
 */
export async function restartWithConfig(n: ClusterNode, edit: (cfg: Record<string, unknown>) => void): Promise<void> {
  const cfg = parse(readFileSync(n.configPath, "utf8")) as Record<string, unknown>;
  if ((cfg.shutdown as { handover?: boolean } | undefined)?.handover !== false) throw new Error(`${n.name}: restartWithConfig restarts agents in place: start the cluster with [shutdown] handover = false`);
  edit(cfg);
  writeFileSync(n.configPath, `${stringify(cfg)}\n`); // the file stays the agent's (owner and mode kept)
  await n.stopAgent();
  await n.start();
}

export async function startBackupCluster(test: string, tag: string, o: { extra?: Record<string, unknown>; postgres?: Record<string, string | number | boolean> } = {}): Promise<BackupFixture> {
  const c = await PgCluster.create({ test, tag });
  const repo = join(c.scratch, "repo");
  try {
    // The repository belongs to the user the agents and pgBackRest run as (Debian's package makes
    // /var/lib/pgbackrest so); the scratch dir around it is root's.
    const u = await lookupOsUser(PG_OS_USER);
    mkdirSync(repo, { mode: 0o750 });
    chownSync(repo, u.uid, u.gid);
    for (let i = 0; i < 3; i++) await c.addNode({ extra: backupExtra(repo, o.extra), postgres: o.postgres });
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
  return { ...(await readyCluster(test, c)), repo };
}

/** `pgbackrest <command>` on a node's host as postgres, with the config its agent wrote. */
export function backrest(n: ClusterNode, command: string, args: string[] = [], timeoutMs = 120_000): Promise<RunResult> {
  return n.host.exec(["pgbackrest", command, `--config=${n.dataDir}.pgbackrest/pgbackrest.conf`, `--stanza=${stanzaOf(n)}`, ...args], { user: PG_OS_USER, timeoutMs });
}

const readOr = (f: string) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};

/** The node's server log: pg_ctl's -l file, then the log collector's files ([log] postgres_dir, default "<data_dir>.log"). */
export function serverLog(n: ClusterNode): string {
  const dir = `${n.dataDir}.log`;
  let files: string[] = [];
  try {
    files = readdirSync(dir).sort().map((f) => join(dir, f));
  } catch { /* no collector yet */ }
  return [n.pgLogFile, ...files].map(readOr).join("");
}

/** The node's pgBackRest log files (<data_dir>.pgbackrest/log), concatenated. */
export function backrestLogs(n: ClusterNode): string {
  const dir = `${n.dataDir}.pgbackrest/log`;
  let files: string[] = [];
  try {
    files = readdirSync(dir).sort().map((f) => join(dir, f));
  } catch { /* none yet */ }
  return files.map(readOr).join("");
}

/** `pgherd <args>` on a node's host. */
export function pgherdCli(n: ClusterNode, args: string[], timeoutMs = 300_000): Promise<RunResult> {
  return n.host.exec([BINARY, ...args, "--config", n.configPath], { timeoutMs });
}

const SEGS_PER_XLOGID = 0x100000000 / (16 * 1024 * 1024);

export interface Seg { tli: number; segno: number; partial: boolean }

function parseSeg(name: string): Seg | null {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?-[0-9a-f]{40}/.exec(name);
  if (!m) return null;
  return { tli: parseInt(m[1]!, 16), segno: parseInt(m[2]!, 16) * SEGS_PER_XLOGID + parseInt(m[3]!, 16), partial: !!m[4] };
}

function lsnToBytes(lsn: string): number {
  const [hi, lo] = lsn.split("/");
  return parseInt(hi!, 16) * 0x100000000 + parseInt(lo!, 16);
}

/** Every archived segment name in the repository (all timelines). */
export function archivedSegments(repo: string): Seg[] {
  const base = join(repo, "archive", stanzaFor(repo));
  const out: Seg[] = [];
  for (const db of readdirSync(base).filter((d) => /^\d+-\d+$/.test(d))) {
    for (const dir of readdirSync(join(base, db)).filter((d) => /^[0-9A-F]{16}$/.test(d))) {
      for (const f of readdirSync(join(base, db, dir))) {
        const s = parseSeg(f);
        if (s) out.push(s);
      }
    }
  }
  return out;
}

/**
 * Segments missing from the archive along the primary's timeline history, from `fromSegno` up to
 * the last segment it completed: for each, recovery reads the copy of the newest timeline that
 * began before the segment ends. Also returns what was checked, for the log.
 */
export function archiveGaps(primary: ClusterNode, repo: string, fromSegno: number): Promise<{ missing: string[]; checked: number; timelines: number[] }> {
  return segmentGaps(primary, archivedSegments(repo), fromSegno);
}

/** WAL segment files in a directory (pg_receivewal's): full ones, and a .partial one. */
export function segmentsInDir(dir: string): Seg[] {
  const out: Seg[] = [];
  for (const f of readdirSync(dir)) {
    const m = /^([0-9A-F]{24})(\.partial)?$/.exec(f);
    if (m) out.push({ ...parseSeg(`${m[1]}-${"0".repeat(40)}`)!, partial: !!m[2] });
  }
  return out;
}

/** Segments of `have` missing along the primary's timeline history, from `fromSegno` to the segment before its current one. */
export async function segmentGaps(primary: ClusterNode, segs: Seg[], fromSegno: number, toSegno?: number): Promise<{ missing: string[]; checked: number; timelines: number[] }> {
  const [row] = await primary.query("select pg_walfile_name(pg_current_wal_lsn()) as cur");
  const tli = await primaryTimeline(primary);
  // History lines: parent timeline and where it ended (= where its child began).
  const lines: { parent: number; end: number }[] = [];
  if (tli > 1) {
    const hex = tli.toString(16).toUpperCase().padStart(8, "0");
    const [h] = await primary.query(`select pg_read_file('pg_wal/${hex}.history') as t`);
    for (const line of String(h!.t).split("\n")) {
      const m = /^(\d+)\s+([0-9A-F]+\/[0-9A-F]+)/.exec(line.trim());
      if (m) lines.push({ parent: Number(m[1]), end: lsnToBytes(m[2]!) });
    }
  }
  const begins = [{ tli: lines[0]?.parent ?? tli, begin: 0 }, ...lines.map((l, i) => ({ tli: lines[i + 1]?.parent ?? tli, begin: l.end }))];
  const curSegno = parseSeg(`${String(row!.cur)}-${"0".repeat(40)}`)!.segno;
  const have = new Set(segs.filter((s) => !s.partial).map((s) => `${s.tli}:${s.segno}`));
  const segBytes = 16 * 1024 * 1024;
  const missing: string[] = [];
  let checked = 0;
  for (let s = fromSegno; s < (toSegno ?? curSegno); s++) {
    const end = (s + 1) * segBytes;
    const t = [...begins].reverse().find((b) => b.begin < end)!.tli;
    checked++;
    if (!have.has(`${t}:${s}`)) missing.push(`${t.toString(16).toUpperCase().padStart(8, "0")}/${s.toString(16).toUpperCase()}`);
  }
  return { missing, checked, timelines: begins.map((b) => b.tli) };
}

/**
 * `pgherd switchover` from `p` to a streaming standby. Right after a WAL switch the target's last
 * report may still show it a segment behind: that refusal is retried (5 s at most).
 */
export async function switchoverToStandby(c: PgCluster, p: ClusterNode, to?: ClusterNode): Promise<void> {
  const target = to ?? (await waitReplicating(c, 10_000)).standbys[0]!;
  let cli = await pgherdCli(p, ["switchover", "--to", target.name], 100_000);
  for (let i = 0; i < 20 && cli.code !== 0 && /lags .* behind/.test(cli.stderr + cli.stdout); i++) {
    await Bun.sleep(250);
    cli = await pgherdCli(p, ["switchover", "--to", target.name], 100_000);
  }
  if (cli.code !== 0) throw new Error(`switchover: ${cli.stderr}${cli.stdout}`);
}
