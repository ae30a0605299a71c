// A real `pgbackrest server` (the agent's, BackrestServer) takes its renewed certificate on SIGHUP:
// the agent sends it once a handshake with the server succeeded, and the same process then presents
// the new one, read as the agents read the repository host's (a handshake without a client
// certificate, tls/peer-cert.ts, which pgBackRest answers as a check that it runs). It shows the
// process and the certificate, not sessions under way. Needs pgbackrest (2.37 or later: the first
// with a server, and with SIGHUP reload).
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backrestBin, backrestPaths, writeBackrestConf } from "../../src/backup/pgbackrest.ts";
import { BackrestServer } from "../../src/backup/tls-server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { pidAlive } from "../../src/postgres/datadir.ts";
import { isRoot } from "../../src/postgres/users.ts";
import { peerCert } from "../../src/tls/peer-cert.ts";
import { createCa } from "../../src/tls/x509.ts";
import { freePort } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";

const DAY = 86_400_000;
const root = mkdtempSync(join(tmpdir(), "pgherd-tls-reload-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));
const osUser = isRoot() ? "postgres" : (process.env.USER ?? "postgres");

test.skipIf(!Bun.which("pgbackrest"))("a renewed certificate reaches the running pgbackrest server by SIGHUP: same process, new certificate", async () => {
  const port = await freePort();
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/state"\n` +
    `[postgres]\ndata_dir = "${root}/pgdata"\nos_user = "${osUser}"\n[backup]\ntool = "pgbackrest"\nfrom_standby = true\ntls_address = "127.0.0.1"\ntls_port = ${port}\n`, "test");
  const p = backrestPaths(cfg, backrestBin());
  await writeBackrestConf(cfg, join(root, "sock"), p);
  const ca = createCa("c", Date.now());
  const clock = { t: Date.now() - 61 * DAY }; // its first certificate: 29 days left at the real time
  const log = memoryLogger();
  const server = new BackrestServer(cfg, p, log, { hosts: () => ["127.0.0.1"], wallNow: () => clock.t });
  try {
    await server.maintain(ca);
    const first = await waitFor(() => peerCert("127.0.0.1", port, ca.cert, 2000), { timeoutMs: 10_000, what: "the server's first certificate" });
    expect(first.signedByCa).toBe(true);
    expect(first.notAfterMs).toBeLessThan(Date.now() + 30 * DAY);
    const pid = Number(readFileSync(join(p.dir, "tls-server.pid"), "utf8"));

    clock.t = Date.now(); // renewed (29 days left): a handshake, SIGHUP, handshakes until it presents it
    await waitFor(async () => {
      await server.maintain(ca);
      await Bun.sleep(100);
      return log.lines.some((l) => l.includes("reloaded, presents its new certificate"));
    }, { timeoutMs: 10_000, what: "the agent to see the server present the renewed certificate" });
    const renewed = await peerCert("127.0.0.1", port, ca.cert, 2000);
    expect(renewed.notAfterMs).toBeGreaterThan(Date.now() + 89 * DAY);
    expect(renewed.signedByCa).toBe(true);
    expect(pidAlive(pid)).toBe(true);
    expect(Number(readFileSync(join(p.dir, "tls-server.pid"), "utf8"))).toBe(pid);
    expect(log.lines.filter((l) => l.includes("TLS server exited") || l.includes("restarting it"))).toEqual([]);
  } finally {
    await server.stop();
  }
}, 60_000);
