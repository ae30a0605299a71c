// This node's replication TLS files: the cluster CA certificate, its own certificate (issued and
// renewed here, signed with the cluster CA from the cluster secrets) and key, in
// `<data_dir>.tls/` (outside the data directory: base backups copy it), all 0600 and owned by
// the PostgreSQL OS user. Written through SafeDir: never through a link, also as root.
import { networkInterfaces } from "node:os";
import { parseHostPort } from "../config/hostport.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { ensureDir, SafeDir, type Owner } from "../postgres/fsutil.ts";
import { lookupOsUser } from "../postgres/users.ts";
import type { ClusterCa, ClusterSecrets } from "../store/cluster-secrets.ts";
import { renewal, sanList, sanText } from "./plan.ts";
import { certFacts, createCa, fingerprint, issueNodeCert } from "./x509.ts";

export const CA_FILE = "ca.crt";
export const CERT_FILE = "server.crt";
export const KEY_FILE = "server.key";

/** Absolute paths PostgreSQL is configured with (ssl_cert_file, ssl_key_file, ssl_ca_file). */
export interface SslFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Where the cluster secrets come from and go to (the agent's ClusterContext: src/agent/loop-context.ts). */
export interface SecretsAccess {
  secrets(): ClusterSecrets | undefined;
  saveSecrets(s: ClusterSecrets): void;
}

export interface NodeTlsOptions {
  cfg: Config;
  secrets: SecretsAccess;
  log: Logger;
  /** Wall-clock time (certificate validity is calendar time). */
  wallNow?: () => number;
  /** Addresses this node's PostgreSQL may be dialled at; default: interface addresses and configured hosts. */
  hosts?: () => string[];
}

/** `<data_dir>.tls`, beside `<data_dir>.pgpass` and `<data_dir>.sock`. */
export function tlsDirFor(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}.tls`;
}

export class NodeTls {
  readonly enabled: boolean;
  readonly dir: string;
  /** A CA made by a bootstrapping primary before the cluster secrets exist (establishIdentity stores it). */
  private pending: ClusterCa | null = null;

  constructor(private readonly o: NodeTlsOptions) {
    this.enabled = o.cfg.postgres.replication_tls;
    this.dir = tlsDirFor(o.cfg.postgres.data_dir);
    if (!this.enabled) {
      o.log.warn("replication TLS is off ([postgres] replication_tls = false): replication, clone and rewind connections are " +
        "unencrypted and the server at a peer's address is not authenticated");
    }
  }

  files(): SslFiles {
    return { certFile: `${this.dir}/${CERT_FILE}`, keyFile: `${this.dir}/${KEY_FILE}`, caFile: `${this.dir}/${CA_FILE}` };
  }

  /** Spread into new cluster secrets: the CA this node already uses (or a new one). */
  caForNewSecrets(): { ca?: ClusterCa } {
    if (!this.enabled) return {};
    this.pending ??= createCa(this.o.cfg.cluster, this.now());
    return { ca: this.pending };
  }

  /**
   * The server's files, current: CA certificate written, node certificate issued or renewed when
   * renewal() says so. `ssl` null: TLS off, or no CA known yet (a standby before the leader's
   * secrets). `changed`: files that changed (PostgreSQL reloads them on SIGHUP).
   * `primary`: this node runs (or is about to run) the primary, so it may create the cluster CA.
   */
  async prepare(primary: boolean): Promise<{ ssl: SslFiles | null; changed: string[] }> {
    if (!this.enabled) return { ssl: null, changed: [] };
    const ca = this.ca(primary);
    if (!ca) return { ssl: null, changed: [] };
    const changed: string[] = [];
    await this.inDir(async (d, owner) => {
      const put = async (name: string, text: string) => {
        if (await d.writeAtomic(name, text, { mode: 0o600, owner })) changed.push(`${this.dir}/${name}`);
      };
      await put(CA_FILE, ca.cert);
      const cert = await d.readText(CERT_FILE);
      const key = await d.readText(KEY_FILE);
      const now = this.now();
      const want = sanList(this.hosts());
      const decision = renewal(now, cert ? certFacts(cert, key, ca.cert) : null, want);
      if (!decision.renew) return;
      const issued = issueNodeCert(ca, this.o.cfg.node_name, want, now);
      await put(KEY_FILE, issued.key);
      await put(CERT_FILE, issued.cert);
      this.o.log.info(`replication TLS: new certificate for ${want.map(sanText).join(", ") || "(no address)"} (${decision.reason}), signed by the cluster CA ${fingerprint(ca.cert).slice(0, 23)}…`);
    });
    return { ssl: this.files(), changed };
  }

  /**
   * libpq keywords for replication, clone and rewind connections: the server must present a
   * certificate of the cluster CA naming the address dialled, and SCRAM with channel binding is the
   * only authentication accepted (no password is ever sent in clear). Writes the CA file first.
   * undefined when TLS is off.
   */
  async client(): Promise<Record<string, string> | undefined> {
    if (!this.enabled) return undefined;
    const ca = this.o.secrets.secrets()?.ca;
    if (ca) await this.inDir((d, owner) => d.writeAtomic(CA_FILE, ca.cert, { mode: 0o600, owner }));
    // Without a CA yet the file is missing and libpq refuses to connect: never a plain fallback.
    return { sslmode: "verify-full", sslrootcert: this.files().caFile, channel_binding: "require" };
  }

  private ca(primary: boolean): ClusterCa | null {
    const s = this.o.secrets.secrets();
    if (s?.ca) return s.ca;
    if (!primary) return null;
    const ca = this.caForNewSecrets().ca ?? null;
    // A cluster created before replication TLS: its leader adds the CA to the secrets it shares.
    if (s && ca) {
      this.o.log.info(`replication TLS: created the cluster CA ${fingerprint(ca.cert).slice(0, 23)}…`);
      this.o.secrets.saveSecrets({ ...s, ca });
    }
    return ca;
  }

  private async inDir<T>(fn: (d: SafeDir, owner: Owner) => Promise<T>): Promise<T> {
    const u = await lookupOsUser(this.o.cfg.postgres.os_user);
    const owner = { uid: u.uid, gid: u.gid };
    await ensureDir(this.dir, 0o700, owner);
    const d = await SafeDir.open(this.dir, { osUser: owner });
    try {
      return await fn(d, owner);
    } finally {
      await d.close();
    }
  }

  private now(): number {
    return (this.o.wallNow ?? Date.now)();
  }

  private hosts(): string[] {
    return this.o.hosts?.() ?? defaultHosts(this.o.cfg);
  }
}

/** Every address of this host's interfaces, plus the hosts named in listen_addresses, mesh.listen and mesh.advertise. */
export function defaultHosts(cfg: Config): string[] {
  const ifs = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
  const configured = [cfg.mesh.advertise, cfg.mesh.listen].flatMap((hp) => {
    const r = hp ? parseHostPort(hp, 1) : "";
    return typeof r === "string" ? [] : [r.host];
  });
  return [...ifs, ...cfg.postgres.listen_addresses.split(",").map((s) => s.trim()), ...configured];
}
