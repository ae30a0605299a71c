// Client access on three compiled agents (real PostgreSQL, loopback): an [[access]] rule set
// cluster-wide (`pgherd config set access=…`, through the leader) lets a client in on every node (standbys cloned before the rule existed included),
// `pgherd passwd` sets the role's password, `psql "$(pgherd dsn --primary)"` reaches the primary
// and, after a switchover and after a failover (the primary's agent SIGKILLed), the same string
// reaches the new primary; removing the rule locks the client out again.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import { http, settled, startLoopCluster, until, type LoopCluster, type LoopNode } from "../api/loopback.ts";
import { pgBins, pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";
import { createCa } from "../../src/tls/x509.ts";

requireReal("client access e2e", pgSkipReason);

const PASSWORD = "app-secret-for-the-access-test";
let c: LoopCluster;
let passfile: string;

const pgherd = (args: string[], input?: string) => {
  const r = spawnSync(BINARY, args, { encoding: "utf8", timeout: 30_000, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** psql as a client would run it: the password from a 0600 passfile, never argv or env. */
function psql(conn: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync(join(pgBins!.dir, "psql"), [conn, "-XAtc", "SELECT pg_is_in_recovery(), current_setting('port')"], { encoding: "utf8", timeout: 30_000, env: { PATH: process.env.PATH ?? "", PGPASSFILE: passfile } });
  return { ok: r.status === 0, out: r.stdout.trim(), err: r.stderr.trim() };
}

/** Sets (or drops) the rule cluster-wide through the leader (`pgherd config set access=…` on the first of `nodes`). */
async function setRule(on: boolean, nodes: readonly LoopNode[] = c.nodes): Promise<void> {
  const rules = on ? [{ database: "postgres", user: "app", address: "127.0.0.1/32" }] : [];
  const r = spawnSync(BINARY, ["config", "set", `access=${JSON.stringify(rules)}`, "--api", nodes[0]!.api], { encoding: "utf8", timeout: 30_000, env: { PATH: process.env.PATH ?? "", PGHERD_TOKEN: c.token, PGHERD_CONFIG: "/nonexistent" } });
  expect({ code: r.status, out: r.stdout }).toMatchObject({ code: 0, out: expect.stringContaining("access") });
}

const direct = (n: LoopNode) => `postgresql://app@127.0.0.1:${n.pgPort}/postgres?connect_timeout=3`;

describe("client access on three nodes", () => {
  beforeAll(async () => {
    c = await startLoopCluster({ test: "access", size: 3 });
    await settled(c);
    passfile = join(c.dir, "client.pgpass");
    writeFileSync(passfile, `*:*:*:app:${PASSWORD}\n`, { mode: 0o600 });
  }, 180_000);
  afterAll(async () => {
    await c?.destroy();
    if (passfile) rmSync(passfile, { force: true });
    if (c) console.log(`access e2e logs: ${c.dir}`);
  }, 60_000);

  test("no rule: no way in; with the rule and a password from pgherd passwd: in on every node", async () => {
    const { primary } = await settled(c);
    expect(pgherd(["passwd", "app", "--create", "--config", primary.agent.configPath], `${PASSWORD}\n`)).toMatchObject({ code: 0, stdout: "created role app (password stored as a SCRAM-SHA-256 verifier)\n" });
    const standby = c.nodes.find((n) => n !== primary)!;
    const onStandby = pgherd(["passwd", "app", "--config", standby.agent.configPath], `${PASSWORD}\n`);
    expect(onStandby.code).toBe(1);
    expect(onStandby.stderr).toContain("is a standby: run pgherd passwd on the primary's host");
    for (const n of c.nodes) expect(psql(direct(n)).err).toContain("no pg_hba.conf entry");
    await setRule(true);
    for (const n of c.nodes) {
      await until(async () => psql(direct(n)).ok, `app to log in on ${n.name}`, 15_000);
    }
  }, 90_000);

  test("pgherd dsn --ca-file: the client verifies the primary against the cluster CA (verify-full), and refuses a server of another CA", async () => {
    const { primary } = await settled(c);
    const dsnWith = (caFile: string) => pgherd(["dsn", "--primary", "--user", "app", "--dbname", "postgres", "--ca-file", caFile, "--api", c.nodes[0]!.api]);
    const d = dsnWith(`${primary.agent.dataDir}.tls/ca.crt`);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("sslmode=verify-full&sslrootcert=");
    const ssl = spawnSync(join(pgBins!.dir, "psql"), [d.stdout.trim(), "-XAtc", "SELECT ssl, current_setting('port') FROM pg_stat_ssl WHERE pid = pg_backend_pid()"], { encoding: "utf8", timeout: 30_000, env: { PATH: process.env.PATH ?? "", PGPASSFILE: passfile } });
    expect({ out: ssl.stdout.trim(), err: ssl.stderr.trim() }).toEqual({ out: `t|${primary.pgPort}`, err: "" });
    // verify-full, not only verify-ca: a name the certificate does not hold is refused.
    const san = new X509Certificate(readFileSync(`${primary.agent.dataDir}.tls/server.crt`)).subjectAltName ?? "";
    expect(san).toContain("IP Address:127.0.0.1");
    expect(san).not.toContain("DNS:localhost");
    // libpq checks the name in host and connects to hostaddr (so "localhost" cannot reach ::1).
    const byName = psql(`${d.stdout.trim().replaceAll("127.0.0.1", "localhost")}&hostaddr=${c.nodes.map(() => "127.0.0.1").join(",")}`);
    expect(byName.ok).toBe(false);
    expect(byName.err).toContain('does not match host name "localhost"');
    // A CA that did not sign the servers' certificates: libpq refuses every host before any password.
    const foreign = join(c.dir, "foreign-ca.crt");
    writeFileSync(foreign, createCa("other", Date.now()).cert);
    const refused = psql(dsnWith(foreign).stdout.trim());
    expect(refused.ok).toBe(false);
    expect(refused.err).toContain("certificate verify failed");
    // Bad input named, nothing printed: a relative path, a file that holds no certificate.
    expect(dsnWith("ca.crt")).toMatchObject({ code: 2, stdout: "", stderr: expect.stringContaining("give an absolute path") });
    expect(dsnWith(passfile)).toMatchObject({ code: 1, stdout: "", stderr: expect.stringContaining(`${passfile}: holds no PEM certificate`) });
    expect(dsnWith(`${primary.agent.dataDir}.tls/server.crt`)).toMatchObject({ code: 1, stdout: "", stderr: expect.stringContaining("not a CA's") });
    const fifo = join(c.dir, "ca.fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    expect(dsnWith(fifo)).toMatchObject({ code: 1, stdout: "", stderr: expect.stringContaining(`${fifo}: not a regular file`) });
    const elsewhere = dsnWith(join(c.dir, "on-the-client-host", "ca.crt"));
    expect(elsewhere).toMatchObject({ code: 0, stderr: expect.stringContaining("is not on this host") });
    expect(elsewhere.stdout).toContain(`sslrootcert=${encodeURIComponent(join(c.dir, "on-the-client-host", "ca.crt"))}`);
  }, 60_000);

  test("pgherd dsn --primary reaches the primary, and the same string the new one after a switchover and after a failover", async () => {
    const { primary } = await settled(c);
    const d = pgherd(["dsn", "--primary", "--user", "app", "--dbname", "postgres", "--api", c.nodes[0]!.api]);
    expect(d.code).toBe(0);
    const dsn = d.stdout.trim();
    expect(dsn).toContain("target_session_attrs=read-write");
    expect(psql(dsn).out).toBe(`f|${primary.pgPort}`);
    const r = await http(`${primary.api}/switchover`, { method: "POST", body: "{}", headers: { "content-type": "application/json", authorization: `Bearer ${c.token}` } });
    expect(r.status).toBeLessThan(300);
    const after = await until(async () => {
      const s = await settled(c);
      return s.primary !== primary ? s : undefined;
    }, "a new primary after the switchover", 60_000);
    expect(psql(dsn).out).toBe(`f|${after.primary.pgPort}`);
    const replica = pgherd(["dsn", "--replica", "--user", "app", "--dbname", "postgres", "--api", c.nodes[0]!.api]).stdout.trim();
    expect(psql(replica).out).toMatch(/^t\|/);

    // A failover: the primary's agent SIGKILLed, its watchdog stops PostgreSQL at the lease end, a standby takes over.
    const crashed = after.primary;
    crashed.agent.proc.kill("SIGKILL");
    const survivor = await until(async () => {
      for (const n of c.nodes.filter((x) => x !== crashed)) if ((await http(`${n.api}/primary`)).status === 200) return n;
      return undefined;
    }, "a standby to take over after the primary's agent was killed", 60_000);
    await until(async () => psql(dsn).out === `f|${survivor.pgPort}`, "the same dsn to reach the new primary", 30_000);
  }, 180_000);

  test("removing the rule locks the client out of every node again", async () => {
    const live = c.nodes.filter((n) => !n.agent.proc.exited); // the crashed primary's agent stays down
    await setRule(false, live);
    for (const n of live) {
      await until(async () => psql(direct(n)).err.includes("no pg_hba.conf entry"), `app locked out of ${n.name}`, 15_000);
    }
  }, 60_000);
});
