// A repository host ([backup] repo_host): the operator runs `pgbackrest server` there; pgherd gives
// what it needs (`pgherd backup repo-cert`, run on a node that knows the cluster CA): a server and
// client certificate signed by the cluster CA with the common name every node's pgBackRest uses
// (CLIENT_CN), naming the repository host, and that host's pgbackrest.conf: the repository, the TLS
// server admitting only CLIENT_CN certificates of the cluster CA for the stanza, and the nodes as
// pg1..pgN through their own pgBackRest TLS servers (pgBackRest finds the primary among them), so a
// backup started there needs no rewrite at a failover.
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

/** The answer `pgherd backup` gives with repo_host (pgBackRest: "backup command must be run on the repository host"). */
export function repoHostBackupRefusal(host: string): string {
  return `[backup] repo_host = ${host}: pgBackRest runs a backup only on the repository host; start it there ` +
    "(`pgbackrest --stanza=… backup`, e.g. from a timer) with the pgbackrest.conf `pgherd backup repo-cert` prints";
}

/** The nodes the repository host backs up: `given` (host names or host:port), else this node's advertised host and every discovery peer's host; no duplicates. */
export function nodeHosts(cfg: Pick<Config, "discovery" | "mesh">, given: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const hp of given.length ? given : [cfg.mesh.advertise, ...cfg.discovery.peers]) {
    const r = hp ? parseHostPort(hp, 1) : "";
    if (typeof r !== "string" && !out.includes(r.host)) out.push(r.host);
  }
  return out;
}

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f\x7f=\s]/;

/** The repository host's pgbackrest.conf (files: where the certificate, key and CA will be on that host). */
export function renderRepoHostConf(cfg: Pick<Config, "cluster" | "postgres" | "backup">, stanza: string, nodes: readonly string[], f: BackrestTlsFiles, logDir = "/var/log/pgbackrest"): string {
  const b = cfg.backup;
  const pg = cfg.postgres;
  for (const v of [...nodes, f.caFile, f.certFile, f.keyFile, logDir]) {
    if (!v || UNSAFE.test(v)) throw new BackrestError(`repository host config: ${JSON.stringify(v)} is empty or contains a space, = or a control character`, null);
  }
  const tls = (k: string) => [`${k}-ca-file=${f.caFile}`, `${k}-cert-file=${f.certFile}`, `${k}-key-file=${f.keyFile}`];
  return [
    `# pgBackRest on the repository host of pgherd cluster ${cfg.cluster} (printed by pgherd backup repo-cert).`,
    "# Run `pgbackrest server` with it; start backups here (`pgbackrest --stanza=" + stanza + " backup`).",
    "[global]",
    `repo1-path=${b.repo_path}`,
    `repo1-retention-full=${b.retention_full}`,
    `log-path=${logDir}`,
    "log-level-console=warn",
    "start-fast=y",
    // The nodes archive with archive_mode = always, which pgBackRest's backup check refuses.
    "archive-mode-check=n",
    "tls-server-address=*",
    `tls-server-port=${b.repo_host_port}`,
    ...tls("tls-server"),
    `tls-server-auth=${CLIENT_CN}=${stanza}`,
    "",
    `[${stanza}]`,
    ...nodes.flatMap((h, i) => [
      `pg${i + 1}-host=${h}`, `pg${i + 1}-host-type=tls`, `pg${i + 1}-host-port=${b.tls_port}`, ...tls(`pg${i + 1}-host`),
      `pg${i + 1}-path=${pg.data_dir}`, `pg${i + 1}-port=${pg.port}`, `pg${i + 1}-socket-path=${socketDirOf(pg)}`, `pg${i + 1}-user=${pg.superuser}`,
    ]),
    "",
  ].join("\n");
}

/** The files `repo-cert` writes into `out` (0700): ca.crt, pgbackrest.crt, pgbackrest.key (0600, written once, never through a link). */
export async function writeRepoHostCert(ca: ClusterCa, host: string, out: string, owner: Owner, now: number): Promise<BackrestTlsFiles> {
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
  return { caFile: join(out, "ca.crt"), certFile: join(out, "pgbackrest.crt"), keyFile: join(out, "pgbackrest.key") };
}
