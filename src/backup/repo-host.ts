// A repository host ([backup] repo_host): the operator runs `pgbackrest server` there; pgherd gives
// what it needs (`pgherd backup repo-cert`, run on a node that knows the cluster CA): a server and
// client certificate signed by the cluster CA with the common name every node's pgBackRest uses
// (CLIENT_CN), naming the repository host, and that host's pgbackrest.conf: the repository, the TLS
// server admitting only CLIENT_CN certificates of the cluster CA for the stanza, and the nodes as
// pg1..pgN through their own pgBackRest TLS servers (pgBackRest finds the primary among them, and a
// standby with backup-standby), so a backup started there needs no rewrite at a failover.
//
// Each pgN carries that node's data directory (and the socket directory derived from it): a
// repository host that is given one node's directory for every node sends each node's pgBackRest
// to a path that is not its cluster (on hosts that share a filesystem, to another node's server;
// that is how "unable to find primary cluster" came about), so a node laid out differently is
// listed as host=data_dir.
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { parseHostPort } from "../config/hostport.ts";
import { socketDirOf } from "../config/pg-values.ts";
import { ensureDir, SafeDir, type Owner } from "../postgres/fsutil.ts";
import type { ClusterCa } from "../store/cluster-secrets.ts";
import { sanList } from "../tls/plan.ts";
import { issueNodeCert } from "../tls/x509.ts";
import { BackrestError, type BackrestTlsFiles } from "./pgbackrest.ts";
import { backrestSans, CLIENT_CN } from "./tls-server.ts";

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f\x7f=\s]/;

/** The answer `pgherd backup` gives with repo_host (pgBackRest: "backup command must be run on the repository host"). */
export function repoHostBackupRefusal(host: string, stanza: string, fromStandby: boolean): string {
  return `[backup] repo_host = ${host}: pgBackRest runs a backup only on the repository host; run it there ` +
    `(\`${repoHostBackupCommand(stanza, fromStandby)}\`, e.g. from a timer) with the pgbackrest.conf \`pgherd backup repo-cert\` prints`;
}

/**
 * The backup command for the repository host: from a standby when the printed config says
 * backup-standby=y and one answers, else (pgBackRest 2.45 has no "prefer") again from the primary.
 */
export function repoHostBackupCommand(stanza: string, fromStandby: boolean, type = "full"): string {
  const b = `pgbackrest --stanza=${stanza} backup --type=${type}`;
  return fromStandby ? `${b} || ${b} --no-backup-standby` : b;
}

/** A node the repository host backs up: its address and, when it differs from this node's, its data directory. */
export interface RepoNode {
  host: string;
  dataDir?: string;
}

/**
 * The nodes the repository host backs up: `given` ("host", "host:port", or "host=/data/dir" for a
 * node whose data directory is not this node's), else this node's advertised host and every
 * discovery peer's host; no duplicates. Throws on an entry that is not a host or an absolute path.
 */
export function nodeHosts(cfg: Pick<Config, "discovery" | "mesh">, given: readonly string[] = []): RepoNode[] {
  const out: RepoNode[] = [];
  for (const entry of given.length ? given : [cfg.mesh.advertise, ...cfg.discovery.peers]) {
    if (!entry) continue;
    const eq = entry.indexOf("=");
    const hp = eq < 0 ? entry : entry.slice(0, eq);
    const dataDir = eq < 0 ? undefined : entry.slice(eq + 1);
    const r = parseHostPort(hp, 1);
    if (typeof r === "string") throw new BackrestError(`--nodes: ${r}`, null);
    if (dataDir !== undefined && (!dataDir.startsWith("/") || UNSAFE.test(dataDir))) throw new BackrestError(`--nodes: ${JSON.stringify(entry)}: the data directory must be an absolute path without spaces, = or control characters`, null);
    if (!out.some((n) => n.host === r.host)) out.push({ host: r.host, ...(dataDir ? { dataDir: dataDir.replace(/\/+$/, "") } : {}) });
  }
  return out;
}


