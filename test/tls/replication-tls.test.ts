// Replication TLS against real PostgreSQL: the files NodeTls writes make a server that only admits
// pgherd's roles over verified TLS; a clone (pg_basebackup), a streaming standby (walreceiver) and
// pg_rewind connect with verify-full + channel binding; renewal is a reload (same postmaster);
// and a standby pointed at a server without a certificate of the cluster CA (issue 10's attack:
// replayed beacons put a fake server at the upstream address) sends it neither a startup packet nor
// the password, while the connection string of before (no sslmode) hands the password over.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { basebackup, BasebackupError } from "../../src/postgres/basebackup.ts";
import { initdb, reload, start, status, stop, type PgNode } from "../../src/postgres/ctl.ts";
import { runTool } from "../../src/postgres/exec.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { generatePassword, writePassfile } from "../../src/postgres/passwords.ts";
import { buildConninfo } from "../../src/postgres/pgconf.ts";
import { rewind, RewindError } from "../../src/postgres/rewind.ts";
import { ensureRoles } from "../../src/postgres/roles.ts";
import { ensureSlot } from "../../src/postgres/slots.ts";
import { openLocalDb, type Db } from "../../src/postgres/sql.ts";
import { writeFileAtomic } from "../../src/postgres/fsutil.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import type { ClusterSecrets } from "../../src/store/cluster-secrets.ts";
import { NodeTls, type SslFiles } from "../../src/tls/node-tls.ts";
import { createCa, issueNodeCert } from "../../src/tls/x509.ts";
import { sanList } from "../../src/tls/plan.ts";
import { freePort, PG_OS_USER, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { fakePg, type FakePg } from "./fake-pg.ts";

const SU = "postgres";
const REPL = "pgherd_repl";
const MON = "pgherd_mon";
const DAY = 86_400_000;
const log = memoryLogger();

requireReal("replication TLS on real PostgreSQL", pgSkipReason);

describe("replication TLS on real PostgreSQL", () => {
  let s: Scratch;
  let primary: PgNode;
  let standby: PgNode;
  let ports: { p: number; s: number };
  let tls: NodeTls;
  let ssl: SslFiles;
  // The first certificate is issued "61 days ago" (valid 29 more days): the renewal test then runs at the real time.
  let wall = Date.now() - 61 * DAY;
  let passfile: string;
  const fakes: FakePg[] = [];
  const dbs: Db[] = [];
  // The cluster secrets as an older cluster has them (no CA yet): the primary adds one.
  let secrets: ClusterSecrets = { systemId: null, replPassword: generatePassword(), monitorPassword: generatePassword() };

  const managed = (n: PgNode, port: number, o: { standby: boolean; conninfo?: string; ssl?: SslFiles }): ManagedConfig => ({
    dataDir: n.dataDir, osUser: PG_OS_USER, standby: o.standby, log,
    conf: {
      listenAddresses: ["127.0.0.1"], port, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true,
      unixSocketDir: s.socketDir, primaryConninfo: o.conninfo, primarySlotName: o.standby ? "s1" : undefined, ssl: o.ssl,
      parameters: { fsync: false, shared_buffers: "16MB" },
    },
    hba: { superuser: SU, replUser: REPL, monitorUser: MON, peers: ["127.0.0.1"], tls: true },
  });
  const local = (port: number) => {
    const db = openLocalDb({ socketDir: s.socketDir, port, superuser: SU, log });
    dbs.push(db);
    return db;
  };
  /** A libpq client as the replication user (runs as the postgres OS user, like the walreceiver). */
  const psql = (conninfo: string, sql: string) =>
    runTool({ bin: join(primary.bins.dir, "psql"), args: ["-X", "-At", "-d", conninfo, "-c", sql], env: { PGPASSFILE: passfile }, user: PG_OS_USER, timeoutMs: 15_000, log });
  const conninfo = async (port: number, extra?: Record<string, string>) =>
    buildConninfo({ host: "127.0.0.1", port, user: REPL, passfile, connectTimeoutSec: 5, extra: { dbname: "postgres", ...extra } });
  /** The certificate the server presents right now (openssl s_client, STARTTLS of the PostgreSQL protocol). */
  const served = async (port: number): Promise<X509Certificate> => {
    const r = await runTool({ bin: "openssl", args: ["s_client", "-starttls", "postgres", "-connect", `127.0.0.1:${port}`], input: "", timeoutMs: 10_000, log, quiet: true });
    const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout);
    if (!m) throw new Error(`no certificate from 127.0.0.1:${port}: ${r.stderr}`);
    return new X509Certificate(m[0]);
  };

  beforeAll(async () => {
    s = await pgScratch("tls");
    primary = s.node("primary", log.withTag("primary"));
    standby = s.node("standby", log.withTag("standby"));
    const p = await freePort();
    ports = { p, s: await freePort([p]) };
    const cfg = parseConfig(`cluster = "tls"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\n[postgres]\ndata_dir = "${primary.dataDir}"\nlisten_addresses = "127.0.0.1"\n`, "test");
    tls = new NodeTls({ cfg, log, secrets: { secrets: () => secrets, saveSecrets: (v) => { secrets = v; } }, wallNow: () => wall, hosts: () => ["127.0.0.1"] });
    const u = await lookupOsUser(PG_OS_USER);
    passfile = join(s.root, "pgpass");
    await writePassfile(passfile, [{ host: "*", port: "*", database: "*", user: REPL, password: secrets.replPassword }], { uid: u.uid, gid: u.gid });
  }, 30_000);

  afterAll(async () => {
    if (process.env.PG_TEST_DUMP) console.log(log.lines.join("\n"));
    for (const f of fakes) await f.close();
    for (const db of dbs) await db.close();
    await s?.cleanup();
  });

  test("the primary creates the cluster CA, issues its certificate and starts with ssl = on", async () => {
    await initdb(primary, { superuser: SU, noSync: true });
    const r = await tls.prepare(true);
    expect(secrets.ca?.cert).toContain("BEGIN CERTIFICATE"); // saved into the secrets shared with peers
    expect(r.ssl).toEqual(tls.files());
    ssl = r.ssl!;
    const pg = await lookupOsUser(PG_OS_USER);
    for (const f of [ssl.caFile, ssl.certFile, ssl.keyFile]) {
      const st = await stat(f);
      expect({ f, uid: st.uid, mode: st.mode & 0o777 }).toEqual({ f, uid: pg.uid, mode: 0o600 });
    }
    expect(r.changed.sort()).toEqual([ssl.caFile, ssl.certFile, ssl.keyFile].sort());
    expect((await tls.prepare(true)).changed).toEqual([]); // nothing to renew: files untouched
    await writeManagedConfig(managed(primary, ports.p, { standby: false, ssl }));
    await start(primary, { logFile: `${primary.dataDir}.log`, timeoutSec: 30 });
    await ensureRoles(local(ports.p), { replUser: REPL, replPassword: secrets.replPassword, monitorUser: MON, monitorPassword: secrets.monitorPassword }, log);
    expect((await served(ports.p)).checkIssued(new X509Certificate(secrets.ca!.cert))).toBe(true);
  }, 60_000);

  test("pgherd's roles get in only over TLS; verify-full with channel binding works; a foreign client certificate is refused", async () => {
    const ok = await psql(await conninfo(ports.p, (await tls.client())!), "select ssl from pg_stat_ssl where pid = pg_backend_pid()");
    expect(`${ok.code} ${ok.stdout.trim()} ${ok.stderr.trim()}`).toBe("0 t ");
    // ssl_ca_file is the cluster CA: a client certificate of another CA is refused (none is required).
    const foreign = issueNodeCert(createCa("tls", Date.now()), "client", [], Date.now());
    const pg = await lookupOsUser(PG_OS_USER);
    const [fc, fk] = [join(s.root, "foreign.crt"), join(s.root, "foreign.key")];
    await writeFileAtomic(fc, foreign.cert, { mode: 0o600, owner: { uid: pg.uid, gid: pg.gid } });
    await writeFileAtomic(fk, foreign.key, { mode: 0o600, owner: { uid: pg.uid, gid: pg.gid } });
    const withCert = await psql(await conninfo(ports.p, { ...(await tls.client())!, sslcert: fc, sslkey: fk }), "select 1");
    expect(withCert.code).not.toBe(0);
    expect(withCert.stderr).toContain("unknown ca");
    const plain = await psql(await conninfo(ports.p, { sslmode: "disable" }), "select 1");
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain(`pg_hba.conf rejects connection for host "127.0.0.1", user "${REPL}", database "postgres", no encryption`);
  }, 30_000);

  test("clone, stream and rewind over verify-full TLS; the walsender's connection is SSL", async () => {
    const pdb = local(ports.p);
    await ensureSlot(pdb, "s1");
    await basebackup({ bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: ports.p, user: REPL, passfile, target: standby.dataDir, tls: await tls.client(), timeoutMs: 60_000, noSync: true });
    const upstream = buildConninfo({ host: "127.0.0.1", port: ports.p, user: REPL, passfile, applicationName: "s1", extra: await tls.client() });
    await writeManagedConfig(managed(standby, ports.s, { standby: true, conninfo: upstream }));
    await start(standby, { logFile: `${standby.dataDir}.log`, timeoutSec: 30 });
    // The walsender's row comes in state "startup" and turns "streaming" once the standby asks for
    // WAL: wait for that, not for the row (on a loaded machine the test read "startup").
    const row = await waitFor(async () => (await pdb.query("walsender", (sql) =>
      sql`SELECT r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 's1' AND r.state = 'streaming'`))[0], { timeoutMs: 20_000, what: "the standby to stream" });
    expect(row).toEqual({ state: "streaming", ssl: true });
    await stop(standby, "fast", 30);
    expect(await rewind({ bins: standby.bins, osUser: PG_OS_USER, log, dataDir: standby.dataDir, host: "127.0.0.1", port: ports.p, user: REPL, passfile, tls: await tls.client(), timeoutMs: 60_000 }))
      .toBe("not-needed");
    // A pg_rewind that fails during its checks (here: nothing listens at the source) never wrote into the target.
    const failed = await rewind({ bins: standby.bins, osUser: PG_OS_USER, log, dataDir: standby.dataDir, host: "127.0.0.1", port: ports.s, user: REPL, passfile, tls: await tls.client(), timeoutMs: 60_000 }).catch((e) => e);
    expect(failed).toBeInstanceOf(RewindError);
    expect(failed.targetTouched).toBe(false);
    expect(failed.couldNotConnect).toBe(true); // tried again at the next rounds, not a fresh clone (core/rewind-retry.ts)
  }, 90_000);

  test("renewal before expiry is a reload: the server presents the new certificate, same postmaster", async () => {
    const before = await served(ports.p);
    const pid = (await status(primary)).pid;
    wall = Date.now() - 2 * DAY; // 31 days left: not yet
    expect((await tls.prepare(true)).changed).toEqual([]);
    wall = Date.now(); // 29 days left: renew
    const r = await tls.prepare(true);
    expect(r.changed.sort()).toEqual([ssl.certFile, ssl.keyFile].sort());
    expect(log.lines.some((l) => l.includes("new certificate for IP:127.0.0.1 (expires in 29 day(s))"))).toBe(true);
    await reload(primary);
    const after = await waitFor(async () => {
      const c = await served(ports.p);
      return c.serialNumber !== before.serialNumber ? c : undefined;
    }, { timeoutMs: 10_000, what: "the server to present the renewed certificate" });
    expect(Date.parse(after.validTo)).toBeGreaterThan(Date.parse(before.validTo));
    expect((await status(primary)).pid).toBe(pid);
    const ok = await psql(await conninfo(ports.p, (await tls.client())!), "select 1");
    expect(ok.code).toBe(0);
  }, 60_000);

  test("a server whose certificate is not the cluster CA's gets no startup packet and no password", async () => {
    const foreign = issueNodeCert(createCa("tls", Date.now()), "evil", sanList(["127.0.0.1"]), Date.now());
    const fake = await fakePg({ mode: "tls", cert: foreign });
    fakes.push(fake);
    const err = await basebackup({ bins: standby.bins, osUser: PG_OS_USER, log, host: "127.0.0.1", port: fake.port, user: REPL, passfile, target: join(s.root, "evil-clone"), tls: await tls.client(), timeoutMs: 30_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(BasebackupError);
    expect(err.message).toContain("certificate verify failed");
    // A running standby re-pointed at it (walreceiver retries): still nothing but the SSL request.
    await start(standby, { logFile: `${standby.dataDir}.log`, timeoutSec: 30 });
    const toFake = buildConninfo({ host: "127.0.0.1", port: fake.port, user: REPL, passfile, applicationName: "s1", extra: await tls.client() });
    await writeManagedConfig(managed(standby, ports.s, { standby: true, conninfo: toFake }));
    await reload(standby);
    await waitFor(() => fake.events.filter((e) => e.kind === "ssl-request").length >= 3, { timeoutMs: 30_000, what: "the walreceiver to try the fake server" });
    expect(fake.events.filter((e) => e.kind === "startup" || e.kind === "password" || e.kind === "tls-established")).toEqual([]);
    expect(fake.events.some((e) => e.kind === "tls-error")).toBe(true);
  }, 90_000);

  test("a server refusing SSL gets nothing either; the connection string of before handed it the password", async () => {
    const fake = await fakePg({ mode: "plain" });
    fakes.push(fake);
    const refused = await psql(await conninfo(fake.port, (await tls.client())!), "select 1");
    expect(refused.code).not.toBe(0);
    expect(fake.events.filter((e) => e.kind === "startup" || e.kind === "password")).toEqual([]);
    // Control: the pre-TLS conninfo (no sslmode) sends the replication password in clear.
    await psql(await conninfo(fake.port), "select 1");
    expect(fake.events).toContainEqual({ kind: "password", password: secrets.replPassword, tls: false });
  }, 30_000);
});
