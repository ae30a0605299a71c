// [backup] repo_host: validated at load, the nodes' pgbackrest.conf reaching it over TLS, and what
// `pgherd backup repo-cert` writes and prints for the repository host.
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { archiveSettings, backrestPaths, renderBackrestConf, repoHostAnswers, RESTORE_STOP_CODE } from "../../src/backup/pgbackrest.ts";
import { nodeHosts, renderRepoHostConf, writeRepoHostCert } from "../../src/backup/repo-host.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { createCa } from "../../src/tls/x509.ts";

const BASE = `cluster = "main"\nsecret = "${"s".repeat(40)}"\n`;
const REPO = `[backup]\ntool = "pgbackrest"\nrepo_path = "/var/lib/pgbackrest"\nrepo_host = "10.0.0.9"\n`;

function errors(text: string): string {
  try {
    parseConfig(BASE + text, "pgherd.toml");
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).lines.join("\n");
  }
  throw new Error("expected a ConfigError");
}

describe("repo_host config", () => {
  test("needs tool pgbackrest and replication TLS; no schedule (backups run on the repository host)", () => {
    expect(errors(`[backup]\nrepo_host = "10.0.0.9"\n`)).toContain('pgherd.toml: backup.repo_host needs backup.tool = "pgbackrest"');
    expect(errors(`[postgres]\nreplication_tls = false\n${REPO}`)).toContain("pgherd.toml: backup.repo_host needs postgres.replication_tls = true");
    expect(errors(`${REPO}incr_every_hours = 6\n`)).toContain("pgherd.toml: backup.incr_every_hours must be 0 with backup.repo_host");
    expect(errors(`${REPO}full_every_hours = 6\n`)).toContain("pgherd.toml: backup.full_every_hours must be 0 with backup.repo_host");
    expect(errors(`[backup]\ntool = "pgbackrest"\nrepo_host = "a b"\n`)).toContain("pgherd.toml: backup.repo_host must be an IP address or host name");
    expect(errors(`${REPO}repo_host_port = 0\n`)).toContain("pgherd.toml: backup.repo_host_port must be at least 1");
    const ok = parseConfig(BASE + REPO, "x");
    expect(ok.backup).toMatchObject({ repo_host: "10.0.0.9", repo_host_port: 8432 });
  });

  test("a node's pgbackrest.conf reaches the repository over TLS with its pgBackRest certificate", () => {
    const cfg = parseConfig(BASE + `[postgres]\ndata_dir = "/srv/pg"\n${REPO}repo_host_port = 9000\n`, "x");
    const text = renderBackrestConf(cfg, "/srv/sock", backrestPaths(cfg, "/usr/bin/pgbackrest"));
    expect(text).toContain([
      "repo1-host=10.0.0.9", "repo1-host-type=tls", "repo1-host-port=9000", "repo1-host-ca-file=/srv/pg.pgbackrest/tls/ca.crt",
      "repo1-host-cert-file=/srv/pg.pgbackrest/tls/pgbackrest.crt", "repo1-host-key-file=/srv/pg.pgbackrest/tls/pgbackrest.key",
      "repo1-path=/var/lib/pgbackrest",
    ].join("\n"));
    expect(text).toContain("[main]\npg1-path=/srv/pg\n");
    expect(text).toContain("io-timeout=10\n");
  });

  test("the promotion's look at the repository host: a listening port answers, a refused or silent one does not", async () => {
    const server = createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      expect(await repoHostAnswers("127.0.0.1", port, 1000)).toBe(true);
    } finally {
      await new Promise((r) => server.close(r));
    }
    // Nothing listens there now: refused at once.
    const t0 = performance.now();
    expect(await repoHostAnswers("127.0.0.1", port, 1000)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe("repo-cert", () => {
  const cfg = parseConfig(BASE + `[postgres]\ndata_dir = "/srv/pg"\n[mesh]\nadvertise = "10.0.0.1:7401"\n[discovery]\npeers = ["10.0.0.2:7400", "10.0.0.1:7400"]\n${REPO}`, "x");

  test("the repository host's config: TLS server for the stanza, every node as pgN through its own pgBackRest TLS server", () => {
    expect(nodeHosts(cfg)).toEqual([{ host: "10.0.0.1" }, { host: "10.0.0.2" }]);
    expect(nodeHosts(cfg, ["n1", "n2:5", "n1"])).toEqual([{ host: "n1" }, { host: "n2" }]);
    const f = { caFile: "/etc/pgb/ca.crt", certFile: "/etc/pgb/pgbackrest.crt", keyFile: "/etc/pgb/pgbackrest.key" };
    const text = renderRepoHostConf(cfg, "main", nodeHosts(cfg), f);
    expect(text).toContain("repo1-path=/var/lib/pgbackrest\nrepo1-retention-full=2\n");
    expect(text).toContain("archive-mode-check=n\n");
    expect(text).toContain("tls-server-port=8432\ntls-server-ca-file=/etc/pgb/ca.crt\ntls-server-cert-file=/etc/pgb/pgbackrest.crt\ntls-server-key-file=/etc/pgb/pgbackrest.key\ntls-server-auth=pgherd-pgbackrest=main\n");
    expect(text).toContain("[main]\npg1-host=10.0.0.1\npg1-host-type=tls\npg1-host-port=8432\npg1-host-ca-file=/etc/pgb/ca.crt\n");
    expect(text).toContain("pg2-host=10.0.0.2\n");
    expect(text).toContain("pg2-path=/srv/pg\npg2-port=5432\npg2-socket-path=/srv/pg.sock\npg2-user=postgres\n");
    expect(text).not.toContain("backup-standby");
    expect(text).toContain("start backups here: pgbackrest --stanza=main backup --type=full\n");
    expect(() => renderRepoHostConf(cfg, "main", [{ host: "a b" }], f)).toThrow(/contains a space, = or a control character/);
  });

  test("a node laid out differently is listed with its own data directory (and the socket directory beside it); from_standby: backup-standby", () => {
    const nodes = nodeHosts(cfg, ["10.0.0.1=/srv/a/pgdata/", "10.0.0.2:7400=/srv/b/pgdata", "10.0.0.3"]);
    expect(nodes).toEqual([{ host: "10.0.0.1", dataDir: "/srv/a/pgdata" }, { host: "10.0.0.2", dataDir: "/srv/b/pgdata" }, { host: "10.0.0.3" }]);
    const f = { caFile: "/c", certFile: "/k", keyFile: "/x" };
    const withStandby = { ...cfg, backup: { ...cfg.backup, from_standby: true } };
    const text = renderRepoHostConf(withStandby, "main", nodes, f);
    expect(text).toContain("pg1-path=/srv/a/pgdata\npg1-port=5432\npg1-socket-path=/srv/a/pgdata.sock\n");
    expect(text).toContain("pg2-path=/srv/b/pgdata\npg2-port=5432\npg2-socket-path=/srv/b/pgdata.sock\n");
    expect(text).toContain("pg3-path=/srv/pg\npg3-port=5432\npg3-socket-path=/srv/pg.sock\n");
    expect(text).toContain("archive-mode-check=n\nbackup-standby=y\n");
    expect(text).toContain("start backups here: pgbackrest --stanza=main backup --type=full || pgbackrest --stanza=main backup --type=full --no-backup-standby\n");
    expect(() => nodeHosts(cfg, ["10.0.0.1=relative"])).toThrow(/absolute path/);
    expect(() => nodeHosts(cfg, ["10.0.0.1=/a b"])).toThrow(/absolute path/);
    expect(() => nodeHosts(cfg, ["bad host=/x"])).toThrow(/not a valid host name/);
  });

  test("with a repository host a node archives through pgherd backup wal-push; restore_command stays pgbackrest", () => {
    const p = backrestPaths(cfg, "/usr/bin/pgbackrest");
    const s = archiveSettings(p, ["/usr/local/bin/pgherd"], { host: true });
    expect(s.archiveMode).toBe("always");
    expect(s.archiveCommand).toBe(`'/usr/local/bin/pgherd' backup wal-push '--pgbackrest=/usr/bin/pgbackrest' '--pgbackrest-config=/srv/pg.pgbackrest/pgbackrest.conf' '--stanza=main' "%p"`);
    const get = `'/usr/bin/pgbackrest' '--config=/srv/pg.pgbackrest/pgbackrest.conf' '--stanza=main' archive-get %f "%p"`;
    const f = "'/srv/pg.pgbackrest/repo-down'";
    expect(s.restoreCommand).toBe(`test ! -e ${f} || exit 1; env --default-signal=INT,QUIT ${get} & p=$!; (while kill -0 $p 2>/dev/null; do if [ -e ${f} ]; then kill $p; fi; sleep 0.1; done) & w=$!; wait $p; r=$?; kill $w 2>/dev/null; [ $r -eq 0 ] || exit 1`);
    expect(archiveSettings(p, ["/usr/local/bin/pgherd"], { host: false, path: "/srv/repo" }).restoreCommand).toBe(get);
    // without one, every node pushes (--direct), one at a time (--lock in the shared repository); under `bun src/main.ts` the argv is bun and the entry file
    expect(archiveSettings(p, ["/usr/bin/bun", "/src/main.ts"], { host: false, path: "/srv/repo" }).archiveCommand).toBe(`'/usr/bin/bun' '/src/main.ts' backup wal-push --direct '--lock=/srv/repo/pgherd-archive-push-main.lock' '--pgbackrest=/usr/bin/pgbackrest' '--pgbackrest-config=/srv/pg.pgbackrest/pgbackrest.conf' '--stanza=main' "%p"`);
  });

  test("restore_command as PostgreSQL runs it (sh -c): archive-get while the agent's repo-down file is absent, its status kept; a failure (1) at once while the file is there, and when it appears during a call", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgherd-repodown-"));
    try {
      // A script stands in for pgbackrest: says what it was given, exits with $EXIT after $WAIT seconds.
      const bin = join(dir, "pgbackrest");
      writeFileSync(bin, `#!/bin/sh\necho "$@"\nsleep "\${WAIT:-0}"\nexit "\${EXIT:-0}"\n`, { mode: 0o755 });
      const cmd = archiveSettings({ dir, conf: join(dir, "pgbackrest.conf"), stanza: "main", bin }, ["/usr/local/bin/pgherd"], { host: true }).restoreCommand
        .replace("%f", "000000010000000000000003").replace("%p", "pg_wal/RECOVERYXLOG");
      const run = (env: Record<string, string> = {}) => Bun.spawn(["/bin/sh", "-c", cmd], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdout: "pipe" });
      const up = run();
      expect(await up.exited).toBe(0);
      expect(await new Response(up.stdout).text()).toBe(`--config=${dir}/pgbackrest.conf --stanza=main archive-get 000000010000000000000003 pg_wal/RECOVERYXLOG\n`);
      expect(await run({ EXIT: "3" }).exited).toBe(1); // any failure: 1, "not in the archive" for PostgreSQL (above 125 would end its startup process)
      // No delay added to a call that returns: ten quick calls take nowhere near ten watcher polls.
      const t = performance.now();
      for (let i = 0; i < 10; i++) expect(await run().exited).toBe(0);
      expect(performance.now() - t).toBeLessThan(900);
      // PostgreSQL's immediate stop: SIGQUIT to the process group ends the fetch with the shell.
      const quit = Bun.spawn(["setsid", "/bin/sh", "-c", cmd], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", WAIT: "30" }, stdout: "pipe" });
      const fetch = await waitForPid(() => Bun.spawnSync(["pgrep", "-f", `^/bin/sh ${bin} .*archive-get`]).stdout.toString().trim());
      process.kill(-quit.pid, "SIGQUIT");
      await quit.exited;
      await waitForGone(fetch);
      // The file appears while the call waits on the host: stopped within a poll (100 ms), not after its 30 s.
      const slow = run({ WAIT: "30" });
      await Bun.sleep(300);
      const t0 = performance.now();
      writeFileSync(join(dir, "repo-down"), "x\n");
      expect(await slow.exited).toBe(1);
      expect(performance.now() - t0).toBeLessThan(5000);
      const down = run();
      expect(await down.exited).toBe(1);
      expect(await new Response(down.stdout).text()).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);

  test("restore_command during a restore from the backup: archive-get's \"not found\" (1) passes on as the end of the archive; any other failure exits 200 (PostgreSQL stops the recovery) and says why; the repo-down file is not looked at", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgherd-restoring-"));
    try {
      // A stand-in for pgbackrest in a directory whose name needs the shell quoting and the % doubling.
      const binDir = join(dir, "it's 100%");
      mkdirSync(binDir);
      const bin = join(binDir, "pgbackrest");
      writeFileSync(bin, `#!/bin/sh\necho "$@"\nexit "\${EXIT:-0}"\n`, { mode: 0o755 });
      const p = { dir, conf: join(dir, "pgbackrest.conf"), stanza: "main", bin };
      writeFileSync(join(dir, "repo-down"), "x\n"); // the agent found the repository host silent
      for (const repo of [{ host: true as const }, { host: false as const, path: "/srv/repo" }]) {
        const raw = archiveSettings(p, ["/usr/local/bin/pgherd"], repo, true).restoreCommand;
        expect(raw).toStartWith(`'${binDir.replace(/'/g, `'\\''`).replace("%", "%%")}/pgbackrest' '--config=${dir}/pgbackrest.conf' '--stanza=main' archive-get %f "%p"; `);
        // What PostgreSQL runs: %f and %p replaced, %% made %.
        const cmd = raw.replaceAll("%f", "000000010000000000000003").replaceAll("%p", "pg_wal/RECOVERYXLOG").replaceAll("%%", "%");
        const run = async (exit: number) => {
          const c = Bun.spawn(["/bin/sh", "-c", cmd], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", EXIT: String(exit) }, stdout: "pipe", stderr: "pipe" });
          return { code: await c.exited, out: await new Response(c.stdout).text(), err: await new Response(c.stderr).text() };
        };
        const ok = await run(0);
        expect(ok).toEqual({ code: 0, out: `--config=${dir}/pgbackrest.conf --stanza=main archive-get 000000010000000000000003 pg_wal/RECOVERYXLOG\n`, err: "" });
        expect(await run(1)).toMatchObject({ code: 1, err: "" }); // not in the archive: the end of the archive
        for (const exit of [2, 41, 55, 103, 125, 137]) {
          const r = await run(exit);
          expect(r.code).toBe(RESTORE_STOP_CODE);
          expect(r.err).toBe(`pgherd: archive-get 000000010000000000000003 failed with exit code ${exit}, not a file missing from the archive: the recovery from the backup stops here (the bootstrap starts it again)\n`);
        }
      }
      expect(RESTORE_STOP_CODE).toBeGreaterThan(125); // PostgreSQL: FATAL in the startup process, not "not in the archive"
      // Outside a restore: as before (the flag's file fails at once with 1; without a host, archive-get's own status).
      expect(archiveSettings(p, ["/usr/local/bin/pgherd"], { host: true }).restoreCommand).toStartWith(`test ! -e '${dir}/repo-down' || exit 1;`);
      expect(archiveSettings(p, ["/usr/local/bin/pgherd"], { host: false, path: "/srv/repo" }).restoreCommand).toEndWith(`'--stanza=main' archive-get %f "%p"`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a certificate of the cluster CA for the repository host, CN pgherd-pgbackrest, key 0600", async () => {
    const ca = createCa("main", Date.now());
    const dir = mkdtempSync(join(tmpdir(), "pgherd-repocert-"));
    try {
      const out = join(dir, "out");
      const me = { uid: process.getuid!(), gid: process.getgid!() };
      const f = await writeRepoHostCert(ca, "10.0.0.9", out, me, Date.now());
      for (const p of [f.caFile, f.certFile, f.keyFile]) expect(statSync(p).mode & 0o777).toBe(0o600);
      expect(statSync(out).mode & 0o777).toBe(0o700);
      const c = new X509Certificate(readFileSync(f.certFile, "utf8"));
      expect(c.subject).toBe("CN=pgherd-pgbackrest");
      expect(c.subjectAltName).toContain("IP Address:10.0.0.9");
      expect(c.subjectAltName).toContain("DNS:10.0.0.9");
      expect(c.verify(new X509Certificate(ca.cert).publicKey)).toBe(true);
      expect(readFileSync(f.caFile, "utf8")).toBe(ca.cert);
      expect(f.notAfterMs).toBe(Date.parse(c.validTo)); // repo-cert prints it
      expect(f.notAfterMs).toBeGreaterThan(Date.now() + 89 * 86_400_000);
      await expect(writeRepoHostCert(ca, "not a host", out, me, Date.now())).rejects.toThrow(/not an IP address or DNS name/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The first pid `find` prints, once it prints one. */
async function waitForPid(find: () => string): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const pid = Number(find().split("\n")[0]);
    if (pid > 0) return pid;
    await Bun.sleep(10);
  }
  throw new Error("the fetch did not start");
}

/** Until `pid` no longer runs (5 s at most: then it outlived its group's SIGQUIT). */
async function waitForGone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await Bun.sleep(10);
  }
  throw new Error(`pid ${pid} outlived its process group's SIGQUIT`);
}
