// This node's pgBackRest files with a repository host ([backup] repo_host): ensureBackrestConf runs
// with every PostgreSQL config write (walSettings: a standby's round, the end of a promotion) and
// only issues a missing certificate; ensureBackrestForRestore, before a restore, also renews one
// that is due. Found by review: renewal had moved into every config write, so a failure of it (a
// refused tls directory, a full disk) failed the write and the end of a promotion; before that, a
// restore went to the repository host with an expired certificate or another CA's.
import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backrestPaths, backrestTlsFiles, type BackrestPaths, RESTORE_STOP_CODE } from "../../src/backup/pgbackrest.ts";
import { ensureBackrestCert } from "../../src/backup/tls-server.ts";
import { ensureBackrestForRestore, walSettings } from "../../src/backup/wal-settings.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot } from "../../src/postgres/users.ts";
import { SecretsStore } from "../../src/store/cluster-secrets.ts";
import { defaultHosts } from "../../src/tls/node-tls.ts";
import { certFacts, createCa } from "../../src/tls/x509.ts";

const DAY = 86_400_000;
const root = mkdtempSync(join(tmpdir(), "pgherd-wal-settings-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));
const osUser = isRoot() ? "postgres" : (process.env.USER ?? "postgres");
const ca = createCa("t", Date.now());
const otherCa = createCa("t", Date.now());
const sock = join(root, "sock");

async function repoHostNode(name: string) {
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/${name}-state"\n` +
    `[postgres]\ndata_dir = "${root}/${name}-pgdata"\nos_user = "${osUser}"\n[backup]\ntool = "pgbackrest"\ntls_port = 1\nrepo_host = "10.0.0.9"\n`, "test");
  mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  new SecretsStore(cfg.state_dir).set({ systemId: null, replPassword: "r".repeat(16), monitorPassword: "m".repeat(16), ca });
  return { cfg, p: backrestPaths(cfg), hosts: defaultHosts(cfg) };
}

const onDisk = (p: { dir: string }, caPem: string) =>
  certFacts(readFileSync(backrestTlsFiles(p).certFile, "utf8"), readFileSync(backrestTlsFiles(p).keyFile, "utf8"), caPem)!;

/** The tls directory made a link (which SafeDir refuses) to a copy of what it held: every write there fails, the files still read. */
function refuseTlsDir(p: BackrestPaths, keepFiles: boolean): void {
  const tls = join(p.dir, "tls");
  const moved = `${tls}-moved`;
  if (keepFiles) {
    rmSync(moved, { recursive: true, force: true });
    renameSync(tls, moved);
  } else {
    rmSync(tls, { recursive: true, force: true });
    mkdirSync(moved, { recursive: true, mode: 0o700 });
  }
  symlinkSync(moved, tls);
}

describe("walSettings (every PostgreSQL config write) with a repository host", () => {
  test("issues a missing certificate", async () => {
    const n = await repoHostNode("missing");
    const w = await walSettings(n.cfg, sock, true, 16);
    expect(w.archive).toBeDefined();
    expect(onDisk(n.p, ca.cert).signedByCa).toBe(true);
  });

  test("a node restoring from a backup gets the restore_command that stops on errors and ignores the repo-down file; others the flagged one", async () => {
    const n = await repoHostNode("restoring");
    expect((await walSettings(n.cfg, sock, false, 16, undefined, true)).archive?.restoreCommand).toContain(`exit ${RESTORE_STOP_CODE}`);
    expect((await walSettings(n.cfg, sock, false, 16, undefined, true)).archive?.restoreCommand).not.toContain("repo-down");
    expect((await walSettings(n.cfg, sock, true, 16)).archive?.restoreCommand).toStartWith("test ! -e ");
  });

  test("leaves a certificate that is due alone, and a renewal that would fail cannot fail it", async () => {
    const n = await repoHostNode("due");
    await ensureBackrestCert(n.cfg, n.p, ca, n.hosts, undefined, Date.now() - 100 * DAY);
    refuseTlsDir(n.p, true);
    const w = await walSettings(n.cfg, sock, true, 16);
    expect(w.archive).toBeDefined();
    expect(onDisk(n.p, ca.cert).notAfterMs).toBeLessThan(Date.now());
  });
});

describe("ensureBackrestForRestore (before a restore)", () => {
  test("an expired certificate is renewed, not only a missing one", async () => {
    const n = await repoHostNode("expired");
    await ensureBackrestCert(n.cfg, n.p, ca, n.hosts, undefined, Date.now() - 100 * DAY);
    expect(onDisk(n.p, ca.cert).notAfterMs).toBeLessThan(Date.now());
    const log = memoryLogger();
    await ensureBackrestForRestore(n.cfg, sock, log);
    expect(onDisk(n.p, ca.cert).notAfterMs).toBeGreaterThan(Date.now() + 89 * DAY);
    expect(log.lines.some((l) => l.includes("new certificate (expired)"))).toBe(true);
  });

  test("another CA's certificate is replaced by one of the cluster CA", async () => {
    const n = await repoHostNode("other-ca");
    await ensureBackrestCert(n.cfg, n.p, otherCa, n.hosts, undefined, Date.now());
    await ensureBackrestForRestore(n.cfg, sock, memoryLogger());
    expect(onDisk(n.p, ca.cert).signedByCa).toBe(true);
    expect(new X509Certificate(readFileSync(backrestTlsFiles(n.p).caFile, "utf8")).fingerprint256).toBe(new X509Certificate(ca.cert).fingerprint256);
  });

  test("a renewal that fails is logged and the restore goes on with the certificate on disk", async () => {
    const n = await repoHostNode("renew-fails");
    await ensureBackrestCert(n.cfg, n.p, ca, n.hosts, undefined, Date.now() - 80 * DAY);
    refuseTlsDir(n.p, true);
    const log = memoryLogger();
    expect((await ensureBackrestForRestore(n.cfg, sock, log)).conf).toBe(n.p.conf);
    expect(log.lines.some((l) => l.includes("renewing this node's certificate before the restore failed") && l.includes("goes on with the one on disk"))).toBe(true);
  });

  test("no certificate and none can be written: the restore fails", async () => {
    const n = await repoHostNode("none");
    await ensureBackrestForRestore(n.cfg, sock, memoryLogger());
    refuseTlsDir(n.p, false);
    await expect(ensureBackrestForRestore(n.cfg, sock, memoryLogger())).rejects.toThrow();
  });
});

describe("walSettings with a shared repository directory (repo_path)", () => {
  test("a repository that cannot be made fails no config write: archiving is set, the problem said once, and it is made once it can be", async () => {
    const blocker = join(root, "repo-blocker");
    writeFileSync(blocker, "a file where the repository's parent should be\\n");
    const repo = join(blocker, "repo");
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/repo-state"\n` +
      `[postgres]\ndata_dir = "${root}/repo-pgdata"\nos_user = "${osUser}"\n[backup]\ntool = "pgbackrest"\nrepo_path = "${repo}"\n`, "test");
    const log = memoryLogger();
    const w = await walSettings(cfg, sock, false, 16, log);
    expect(w.archive?.archiveCommand).toContain("wal-push");
    await walSettings(cfg, sock, true, 16, log);
    const said = log.lines.filter((l) => l.includes(`[backup] repo_path ${repo}`));
    expect(said.length).toBe(1);
    expect(said[0]).toContain("WAL archiving fails");
    rmSync(blocker);
    mkdirSync(blocker, { mode: 0o755 });
    await walSettings(cfg, sock, false, 16, log);
    expect(statSync(repo).isDirectory()).toBe(true);
  });
});
