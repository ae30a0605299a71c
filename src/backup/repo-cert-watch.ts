// The certificate the repository host ([backup] repo_host) presents, read with a handshake without
// a client certificate (tls/peer-cert.ts) and judged by repo-cert-notice.ts: within 30 days of its
// end, expired, or not the cluster CA's. The primary's agent reads it once a day and logs a warning
// then, beside the monitoring round (never awaited there; a failed read is retried in an hour,
// repo-down.ts deals with a host that is down); `pgherd backup ls` prints what it finds.
import { join } from "node:path";
import { formatHostPort } from "../config/hostport.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { SafeDir } from "../postgres/fsutil.ts";
import { lookupOsUser } from "../postgres/users.ts";
import type { ClusterCa } from "../store/cluster-secrets.ts";
import { peerCert, type PeerCert } from "../tls/peer-cert.ts";
import type { BackrestPaths } from "./pgbackrest.ts";
import { repoCertCheckDue, repoCertStatus } from "./repo-cert-notice.ts";

const READ_TIMEOUT_MS = 10_000;

export type ReadPeerCert = (host: string, port: number, caPem: string, timeoutMs: number) => Promise<PeerCert>;

export class RepoCertWatch {
  private last: { atMs: number; ok: boolean } | null = null;
  private reading: Promise<void> | null = null;
  /** Bumped by becamePrimary: a read started before then records nothing. */
  private gen = 0;

  constructor(private readonly host: string, private readonly port: number, private readonly log: Logger,
    private readonly now: () => number = Date.now, private readonly read: ReadPeerCert = peerCert) {}

  /** The node became the primary (again): its first round as the primary reads. */
  becamePrimary(): void {
    this.last = null;
    this.gen++;
  }

  /** Every round on the primary: starts a read when one is due; returns at once. */
  maintain(ca: ClusterCa | undefined): void {
    const now = this.now();
    if (!ca || this.reading || !repoCertCheckDue(now, this.last)) return;
    const at = formatHostPort({ host: this.host, port: this.port });
    const gen = this.gen;
    const record = (ok: boolean) => {
      if (gen === this.gen) this.last = { atMs: now, ok };
    };
    this.reading = this.read(this.host, this.port, ca.cert, READ_TIMEOUT_MS).then((c) => {
      const s = repoCertStatus(this.now(), c, at);
      record(true);
      if (s.warn) this.log.warn(s.text);
      else this.log.debug(s.text);
    }).catch((e: Error) => {
      record(false);
      this.log.debug(`the repository host's certificate (${at}): not read (${e.message}); again in an hour`);
    }).finally(() => {
      this.reading = null;
    });
  }
}

/**
 * For `pgherd backup ls`: what repo-cert-notice.ts says about the certificate the repository host
 * presents, checked against the CA this node's pgBackRest trusts (<data_dir>.pgbackrest/tls/ca.crt,
 * read without following a link: the OS user owns that directory).
 */
export async function repoHostCertStatus(cfg: Pick<Config, "postgres" | "backup">, p: Pick<BackrestPaths, "dir">, now: number, read: ReadPeerCert = peerCert): Promise<{ warn: boolean; text: string }> {
  const at = formatHostPort({ host: cfg.backup.repo_host, port: cfg.backup.repo_host_port });
  try {
    const u = await lookupOsUser(cfg.postgres.os_user);
    const d = await SafeDir.open(join(p.dir, "tls"), { osUser: { uid: u.uid, gid: u.gid } });
    let ca: string | null;
    try {
      ca = await d.readText("ca.crt");
    } finally {
      await d.close();
    }
    if (!ca) throw new Error("this node has no cluster CA file yet");
    return repoCertStatus(now, await read(cfg.backup.repo_host, cfg.backup.repo_host_port, ca, READ_TIMEOUT_MS), at);
  } catch (e) {
    return { warn: true, text: `the repository host's certificate (${at}): not read (${(e as Error).message})` };
  }
}
