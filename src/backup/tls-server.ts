// pgBackRest's own TLS server (`pgbackrest server`), run by every node's agent as the PostgreSQL OS
// user: a standby that takes a backup (backup-standby) reaches the primary's pgBackRest through it
// for pg_backup_start/stop. It presents, and accepts only, certificates signed by the cluster CA
// (the one replication TLS uses, from the cluster secrets) with the common name CLIENT_CN, and only
// for this cluster's stanza (tls-server-auth). Files in <data_dir>.pgbackrest/tls (0700, keys 0600,
// written through SafeDir); paths, never keys, go in argv. Restarted when it exits (backoff);
// reloaded with SIGHUP when the certificate or CA on disk is not the one it serves, once a TLS
// handshake with it has shown it handles SIGHUP, and seen to serve the new certificate by further
// handshakes, else restarted (tls-server-step.ts; a SIGTERM ends the sessions under way: a backup,
// an archive push); stopped with the agent. Never with the agent's ambient capabilities (caps.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { withoutAmbientCaps } from "../caps.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { isWildcardHost } from "../net/addr.ts";
import { ensureDir, SafeDir, type Owner } from "../postgres/fsutil.ts";
import { isRoot, lookupOsUser } from "../postgres/users.ts";
import type { ClusterCa } from "../store/cluster-secrets.ts";
import { defaultHosts } from "../tls/node-tls.ts";
import { peerCert } from "../tls/peer-cert.ts";
import { renewal, sanList, type San } from "../tls/plan.ts";
import { certFacts, issueNodeCert } from "../tls/x509.ts";
import { backrestTlsFiles, type BackrestPaths, type BackrestTlsFiles } from "./pgbackrest.ts";
import { clearServerPid, recordServerPid, stopLeftoverServer } from "./server-pid.ts";
import { serverStep, serverVersionProblem } from "./tls-server-step.ts";
import { runTool } from "../postgres/exec.ts";

/** The common name of every node's pgBackRest certificate (client and server): the only one tls-server-auth admits. */
export const CLIENT_CN = "pgherd-pgbackrest";

export { backrestTlsFiles, type BackrestTlsFiles } from "./pgbackrest.ts";

/**
 * pgBackRest (2.45) matches the host it dials only against DNS names of the certificate, so each
 * IP address is also listed as a DNS name (its text), beside the IP entry.
 */
export function backrestSans(hosts: readonly string[]): San[] {
  const s = sanList(hosts);
  const extra = s.flatMap((x) => ("ip" in x && !s.some((y) => "dns" in y && y.dns === x.ip) ? [{ dns: x.ip }] : []));
  return [...s, ...extra];
}

/** The server's arguments (the stanza's own config holds lock, log and repository settings). */
export function serverArgs(cfg: Pick<Config, "backup">, p: BackrestPaths, f: BackrestTlsFiles): string[] {
  return [
    "server", `--config=${p.conf}`,
    `--tls-server-address=${cfg.backup.tls_address || "0.0.0.0"}`, `--tls-server-port=${cfg.backup.tls_port}`,
    `--tls-server-cert-file=${f.certFile}`, `--tls-server-key-file=${f.keyFile}`, `--tls-server-ca-file=${f.caFile}`,
    `--tls-server-auth=${CLIENT_CN}=${p.stanza}`,
  ];
}

const MAX_BACKOFF_MS = 30_000;
const CHECK_TIMEOUT_MS = 2000;

/** The fingerprint of the certificate a server on `host:port` presents (a handshake without a client certificate). */
export type CheckServer = (host: string, port: number, caPem: string) => Promise<string>;
const checkServer: CheckServer = async (host, port, caPem) => (await peerCert(host, port, caPem, CHECK_TIMEOUT_MS)).fingerprint256;

/** Where this node's own server answers: its tls_address, loopback for a wildcard one. */
export function ownAddress(tlsAddress: string): string {
  const h = tlsAddress.replace(/^\[|\]$/g, "");
  return isWildcardHost(h) ? (h === "::" ? "::1" : "127.0.0.1") : h;
}

export interface ServerOptions {
  /** The addresses its certificate names. */
  hosts?: () => string[];
  /** Wall clock (certificate dates). */
  wallNow?: () => number;
  /** Monotonic clock (backoff). */
  monoNow?: () => number;
  check?: CheckServer;
}

/**
 * This node's pgBackRest certificate (CN CLIENT_CN, signed by the cluster CA, naming `hosts`) and the
 * CA in <data_dir>.pgbackrest/tls, renewed when due (tls/plan.ts renewal: missing, another CA's,
 * key not matching, an address missing, expired or within RENEW_BEFORE_MS of expiry); returns the
 * certificate now on disk. The server presents it, and with repo_host every pgbackrest run of the
 * node shows it to the repository host.
 */
