// The repository host's certificate as the agents see it: read with a handshake that presents no
// client certificate (tls/peer-cert.ts), once a day on the primary, a warning within 30 days of its
// end (repo-cert-watch.ts); `pgherd backup ls` prints the same. A TLS server in this process plays
// the repository host (test/backup/tls-reload.test.ts reads a real `pgbackrest server`).
import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as netServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as tlsServer } from "node:tls";
import { ArchiveKeeper } from "../../src/backup/keeper.ts";
import { backrestPaths } from "../../src/backup/pgbackrest.ts";
import { repoHostCertStatus, RepoCertWatch } from "../../src/backup/repo-cert-watch.ts";
import { backrestSans, CLIENT_CN, ensureBackrestCert } from "../../src/backup/tls-server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot } from "../../src/postgres/users.ts";
import { peerCert, type PeerCert } from "../../src/tls/peer-cert.ts";
import type { San } from "../../src/tls/plan.ts";
import { createCa, issueNodeCert } from "../../src/tls/x509.ts";
import { waitFor } from "../helpers/proc.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const root = mkdtempSync(join(tmpdir(), "pgherd-repocert-watch-"));
chmodSync(root, 0o755);
const ca = createCa("w", Date.now());
const otherCa = createCa("w", Date.now());
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(root, { recursive: true, force: true });
});

/** A TLS server on 127.0.0.1 presenting a certificate of `by` issued `ageDays` ago (valid 90 days) naming `sans`; counts connections. */
async function repoHost(by = ca, ageDays = 80, sans: San[] = backrestSans(["127.0.0.1"])): Promise<{ port: number; notAfterMs: number; fingerprint256: string; connections: () => number }> {
  const c = issueNodeCert(by, CLIENT_CN, sans, Date.now() - ageDays * DAY);
  let n = 0;
  const s = tlsServer({ key: c.key, cert: c.cert }, (sock) => sock.end());
  s.on("connection", () => n++);
  servers.push(s);
  await new Promise<void>((res) => s.listen(0, "127.0.0.1", res));
  const x = new X509Certificate(c.cert);
  return { port: (s.address() as AddressInfo).port, notAfterMs: x.validToDate.getTime(), fingerprint256: x.fingerprint256, connections: () => n };
}

