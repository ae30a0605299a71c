// The etcd client as configured for production: https with the CA and a client certificate (etcd
// started with --client-cert-auth), an etcd user whose password comes from a 0600 file, and RBAC
// limiting that user to its cluster's prefix. The backend elects itself under its prefix, cannot
// touch another cluster's keys, `/clusters` falls back to its own cluster, and a password file others
// may read is refused. Certificates are made with openssl for this run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { etcdClientOptions } from "../../src/consensus/create.ts";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { EtcdClient, type EtcdClientOptions } from "../../src/consensus/etcd/client.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { countFetches, EtcdCluster, etcdSkipReason } from "../helpers/etcd.ts";
import { mustRun, waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const OPENSSL = ["/usr/bin/openssl", "/bin/openssl"].find((p) => existsSync(p));
requireReal("etcd over TLS with RBAC", etcdSkipReason() ?? (OPENSSL ? null : "openssl is not installed (it makes the test certificates)"));

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** A CA, a server certificate for 127.0.0.1 and a client certificate without a CommonName (see docs/etcd.md). */
async function makeCerts(dir: string): Promise<void> {
  const ossl = (...args: string[]) => mustRun([OPENSSL!, ...args], { cwd: dir });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await ossl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=pgherd-test-ca");
  writeFileSync(join(dir, "srv.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  writeFileSync(join(dir, "cli.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [name, subj] of [["srv", "/CN=127.0.0.1"], ["cli", "/O=pgherd"]] as const) {
    await ossl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subj);
    await ossl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`);
  }
  chmodSync(join(dir, "cli.key"), 0o600);
}

describe("etcd over TLS with a password file and RBAC", () => {
  let dir: string;
  let etcd: EtcdCluster;
  let opts: EtcdClientOptions;
  let node: EtcdConsensus | undefined;
  const A = "aaaaaaaaaaaaaaa1";

  beforeAll(async () => {
    dir = mkdtempSync("/tmp/pgherd-etcd-tls-");
    await makeCerts(dir);
    const admin = (f: string) => Bun.file(join(dir, f)).text();
    const clientTls = { ca: await admin("ca.pem"), cert: await admin("cli.pem"), key: await admin("cli.key") };
    etcd = await EtcdCluster.start({ dir: join(dir, "etcd"), size: 1, tls: { certFile: join(dir, "srv.pem"), keyFile: join(dir, "srv.key"), caFile: join(dir, "ca.pem"), client: clientTls } });
    // RBAC through the gateway, before auth is on: root, and u1 limited to /pgherd/c1/.
    const call = async (path: string, body: unknown) => {
      const r = await fetch(`${etcd.endpoints()[0]}${path}`, { method: "POST", body: JSON.stringify(body), tls: clientTls } as RequestInit);
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    };
    await call("/v3/auth/user/add", { name: "root", password: "root-password" });
    await call("/v3/auth/user/grant", { user: "root", role: "root" });
    await call("/v3/auth/user/add", { name: "u1", password: "u1-password" });
    await call("/v3/auth/role/add", { name: "c1" });
    await call("/v3/auth/role/grant", { name: "c1", perm: { permType: "READWRITE", key: b64("/pgherd/c1/"), range_end: b64("/pgherd/c10") } });
    await call("/v3/auth/user/grant", { user: "u1", role: "c1" });
    await call("/v3/kv/put", { key: b64("/pgherd/c2/leader"), value: b64("bbbbbbbbbbbbbbb2") });
    await call("/v3/auth/enable", {});
    writeFileSync(join(dir, "password"), "u1-password\n", { mode: 0o600 });
    const cfg = parseConfig(`cluster = "c1"\nsecret = "${"k".repeat(40)}"\n[consensus]\nbackend = "etcd"\nendpoints = ${JSON.stringify(etcd.endpoints())}\n` +
      `tls_ca = "${join(dir, "ca.pem")}"\ntls_cert = "${join(dir, "cli.pem")}"\ntls_key = "${join(dir, "cli.key")}"\nusername = "u1"\npassword_file = "${join(dir, "password")}"\n`, "pgherd.toml");
    opts = etcdClientOptions(cfg);
  }, 60_000);

  afterAll(async () => {
    node?.stop();
    await etcd?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  test("the password comes from the file; a password file others may read is refused", () => {
    expect(opts.auth).toEqual({ username: "u1", password: "u1-password" });
    chmodSync(join(dir, "password"), 0o644);
    const cfg = { consensus: { ...parseConfig(`cluster = "c1"\nsecret = "${"k".repeat(40)}"\n`, "x").consensus, username: "u1", password_file: join(dir, "password") } };
    expect(() => etcdClientOptions(cfg)).toThrow(/consensus.password_file: .* has mode 0644/);
    chmodSync(join(dir, "password"), 0o600);
  });

  test("the backend elects itself under its own prefix over TLS with the user's token", async () => {
    const sdir = mkdtempSync(join(dir, "state-"));
    node = new EtcdConsensus({
      client: new EtcdClient(opts), keys: clusterKeys("/pgherd", "c1"),
      self: { id: A, name: "a", role: "database", canLead: true, priority: 100 },
      ttlS: 2, pollMs: 100, maxDrift: 0.02, fenceMs: 200, deferMs: 1000, store: new ElectionStore(sdir), log: memoryLogger(),
      hooks: { send: () => {}, leaseHeld: () => {}, leaseLost: async () => {}, leadershipChanged: () => {}, fatal: (m) => { throw new Error(m); } },
    });
    node.start();
    await node.setPosition({ timeline: 1, lsn: "0/0" }); // the agent's first round: a database node takes part only once it reported
    await node.bootstrap({ term: 0, index: 1, voters: [A] });
    await waitFor(() => node!.lease() !== null, { timeoutMs: 10_000, what: "a to lead c1" });
    expect((await node.clusters()).map((c) => [c.cluster, c.leader])).toEqual([["c1", "a"]]); // c2 is not readable by u1
  }, 20_000);

  test("RBAC: the user cannot read or write another cluster's keys; without a client certificate the handshake fails", async () => {
    const c = new EtcdClient(opts);
    await expect(c.range("/pgherd/c2/", { prefix: true })).rejects.toThrow(/permission denied/);
    await expect(c.txn([], [{ put: { key: "/pgherd/c2/leader", value: "x" } }])).rejects.toThrow(/permission denied/);
    await expect(new EtcdClient({ ...opts, tls: { ca: opts.tls!.ca } }).range("/pgherd/c1/")).rejects.toThrow();
    await expect(new EtcdClient({ ...opts, auth: { username: "u1", password: "wrong" } }).range("/pgherd/c1/")).rejects.toThrow(/authentication failed/);
  });

  test("calls of a client without a token at the same moment share one login (each costs etcd a bcrypt check)", async () => {
    const c = new EtcdClient(opts);
    const logins = countFetches((url) => url.endsWith("/v3/auth/authenticate"));
    try {
      await Promise.all(Array.from({ length: 20 }, () => c.range("/pgherd/c1/", { prefix: true })));
    } finally {
      logins.stop();
    }
    expect(logins.count).toBe(1);
  });
});