export async function ensureBackrestCert(cfg: Pick<Config, "postgres">, p: Pick<BackrestPaths, "dir">, ca: ClusterCa, hosts: readonly string[], log: Logger | undefined, now: number): Promise<string> {
  const u = await lookupOsUser(cfg.postgres.os_user);
  const owner: Owner = { uid: u.uid, gid: u.gid };
  const dir = join(p.dir, "tls");
  await ensureDir(p.dir, 0o700, owner);
  await ensureDir(dir, 0o700, owner);
  const d = await SafeDir.open(dir, { osUser: owner });
  try {
    await d.writeAtomic("ca.crt", ca.cert, { mode: 0o600, owner });
    const cert = await d.readText("pgbackrest.crt");
    const key = await d.readText("pgbackrest.key");
    const want = backrestSans(hosts);
    const decision = renewal(now, cert ? certFacts(cert, key, ca.cert) : null, want);
    if (!decision.renew) return cert!; // renewal() renews when there is no certificate
    const issued = issueNodeCert(ca, CLIENT_CN, want, now);
    await d.writeAtomic("pgbackrest.key", issued.key, { mode: 0o600, owner });
    await d.writeAtomic("pgbackrest.crt", issued.cert, { mode: 0o600, owner });
    log?.info(`pgBackRest TLS: new certificate (${decision.reason}), signed by the cluster CA`);
    return issued.cert;
  } finally {
    await d.close();
  }
}

export class BackrestServer {
  private child: ChildProcess | null = null;
  private stopped = false;
  private backoffMs = 1000;
  private nextStart = 0;
  private startedAt = 0;
  private leftoverChecked = false;
  /** The CA and certificate it serves (at its start, or at a reload it was seen to take). */
  private serving = "";
  /** Since its start, for tls-server-step.ts. */
  private ready = false;
  private checking: Promise<void> | null = null;
  private reloadedFor: string | null = null;
  private presented: string | null = null;
  private tries = 0;
  private unready = 0;
  private readonly files: BackrestTlsFiles;
  private readonly hosts: () => string[];
  private readonly wallNow: () => number;
  private readonly monoNow: () => number;
  private readonly check: CheckServer;
  private readonly onExit = () => this.child?.kill("SIGTERM");

  constructor(private readonly cfg: Config, private readonly p: BackrestPaths, private readonly log: Logger, o: ServerOptions = {}) {
    this.files = backrestTlsFiles(p);
    this.hosts = o.hosts ?? (() => defaultHosts(cfg));
    this.wallNow = o.wallNow ?? Date.now;
    this.monoNow = o.monoNow ?? (() => performance.now());
    this.check = o.check ?? checkServer;
    process.once("exit", this.onExit);
  }

