// The node's pgBackRest certificate (<data_dir>.pgbackrest/tls/pgbackrest.crt) and the agent's
// `pgbackrest server`. Found by review: the server was restarted with SIGTERM after a renewal (which
// ends its sessions under way: a backup from the repository host, an archive push), and a renewal
// made beside it (before a restore) never reached it; that path also issued the
// certificate only when it was missing, so a restore went to the repository host with an expired
// one or another CA's. A stand-in pgbackrest records its starts and the SIGHUPs it gets.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backrestPaths, backrestTlsFiles } from "../../src/backup/pgbackrest.ts";
import { BackrestServer, ensureBackrestCert } from "../../src/backup/tls-server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { certFacts, createCa } from "../../src/tls/x509.ts";
import { waitFor } from "../helpers/proc.ts";

const DAY = 86_400_000;
const root = mkdtempSync(join(tmpdir(), "pgherd-backrest-tls-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));
const osUser = isRoot() ? "postgres" : (process.env.USER ?? "postgres");
const u = await lookupOsUser(osUser);
const ca = createCa("t", Date.now());
const otherCa = createCa("t", Date.now());

/** A stand-in `pgbackrest server`: "start PID" when it starts, "hup PID" at each SIGHUP, exits on SIGTERM. */
function fakeBackrest(name: string): { bin: string; events: () => string[] } {
  const dir = join(root, `${name}-events`);
  mkdirSync(dir, { mode: 0o755 });
  if (isRoot()) chownSync(dir, u.uid, u.gid);
  const log = join(dir, "log");
  const bin = join(root, `${name}-pgbackrest`);
  writeFileSync(bin, `#!/bin/sh\necho "start $$" >> ${log}\ntrap 'echo "hup $$" >> ${log}' HUP\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n`, { mode: 0o755 });
  return { bin, events: () => { try { return readFileSync(log, "utf8").trim().split("\n").filter(Boolean); } catch { return []; } } };
}

function config(name: string, extra = "from_standby = true\n") {
  return parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/${name}-state"\n` +
    `[postgres]\ndata_dir = "${root}/${name}-pgdata"\nos_user = "${osUser}"\n[backup]\ntool = "pgbackrest"\ntls_port = 1\n${extra}`, "test");
}

const HOSTS = () => ["127.0.0.1"];

/** A server whose first certificate was issued 61 days ago (29 days left: in the renewal window at the real time). */
async function startedServer(name: string) {
  const cfg = config(name);
  const fake = fakeBackrest(name);
  const p = backrestPaths(cfg, fake.bin);
  const log = memoryLogger();
  const clock = { t: Date.now() - 61 * DAY };
  const server = new BackrestServer(cfg, p, log, HOSTS, () => clock.t);
  await server.maintain(ca);
  await waitFor(() => fake.events().length === 1, { timeoutMs: 5000, what: "the server to start" });
  const pid = fake.events()[0]!.split(" ")[1];
  return { cfg, p, fake, log, clock, server, pid };
}

type Started = Awaited<ReturnType<typeof startedServer>>;

/** `scenario` on a started server, then its stand-in got exactly one SIGHUP (same process, no restart); stopped afterwards. */
async function reloadsOnce(name: string, scenario: (s: Started) => Promise<void>): Promise<Started> {
  const s = await startedServer(name);
  try {
    await scenario(s);
    await waitFor(() => s.fake.events().includes(`hup ${s.pid}`), { timeoutMs: 5000, what: "a SIGHUP" });
    expect(s.fake.events()).toEqual([`start ${s.pid}`, `hup ${s.pid}`]);
    return s;
  } finally {
    await s.server.stop();
  }
}

const certOf = (s: Started, caPem: string, key = true) =>
  certFacts(readFileSync(backrestTlsFiles(s.p).certFile, "utf8"), key ? readFileSync(backrestTlsFiles(s.p).keyFile, "utf8") : null, caPem)!;

describe("the agent's pgbackrest server and its certificate", () => {
  test("a certificate in its renewal window is renewed and the server reloads it with SIGHUP: same process, no restart", async () => {
    const s = await reloadsOnce("window", async (s) => {
      s.clock.t = Date.now();
      await s.server.maintain(ca);
    });
    expect(s.log.lines.some((l) => l.includes("new certificate (expires in 29 day(s))"))).toBe(true);
    expect(s.log.lines.some((l) => l.includes("reloaded with its new certificate"))).toBe(true);
    expect(certOf(s, ca.cert).notAfterMs).toBeGreaterThan(Date.now() + 89 * DAY);
  }, 20_000);

  test("another CA's certificate (the cluster CA changed) is replaced, and the server reloads", async () => {
    const s = await reloadsOnce("foreign", async (s) => {
      s.clock.t += 1000;
      await s.server.maintain(otherCa);
    });
    expect(s.log.lines.some((l) => l.includes("not signed by the cluster CA"))).toBe(true);
    expect(certOf(s, otherCa.cert, false).signedByCa).toBe(true);
  }, 20_000);

  test("a certificate renewed beside it (before a restore) is reloaded in its next round", async () => {
    await reloadsOnce("beside", async (s) => {
      await ensureBackrestCert(s.cfg, s.p, ca, HOSTS(), undefined, Date.now()); // 29 days left: renewed
      s.clock.t = Date.now();
      await s.server.maintain(ca); // nothing due any more: only the file differs from what it loaded
    });
  }, 20_000);

  test("no SIGHUP in the first second after a start (pgbackrest may not handle it yet): the next round sends it", async () => {
    await reloadsOnce("early", async (s) => {
      await ensureBackrestCert(s.cfg, s.p, ca, HOSTS(), undefined, Date.now());
      s.clock.t += 500;
      await s.server.maintain(ca);
      await Bun.sleep(300);
      expect(s.fake.events()).toEqual([`start ${s.pid}`]);
      s.clock.t += 500;
      await s.server.maintain(ca);
    });
  }, 20_000);

  test("nothing changed: no signal, no restart", async () => {
    const s = await startedServer("same");
    try {
      for (let i = 0; i < 3; i++) {
        s.clock.t += 5000;
        await s.server.maintain(ca);
      }
      await Bun.sleep(300);
      expect(s.fake.events()).toEqual([`start ${s.pid}`]);
    } finally {
      await s.server.stop();
    }
  }, 20_000);
});
