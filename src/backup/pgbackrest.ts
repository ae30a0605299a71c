// pgBackRest as pgherd drives it: the node's own pgbackrest.conf (rendered here, written 0600 for
// the PostgreSQL OS user beside the data directory, never through a link), the archive and
// restore commands PostgreSQL runs, and the pgbackrest runs the agent and the CLI make.
//
// Every node gets the same stanza and repository (repo_path: storage all nodes share) and its own
// lock, log and spool directories (<data_dir>.pgbackrest/): two nodes never share a lock file even
// when they share a filesystem.
import { connect } from "node:net";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { runTool, stderrTail, type ToolResult } from "../postgres/exec.ts";
import { ensureDir, writeFileAtomic } from "../postgres/fsutil.ts";
import { lookupOsUser } from "../postgres/users.ts";

export interface BackrestPaths {
  /** <data_dir>.pgbackrest: this node's pgBackRest directory (config, lock, log, spool). */
  dir: string;
  conf: string;
  stanza: string;
  bin: string;
}

export class BackrestError extends Error {
  override readonly name = "BackrestError";
  constructor(message: string, readonly code: number | null) {
    super(message);
  }
}

/** Debian installs it in /usr/bin; PATH first (another layout), resolved once. */
export function backrestBin(): string {
  const found = typeof Bun !== "undefined" ? Bun.which("pgbackrest") : null;
  if (found) return found;
  for (const p of ["/usr/bin/pgbackrest", "/usr/local/bin/pgbackrest"]) if (existsSync(p)) return p;
  return "pgbackrest";
}