  /**
   * Every round: certificate current (issued by the cluster CA), server running with it. The files
   * may also change beside it (ensureBackrestForRestore renews before a restore): what counts is
   * whether the files on disk are the ones it serves.
   */
  async maintain(ca: ClusterCa | undefined): Promise<void> {
    if (this.stopped || !ca) return;
    const cert = await ensureBackrestCert(this.cfg, this.p, ca, this.hosts(), this.log, this.wallNow());
    const files = `${ca.cert}${cert}`;
    const child = this.child;
    if (!child) {
      if (this.monoNow() >= this.nextStart) await this.start(files);
      return;
    }
    // Read by the step only while a reload waits to be seen: not parsed every round.
    const onDisk = this.reloadedFor !== null ? new X509Certificate(cert).fingerprint256 : "";
    const step = serverStep({
      files, serving: this.serving, ready: this.ready, checking: this.checking !== null,
      reloadedFor: this.reloadedFor, onDisk, presented: this.presented, tries: this.tries, unready: this.unready, upMs: this.monoNow() - this.startedAt,
    });
    switch (step.do) {
      case "nothing":
        return;
      case "check":
        if (this.reloadedFor !== null) this.tries++;
        this.startCheck(child, ca.cert);
        return;
      case "reload":
        child.kill("SIGHUP");
        this.reloadedFor = files;
        this.presented = null;
        this.tries = 0;
        this.log.info(`pgBackRest TLS server (pid ${child.pid}): SIGHUP to take its new certificate (same process; pgBackRest signals its sessions under way only on SIGTERM)`);
        return;
      case "reloaded":
        this.serving = files;
        this.reloadedFor = null;
        this.log.info(`pgBackRest TLS server (pid ${child.pid}): reloaded, presents its new certificate`);
        return;
      case "restart":
        this.log.warn(`pgBackRest TLS server (pid ${child.pid}): ${step.why}; restarting it (SIGTERM, which ends its sessions under way)`);
        child.kill("SIGTERM");
        this.serving = files; // what its next start serves: nothing more to do with this one
        this.reloadedFor = null;
        // One that does not end on SIGTERM is killed: nothing else would look at it again.
        setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        }, 10_000).unref();
        return;
    }
  }

  /** A handshake with it in the background: it handles SIGHUP (ready), and which certificate it presents. */
  private startCheck(child: ChildProcess, caPem: string): void {
    this.checking = this.check(ownAddress(this.cfg.backup.tls_address), this.cfg.backup.tls_port, caPem).then((fp) => {
      if (this.child !== child) return;
      this.ready = true;
      this.presented = fp;
    }, (e: Error) => {
      if (this.child !== child) return;
      this.presented = null;
      if (!this.ready) this.unready++;
      this.log.debug(`pgBackRest TLS server (pid ${child.pid}): handshake: ${e.message}`);
    }).finally(() => {
      this.checking = null;
    });
  }

  private async start(files: string): Promise<void> {
    const u = await lookupOsUser(this.cfg.postgres.os_user);
    const owner: Owner = { uid: u.uid, gid: u.gid };
    // Once per agent: a pgBackRest without a server (before 2.37) is said once, not restarted
    // forever; a server an earlier, killed agent left running would hold the port.
    if (!this.leftoverChecked) {
      this.leftoverChecked = true;
      const v = await runTool({ bin: this.p.bin, args: ["version"], user: this.cfg.postgres.os_user, timeoutMs: 10_000, log: this.log, quiet: true }).catch(() => null);
      const problem = v ? serverVersionProblem(v.stdout) : null;
      if (problem) {
        this.stopped = true;
        this.log.error(`pgBackRest TLS server: ${problem}`);
        return;
      }
      await stopLeftoverServer(this.p.dir, owner, this.p.conf, this.log).catch((e: Error) => this.log.warn(`pgBackRest TLS server: checking for a leftover one: ${e.message}`));
    }
    let argv: [string, ...string[]];
    try {
      argv = withoutAmbientCaps([this.p.bin, ...serverArgs(this.cfg, this.p, this.files)]);
    } catch (e) {
      this.nextStart = this.monoNow() + this.backoffMs;
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      this.log.error(`pgBackRest TLS server: ${(e as Error).message}`);
      return;
    }
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: "/usr/local/bin:/usr/bin:/bin", LC_ALL: "C" },
      ...(isRoot() ? { uid: u.uid, gid: u.gid } : {}),
    });
    this.child = child;
    this.serving = files;
    this.ready = false;
    this.reloadedFor = null;
    this.presented = null;
    this.tries = 0;
    this.unready = 0;
    this.startedAt = this.monoNow();
    if (child.pid) await recordServerPid(this.p.dir, owner, child.pid).catch((e: Error) => this.log.warn(`pgBackRest TLS server: pid file: ${e.message}`));
    let tail = "";
    child.stderr?.on("data", (b: Buffer) => {
      tail = (tail + b.toString()).slice(-600);
    });
    child.on("error", (e) => this.log.error(`pgBackRest TLS server: ${e.message}`));
    child.on("exit", (code, signal) => {
      if (this.child === child) this.child = null;
      if (this.stopped) return;
      if (this.monoNow() - this.startedAt > 60_000) this.backoffMs = 1000;
      this.nextStart = this.monoNow() + this.backoffMs;
      this.log.warn(`pgBackRest TLS server exited (${signal ?? `code ${code}`})${tail.trim() ? `: ${tail.trim()}` : ""}; starting it again in ${this.backoffMs / 1000} s`);
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
    });
    this.log.info(`pgBackRest TLS server (pid ${child.pid}) on ${this.cfg.backup.tls_address || "0.0.0.0"}:${this.cfg.backup.tls_port}, clients: ${CLIENT_CN} certificates of the cluster CA, stanza ${this.p.stanza}`);
  }

  /** Stop it (the agent stops). */
  async stop(): Promise<void> {
    this.stopped = true;
    process.off("exit", this.onExit);
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise<void>((res) => c.once("exit", () => res()));
    c.kill("SIGTERM");
    await Promise.race([gone, new Promise((res) => setTimeout(res, 5000))]);
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    const u = await lookupOsUser(this.cfg.postgres.os_user);
    await clearServerPid(this.p.dir, { uid: u.uid, gid: u.gid }).catch(() => {});
  }
}