describe("peerCert", () => {
  test("the certificate the server presents: its end, whether the cluster CA signed it, whether it names the host, its fingerprint", async () => {
    const h = await repoHost(ca, 80);
    expect(await peerCert("127.0.0.1", h.port, ca.cert, 5000)).toEqual({ notAfterMs: h.notAfterMs, signedByCa: true, namesHost: true, fingerprint256: h.fingerprint256 });
    expect((await peerCert("127.0.0.1", h.port, otherCa.cert, 5000)).signedByCa).toBe(false);
  });

  test("a certificate made for another host does not name the host dialed (pgBackRest refuses it)", async () => {
    const h = await repoHost(ca, 10, backrestSans(["10.0.0.9", "repo.example"]));
    expect((await peerCert("127.0.0.1", h.port, ca.cert, 5000)).namesHost).toBe(false);
  });

  test("an IP address is matched as a DNS name, as pgBackRest does: an IP entry alone does not name it", async () => {
    const ipOnly = await repoHost(ca, 10, [{ ip: "127.0.0.1" }]);
    expect((await peerCert("127.0.0.1", ipOnly.port, ca.cert, 5000)).namesHost).toBe(false);
    const dnsText = await repoHost(ca, 10, [{ dns: "127.0.0.1" }]);
    expect((await peerCert("127.0.0.1", dnsText.port, ca.cert, 5000)).namesHost).toBe(true);
  });

  test("nothing listening: rejected", async () => {
    const s = netServer();
    await new Promise<void>((res) => s.listen(0, "127.0.0.1", res));
    const port = (s.address() as AddressInfo).port;
    s.close();
    await expect(peerCert("127.0.0.1", port, ca.cert, 5000)).rejects.toThrow();
  });

  test("a server that takes the connection and never answers: rejected at the deadline", async () => {
    const s = netServer(() => {});
    servers.push(s);
    await new Promise<void>((res) => s.listen(0, "127.0.0.1", res));
    const t0 = performance.now();
    await expect(peerCert("127.0.0.1", (s.address() as AddressInfo).port, ca.cert, 300)).rejects.toThrow(/no TLS handshake .* within 300 ms/);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});

describe("RepoCertWatch (the primary's agent)", () => {
  const T = Date.now();
  function watch(read: (n: number) => Promise<PeerCert>) {
    const clock = { t: T };
    const log = memoryLogger();
    let calls = 0;
    const w = new RepoCertWatch("10.0.0.9", 8432, log, () => clock.t, () => read(++calls));
    return { w, log, clock, calls: () => calls };
  }
  const warnings = (log: { lines: string[] }) => log.lines.filter((l) => l.startsWith("warn "));
  type Watch = ReturnType<typeof watch>;
  /** No second read `afterMs` - 1 ms after the first, one at `afterMs`, which warns (the `n`th warning). */
  async function readsAgainAfter(x: Watch, afterMs: number, n: number): Promise<void> {
    x.clock.t += afterMs - 1;
    x.w.maintain(ca);
    await Bun.sleep(50);
    expect(x.calls()).toBe(1);
    x.clock.t += 1;
    x.w.maintain(ca);
    await waitFor(() => warnings(x.log).length === n, { timeoutMs: 2000, what: `warning ${n}` });
  }

  test("a certificate within 30 days of its end: a warning, once a day", async () => {
    const x = watch(async () => ({ notAfterMs: T + 10 * DAY, signedByCa: true, namesHost: true, fingerprint256: "F" }));
    x.w.maintain(ca);
    await waitFor(() => warnings(x.log).length === 1, { timeoutMs: 2000, what: "the warning" });
    expect(warnings(x.log)[0]).toContain("the repository host's certificate (10.0.0.9:8432) expires in 10 day(s)");
    await readsAgainAfter(x, DAY, 2);
  });

  test("more than 30 days left: no warning (a debug line)", async () => {
    const x = watch(async () => ({ notAfterMs: T + 60 * DAY, signedByCa: true, namesHost: true, fingerprint256: "F" }));
    x.w.maintain(ca);
    await waitFor(() => x.log.lines.some((l) => l.startsWith("debug ") && l.includes("is valid until")), { timeoutMs: 2000, what: "the debug line" });
    expect(warnings(x.log)).toEqual([]);
  });

  test("a failed read is tried again an hour later, not before", async () => {
    const x = watch(async (n) => {
      if (n === 1) throw new Error("connection refused");
      return { notAfterMs: T + 5 * DAY, signedByCa: true, namesHost: true, fingerprint256: "F" };
    });
    x.w.maintain(ca);
    await waitFor(() => x.log.lines.some((l) => l.includes("not read (connection refused)")), { timeoutMs: 2000, what: "the failed read" });
    await readsAgainAfter(x, HOUR, 1);
  });

  test("a certificate whose end cannot be printed: taken as a failed read (logged, again in an hour), never thrown", async () => {
    const x = watch(async (n) => ({ notAfterMs: n === 1 ? Number.NaN : T + 5 * DAY, signedByCa: true, namesHost: true, fingerprint256: "F" }));
    x.w.maintain(ca);
    await waitFor(() => x.log.lines.some((l) => l.includes("not read (")), { timeoutMs: 2000, what: "the failed read" });
    await readsAgainAfter(x, HOUR, 1);
  });

  test("no cluster CA yet: nothing read", async () => {
    const x = watch(async () => ({ notAfterMs: T, signedByCa: true, namesHost: true, fingerprint256: "F" }));
    x.w.maintain(undefined);
    await Bun.sleep(50);
    expect(x.calls()).toBe(0);
  });
});

const osUser = isRoot() ? "postgres" : (process.env.USER ?? "postgres");
function repoHostConfig(name: string, port: number) {
  return parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/${name}-state"\n` +
    `[postgres]\ndata_dir = "${root}/${name}-pgdata"\nos_user = "${osUser}"\n[backup]\ntool = "pgbackrest"\nrepo_host = "127.0.0.1"\nrepo_host_port = ${port}\ntls_port = 1\n`, "test");
}

test("the primary's archive keeper warns about the repository host's certificate; a standby's does not read it", async () => {
  const h = await repoHost(ca, 80);
  const fake = join(root, "keeper-pgbackrest");
  writeFileSync(fake, `#!/bin/sh\ncase "$1" in server) trap 'exit 0' TERM; while :; do sleep 0.05; done ;; esac\nexit 0\n`, { mode: 0o755 });
  const cfg = repoHostConfig("keeper", h.port);
  const standbyLog = memoryLogger();
  const standby = new ArchiveKeeper(cfg, standbyLog, () => ca, null, Date.now, fake);
  const log = memoryLogger();
  const primary = new ArchiveKeeper(cfg, log, () => ca, null, Date.now, fake);
  try {
    await standby.maintain(false, "7714652627403131537");
    await primary.maintain(true, "7714652627403131537");
    await waitFor(() => log.lines.some((l) => l.startsWith("warn ") && l.includes("expires in 10 day(s)")), { timeoutMs: 10_000, what: "the warning" });
    expect(h.connections()).toBe(1);
    expect(standbyLog.lines.some((l) => l.includes("repository host's certificate"))).toBe(false);
  } finally {
    await standby.close();
    await primary.close();
  }
}, 30_000);

test("a node that becomes the primary again reads the certificate at its first round as the primary, not a day after its last read", async () => {
  const h = await repoHost(ca, 80);
  const fake = join(root, "again-pgbackrest");
  writeFileSync(fake, `#!/bin/sh\ncase "$1" in server) trap 'exit 0' TERM; while :; do sleep 0.05; done ;; esac\nexit 0\n`, { mode: 0o755 });
  const log = memoryLogger();
  const keeper = new ArchiveKeeper(repoHostConfig("again", h.port), log, () => ca, null, Date.now, fake);
  const warned = () => log.lines.filter((l) => l.startsWith("warn ") && l.includes("expires in 10 day(s)")).length;
  try {
    await keeper.maintain(true, "7714652627403131537");
    await waitFor(() => warned() === 1, { timeoutMs: 10_000, what: "the first warning" });
    await keeper.maintain(false, "7714652627403131537");
    await keeper.maintain(true, "7714652627403131537");
    await waitFor(() => warned() === 2, { timeoutMs: 10_000, what: "the warning after the promotion" });
    expect(h.connections()).toBe(2);
  } finally {
    await keeper.close();
  }
}, 30_000);

test("pgherd backup ls: the repository host's certificate, checked against this node's CA file", async () => {
  const h = await repoHost(ca, 10);
  const cfg = repoHostConfig("ls", h.port);
  const p = backrestPaths(cfg);
  await ensureBackrestCert(cfg, p, ca, ["127.0.0.1"], undefined, Date.now());
  expect(await repoHostCertStatus(cfg, p, Date.now())).toEqual({ warn: false, text: `the repository host's certificate (127.0.0.1:${h.port}) is valid until ${new Date(h.notAfterMs).toISOString()} (79 days)` });
  const other = await repoHost(otherCa, 10);
  const s = await repoHostCertStatus({ ...cfg, backup: { ...cfg.backup, repo_host_port: other.port } }, p, Date.now());
  expect(s).toEqual({ warn: true, text: expect.stringContaining("is not signed by the cluster CA") });
  expect(await repoHostCertStatus(repoHostConfig("no-ca-file", h.port), backrestPaths(repoHostConfig("no-ca-file", h.port)), Date.now()))
    .toEqual({ warn: true, text: expect.stringContaining("not read (") });
});