export function backrestPaths(cfg: Pick<Config, "cluster" | "postgres" | "backup">, bin = backrestBin()): BackrestPaths {
  const dir = `${cfg.postgres.data_dir.replace(/\/+$/, "")}.pgbackrest`;
  return { dir, conf: join(dir, "pgbackrest.conf"), stanza: cfg.backup.stanza || cfg.cluster, bin };
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

function iniValue(k: string, v: string | number): string {
  const s = String(v);
  if (CONTROL.test(s)) throw new BackrestError(`pgbackrest option ${k}: value contains a control character`, null);
  return `${k}=${s}`;
}

/**
 * restore_command with a repository host: `get` unless the agent found that host silent (repo-down.ts),
 * and stopped as soon as it does: a watcher beside it looks for the file every 100 ms while the shell
 * waits for `get` in the foreground (no delay added to a call that returns). A failure of any kind
 * exits 1, which PostgreSQL takes as "not in the archive" (a signal, or a status above 125, would end
 * its startup process): the flag there at the start, or arriving while the call waits on the host
 * (pgBackRest's 2 x io-timeout, 20 s, for a refused connection, longer for a silent one). `get` runs
 * in the background with SIGINT and SIGQUIT back to their defaults (a shell starts background
 * commands with both ignored): PostgreSQL's immediate stop (SIGQUIT to the process group) ends it
 * with the shell, as when it ran in the foreground.
 */
export function flagged(get: string, flag: string): string {
  const f = shellWord(flag);
  return `test ! -e ${f} || exit 1; env --default-signal=INT,QUIT ${get} & p=$!; ` +
    `(while kill -0 $p 2>/dev/null; do if [ -e ${f} ]; then kill $p; fi; sleep 0.1; done) & w=$!; ` +
    `wait $p; r=$?; kill $w 2>/dev/null; [ $r -eq 0 ] || exit 1`;
}

/**
 * The status above 125 a restoring node's restore_command exits with when archive-get fails with
 * anything but "not found": PostgreSQL's startup process then ends with a FATAL ("could not restore
 * file ... from archive: child process exited with exit code 200") and the server stops, where any
 * status from 1 to 125 means "not in the archive", the end of the archive recovery. 200: no signal
 * number (128 + n) and not the shell's 126/127.
 */
export const RESTORE_STOP_CODE = 200;

/**
 * restore_command while a restore from a backup replays the archive (store/restore-marker.ts):
 * `get`, whose exit 1 (pgBackRest: the file is not in the archive) passes on as the end of the
 * archive, and whose every other failure (the repository unreadable or unreachable, an I/O error)
 * stops the server (RESTORE_STOP_CODE) with a line in the server log, instead of ending the recovery
 * there: promoted early, without the rest of the archive, or failed for good short of its target
 * (review). The bootstrap then starts it again, and the replay goes on from where it stood. The
 * repository host's down flag (flagged) is not looked at: a restore waits for the archive's answer.
 */
export function strictGet(get: string): string {
  return `${get}; r=$?; [ $r -le 1 ] && exit $r; ` +
    `echo "pgherd: archive-get %f failed with exit code $r, not a file missing from the archive: the recovery from the backup stops here (the bootstrap starts it again)" >&2; exit ${RESTORE_STOP_CODE}`;
}

/** The file whose presence says the repository host does not answer (<data_dir>.pgbackrest/repo-down; repo-down.ts). */
export function repoDownFlag(p: Pick<BackrestPaths, "dir">): string {
  return join(p.dir, "repo-down");
}

/** How long the agent waits for the repository host's pgBackRest port to take a connection (a promotion, a stop). */
export const REPO_PROBE_MS = 300;


/** pgbackrest.conf: the repository and retention globally, this node's server under the stanza. */
export function renderBackrestConf(cfg: Pick<Config, "cluster" | "postgres" | "backup">, socketDir: string, p: BackrestPaths): string {
  const pg = cfg.postgres;
  return [
    "# Managed by pgherd: do not edit. Rewritten by the agent from [backup] in pgherd.toml.",
    "[global]",
    ...repoLines(cfg.backup, p),
    iniValue("repo1-retention-full", cfg.backup.retention_full),
    iniValue("lock-path", join(p.dir, "lock")),
    iniValue("log-path", join(p.dir, "log")),
    iniValue("spool-path", join(p.dir, "spool")),
    "log-level-console=warn",
    "log-level-file=info",
    "start-fast=y",
    "",
    // One line per file a backup copies, with the host's path it read it from (a backup from a
    // standby reads the replicated files from the standby, the few others from the primary).
    "[global:backup]",
    "log-level-file=detail",
    "",
    `[${p.stanza}]`,
    iniValue("pg1-path", pg.data_dir),
    iniValue("pg1-port", pg.port),
    iniValue("pg1-socket-path", socketDir),
    iniValue("pg1-user", pg.superuser),
    "",
  ].join("\n");
}

/**
 * The repository: a path every node reaches, or (repo_host) the path on the repository host, reached
 * through its pgBackRest TLS server with this node's pgBackRest certificate (tls-server.ts), which
 * the repository host admits as a client and whose CA (the cluster CA) verifies the repository host.
 */
function repoLines(b: Config["backup"], p: BackrestPaths): string[] {
  if (!b.repo_host) return [iniValue("repo1-path", b.repo_path)];
  const f = backrestTlsFiles(p);
  return [
    iniValue("repo1-host", b.repo_host), "repo1-host-type=tls", iniValue("repo1-host-port", b.repo_host_port),
    iniValue("repo1-host-ca-file", f.caFile), iniValue("repo1-host-cert-file", f.certFile),
    iniValue("repo1-host-key-file", f.keyFile), iniValue("repo1-path", b.repo_path),
    // pgBackRest retries a refused connection for 2 x io-timeout (default 60 s: 2 minutes): with
    // the repository host down, a standby's restore_command and a clone give up in ~20 s instead.
    "io-timeout=10",
  ];
}

export interface BackrestTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** This node's pgBackRest TLS files (<data_dir>.pgbackrest/tls; tls-server.ts writes them). */
export function backrestTlsFiles(p: Pick<BackrestPaths, "dir">): BackrestTlsFiles {
  const dir = join(p.dir, "tls");
  return { caFile: join(dir, "ca.crt"), certFile: join(dir, "pgbackrest.crt"), keyFile: join(dir, "pgbackrest.key") };
}

/** A word for the shell PostgreSQL runs archive_command/restore_command with ('…', and % doubled for PostgreSQL). */
function shellWord(s: string): string {
  if (CONTROL.test(s)) throw new BackrestError(`path ${JSON.stringify(s)} contains a control character`, null);
  return `'${s.replace(/'/g, `'\\''`).replace(/%/g, "%%")}'`;
}

/**
 * archive_mode = always: every node, primary or standby, archives each WAL segment it completes, so
 * the archive has every segment a standby received even when the primary died before archiving
 * it. The archive_command is `pgherd backup wal-push` (wal-push.ts, `pgherd`: the argv that runs
 * this executable), which runs `pgbackrest archive-push`:
 * - without a repository host (--direct) every node pushes, one at a time (--lock: a file in the
 *   shared repository each push holds with flock; two at once would write the same temporary file).
 *   pgBackRest accepts a segment that is already in the archive with the same checksum (a warning,
 *   exit 0): the copies the other nodes push are harmless, and a different segment under the same
 *   name is refused (an error: that is a split history);
 * - with one, a standby waits for the primary's copy instead of pushing alongside it: that host's
 *   archive lock refuses concurrent pushes;
 * - in both, a node's copy of WAL past the end of its timeline is not pushed once the repository
 *   has that segment (a rewound former primary's copy of the segment the switch fell in).
 */
export function archiveSettings(p: BackrestPaths, pgherd: string[], repo: { host: true } | { host: false; path: string }, restoring = false): { archiveMode: "always"; archiveCommand: string; restoreCommand: string } {
  const base = `${shellWord(p.bin)} ${shellWord(`--config=${p.conf}`)} ${shellWord(`--stanza=${p.stanza}`)}`;
  const shared = repo.host ? "" : `--direct ${shellWord(`--lock=${pushLock(repo.path, p.stanza)}`)} `;
  const push = `${pgherd.map(shellWord).join(" ")} backup wal-push ${shared}${shellWord(`--pgbackrest=${p.bin}`)} ${shellWord(`--pgbackrest-config=${p.conf}`)} ${shellWord(`--stanza=${p.stanza}`)} "%p"`;
  const get = `${base} archive-get %f "%p"`;
  return { archiveMode: "always", archiveCommand: push, restoreCommand: restoring ? strictGet(get) : repo.host ? flagged(get, repoDownFlag(p)) : get };
}

/** The file in a shared repository every node's WAL push holds locked (wal-push.ts): one per stanza. */
export function pushLock(repoPath: string, stanza: string): string {
  return join(repoPath, `pgherd-archive-push-${stanza}.lock`);
}

/** Create <data_dir>.pgbackrest and write the config; true when it changed. The repository: ensureRepoDir. */
export async function writeBackrestConf(cfg: Pick<Config, "cluster" | "postgres" | "backup">, socketDir: string, p: BackrestPaths): Promise<boolean> {
  const u = await lookupOsUser(cfg.postgres.os_user);
  const owner = { uid: u.uid, gid: u.gid };
  await ensureDir(p.dir, 0o700, owner);
  for (const sub of ["lock", "log", "spool"]) await ensureDir(join(p.dir, sub), 0o700, owner);
  return writeFileAtomic(p.conf, renderBackrestConf(cfg, socketDir, p), { mode: 0o600, owner });
}

/** The shared repository directory (`repo_path`, without a repository host), made if missing. */
export async function ensureRepoDir(cfg: Pick<Config, "postgres" | "backup">): Promise<void> {
  if (cfg.backup.repo_host) return;
  const u = await lookupOsUser(cfg.postgres.os_user);
  await ensureDir(cfg.backup.repo_path, 0o750, { uid: u.uid, gid: u.gid });
}

export interface BackrestRun {
  osUser: string;
  log: Logger;
  timeoutMs: number;
  quiet?: boolean;
  /** Stops the command (SIGTERM to its process group, as at the agent's stop). */
  signal?: AbortSignal;
}

/** `pgbackrest --config --stanza <command> <args>` as the OS user; throws BackrestError unless it exits 0. */
export async function backrest(p: BackrestPaths, r: BackrestRun, command: string, args: string[] = []): Promise<ToolResult> {
  const res = await runTool({ bin: p.bin, args: [command, `--config=${p.conf}`, `--stanza=${p.stanza}`, ...args], user: r.osUser, timeoutMs: r.timeoutMs, log: r.log, quiet: r.quiet, ...(r.signal ? { signal: r.signal } : {}) });
  if (res.code === 0 && !res.timedOut) return res;
  const why = res.timedOut ? `timed out after ${r.timeoutMs} ms` : `exited ${res.code}`;
  throw new BackrestError(`pgbackrest ${command} ${why}: ${stderrTail(res.stderr || res.stdout)}`, res.code);
}

/**
 * Whether the repository host takes a TCP connection on its pgBackRest port within `timeoutMs`
 * (a refused or unanswered connection: false). Only the connection: nothing is sent.
 */
export function repoHostAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}