/** The repository host's pgbackrest.conf (files: where the certificate, key and CA will be on that host). */
export function renderRepoHostConf(cfg: Pick<Config, "cluster" | "postgres" | "backup">, stanza: string, nodes: readonly RepoNode[], f: BackrestTlsFiles, logDir = "/var/log/pgbackrest"): string {
  const b = cfg.backup;
  const pg = cfg.postgres;
  for (const v of [...nodes.flatMap((n) => [n.host, n.dataDir ?? pg.data_dir]), f.caFile, f.certFile, f.keyFile, logDir]) {
    if (!v || UNSAFE.test(v)) throw new BackrestError(`repository host config: ${JSON.stringify(v)} is empty or contains a space, = or a control character`, null);
  }
  const tls = (k: string) => [`${k}-ca-file=${f.caFile}`, `${k}-cert-file=${f.certFile}`, `${k}-key-file=${f.keyFile}`];
  return [
    `# pgBackRest on the repository host of pgherd cluster ${cfg.cluster} (printed by pgherd backup repo-cert).`,
    "# Run `pgbackrest server` with it; start backups here: " + repoHostBackupCommand(stanza, b.from_standby),
    "[global]",
    `repo1-path=${b.repo_path}`,
    `repo1-retention-full=${b.retention_full}`,
    `log-path=${logDir}`,
    "log-level-console=warn",
    "start-fast=y",
    // The nodes archive with archive_mode = always, which pgBackRest's backup check refuses.
    "archive-mode-check=n",
    // [backup] from_standby: the files come from a standby (pgBackRest picks the first one that
    // answers and is in recovery); the primary runs only pg_backup_start/stop.
    ...(b.from_standby ? ["backup-standby=y"] : []),
    "tls-server-address=*",
    `tls-server-port=${b.repo_host_port}`,
    ...tls("tls-server"),
    `tls-server-auth=${CLIENT_CN}=${stanza}`,
    "",
    `[${stanza}]`,
    ...nodes.flatMap((n, i) => {
      const k = `pg${i + 1}`;
      const dir = n.dataDir ?? pg.data_dir;
      return [
        `${k}-host=${n.host}`, `${k}-host-type=tls`, `${k}-host-port=${b.tls_port}`, ...tls(`${k}-host`),
        `${k}-path=${dir}`, `${k}-port=${pg.port}`, `${k}-socket-path=${socketDirOf({ ...pg, data_dir: dir })}`, `${k}-user=${pg.superuser}`,
      ];
    }),
    "",
  ].join("\n");
}

/**
 * The files `repo-cert` writes into `out` (0700): ca.crt, pgbackrest.crt, pgbackrest.key (0600,
 * written once, never through a link); `notAfterMs`: when the certificate ends (NODE_CERT_LIFETIME_MS).
 */
export async function writeRepoHostCert(ca: ClusterCa, host: string, out: string, owner: Owner, now: number): Promise<BackrestTlsFiles & { notAfterMs: number }> {
  if (!sanList([host]).length) throw new BackrestError(`--host ${JSON.stringify(host)} is not an IP address or DNS name`, null);
  const issued = issueNodeCert(ca, CLIENT_CN, backrestSans([host]), now);
  await ensureDir(out, 0o700, owner);
  const d = await SafeDir.open(out, { osUser: owner });
  try {
    await d.writeAtomic("ca.crt", ca.cert, { mode: 0o600, owner });
    await d.writeAtomic("pgbackrest.key", issued.key, { mode: 0o600, owner });
    await d.writeAtomic("pgbackrest.crt", issued.cert, { mode: 0o600, owner });
  } finally {
    await d.close();
  }
  return { caFile: join(out, "ca.crt"), certFile: join(out, "pgbackrest.crt"), keyFile: join(out, "pgbackrest.key"), notAfterMs: Date.parse(new X509Certificate(issued.cert).validTo) };
}
