// Finding 1 of issue 10: the PostgreSQL OS user (or a database superuser through COPY … TO
// PROGRAM) puts links where the agent, running as root, expects its files. For each swap the
// agent's real code path runs as root against real files; the root-only target must be neither
// copied into a place the OS user can read nor chowned/chmodded, and the operation must fail
// with an error naming the path. The links are made by the real postgres OS user.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { start, type PgNode } from "../../src/postgres/ctl.ts";
import { chownTree, ensureDir } from "../../src/postgres/fsutil.ts";
import { writeManagedConfig, type ManagedConfig } from "../../src/postgres/managed-config.ts";
import { writePassfile } from "../../src/postgres/passwords.ts";
import { isRoot, lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER, pgBins, pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("symlink attacks on the root agent", pgSkipReason);

const SECRET = "secret_token = 'ROOT-ONLY-7f3a'\nport = 1\n";
const log = memoryLogger();
let pg: OsUser;
let top: string; // root-owned 0755: the attacker cannot replace what is directly in it
let data: string; // the data directory: postgres-owned 0700
let pgParent: string; // a directory postgres owns (like /var/lib/postgresql): holds the socket dir and log
let secret: string; // root-only 0600 file
let rootDir: string; // root-owned 0755 directory

/** As the postgres OS user (the attacker). */
const asPostgres = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { uid: pg.uid, gid: pg.gid, stdio: "pipe" });
const link = (target: string, at: string) => asPostgres("ln", "-sfn", target, at);
const fingerprint = (p: string) => {
  const st = lstatSync(p);
  return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, text: st.isFile() ? readFileSync(p, "utf8") : readdirSync(p).join(",") };
};

/** No file the OS user can reach in `dir` holds the secret. */
function noCopyIn(dir: string): void {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    const st = lstatSync(p);
    if (st.isFile()) expect(readFileSync(p, "utf8")).not.toContain("ROOT-ONLY");
  }
}

beforeAll(async () => {
  requireReal("symlink attacks on the root agent", isRoot() ? null : "needs root");
  pg = await lookupOsUser(PG_OS_USER);
});

beforeEach(() => {
  if (top) rmSync(top, { recursive: true, force: true });
  top = mkdtempSync("/tmp/pgherd-symlinks-");
  chmodSync(top, 0o755);
  secret = join(top, "secret");
  writeFileSync(secret, SECRET, { mode: 0o600 });
  rootDir = join(top, "rootdir");
  mkdirSync(rootDir, { mode: 0o755 });
  writeFileSync(join(rootDir, "keep"), "root's\n", { mode: 0o600 });
  data = join(top, "data");
  mkdirSync(data, { mode: 0o700 });
  for (const [n, t] of [["PG_VERSION", "15\n"], ["postgresql.conf", "max_connections = 50\n"], ["pg_hba.conf", ""], ["pg_ident.conf", ""], ["postgresql.auto.conf", ""]] as const) {
    writeFileSync(join(data, n), t, { mode: 0o600 });
    chownSync(join(data, n), pg.uid, pg.gid);
  }
  chownSync(data, pg.uid, pg.gid);
  pgParent = join(top, "pghome");
  mkdirSync(pgParent, { mode: 0o755 });
  chownSync(pgParent, pg.uid, pg.gid);
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

const managed = (dataDir = data): ManagedConfig => ({
  dataDir, osUser: PG_OS_USER, standby: false, log,
  conf: { listenAddresses: ["127.0.0.1"], port: 5432, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: pgParent },
  hba: { superuser: "postgres", replUser: "repl", monitorUser: "mon", peers: ["10.0.0.2"] },
});

describe("managed config: a data directory file linked to a root-only file", () => {
  for (const name of ["pg_hba.conf", "pg_ident.conf", "postgresql.conf", "postgresql.auto.conf", "pgherd.conf"]) {
    test(`${name} → root-only secret: refused, the secret is neither copied nor handed over`, async () => {
      const before = fingerprint(secret);
      link(secret, join(data, name));
      const e = await writeManagedConfig(managed()).catch((x: Error) => x);
      expect(fingerprint(secret)).toEqual(before);
      noCopyIn(data);
      expect(lstatSync(join(data, name)).isSymbolicLink()).toBe(true);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toContain(join(data, name));
      expect((e as Error).message).toContain("symbolic link");
    });
  }

  test("pg_hba.conf replaced by a FIFO: refused at once (a read as root would hang the agent)", async () => {
    rmSync(join(data, "pg_hba.conf"));
    asPostgres("mkfifo", join(data, "pg_hba.conf"));
    const e = await writeManagedConfig(managed()).catch((x: Error) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(`${join(data, "pg_hba.conf")} is not a regular file`);
  }, 2000);

  test("the data directory itself swapped for a link to a root-owned directory: refused, nothing written there", async () => {
    writeFileSync(join(rootDir, "PG_VERSION"), "15\n", { mode: 0o600 });
    writeFileSync(join(rootDir, "postgresql.conf"), SECRET, { mode: 0o600 });
    const before = fingerprint(rootDir);
    const conf = fingerprint(join(rootDir, "postgresql.conf"));
    const swapped = join(pgParent, "data");
    link(rootDir, swapped);
    const e = await writeManagedConfig(managed(swapped)).catch((x: Error) => x);
    expect(fingerprint(rootDir)).toEqual(before); // no pgherd.conf, pg_hba.conf … created in root's directory
    expect(fingerprint(join(rootDir, "postgresql.conf"))).toEqual(conf);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(swapped);
  });

  test("a link root placed in a directory only root can write is followed (an operator's configured path)", async () => {
    const viaRoot = join(top, "data-link");
    symlinkSync(data, viaRoot);
    expect((await writeManagedConfig(managed(viaRoot))).changed).toContain("pgherd.conf");
    expect(lstatSync(join(data, "pgherd.conf")).uid).toBe(pg.uid);
  });

  test("the passfile linked to a root-only file: refused, not handed over", async () => {
    const before = fingerprint(secret);
    const passfile = join(pgParent, "data.pgpass");
    link(secret, passfile);
    const e = await writePassfile(passfile, [{ host: "10.0.0.1", port: 5432, database: "*", user: "repl", password: "pw" }], pg).catch((x: Error) => x);
    expect(fingerprint(secret)).toEqual(before);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(passfile);
  });
});

describe("socket directory (ensureDir every round)", () => {
  test("socket dir → root-owned directory: refused, that directory keeps owner and mode", async () => {
    const before = fingerprint(rootDir);
    const sock = join(pgParent, "sock");
    link(rootDir, sock);
    const e = await ensureDir(sock, 0o700, pg).catch((x: Error) => x);
    expect(fingerprint(rootDir)).toEqual(before);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(sock);
  });

  test("a parent of the socket dir → root-owned directory: refused, nothing created in it", async () => {
    const before = fingerprint(rootDir);
    const run = join(pgParent, "run");
    link(rootDir, run);
    const e = await ensureDir(join(run, "sock"), 0o700, pg).catch((x: Error) => x);
    expect(fingerprint(rootDir)).toEqual(before);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(run);
  });

  test("a real directory of the OS user is still made 0700 and kept", async () => {
    const sock = join(pgParent, "sock");
    await ensureDir(sock, 0o700, pg);
    await ensureDir(sock, 0o700, pg); // every round
    expect(fingerprint(sock)).toMatchObject({ uid: pg.uid, gid: pg.gid, mode: 0o700 });
  });
});

describe("server log (opened by start)", () => {
  const node = (): PgNode => ({ bins: pgBins!, dataDir: data, osUser: PG_OS_USER, log });

  test("server log → root-only file: start refuses before pg_ctl, the file keeps owner, mode and content", async () => {
    const before = fingerprint(secret);
    const logFile = join(pgParent, "server.log");
    link(secret, logFile);
    const e = await start(node(), { logFile, timeoutSec: 5 }).catch((x: Error) => x);
    expect(fingerprint(secret)).toEqual(before);
    expect(log.lines.join("\n")).not.toContain("pg_ctl start");
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toContain(logFile);
  });

  test("a root-owned file in the log's place is not handed over either", async () => {
    const logFile = join(pgParent, "server.log");
    writeFileSync(logFile, SECRET, { mode: 0o600 });
    const before = fingerprint(logFile);
    const e = await start(node(), { logFile, timeoutSec: 5 }).catch((x: Error) => x);
    expect(fingerprint(logFile)).toEqual(before);
    expect((e as Error).message).toContain(logFile);
  });
});

test("an existing shared directory (others may write to it: /tmp, /run/postgresql) is never narrowed or taken over", async () => {
  for (const m of [0o1777, 0o2775, 0o777]) {
    const shared = mkdtempSync(join(tmpdir(), "pgherd-shared-"));
    try {
      chmodSync(shared, m);
      const e = await ensureDir(shared, 0o700).catch((x: Error) => x);
      expect((e as Error).message).toBe(`${shared} is a shared directory (mode ${m.toString(8).padStart(4, "0")}: others may write to it): refusing to change its owner or mode; use a directory of its own`);
      expect(statSync(shared).mode & 0o7777).toBe(m);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  }
});

test("chownTree never hands over a foreign file linked into the tree a second time (a hard link to a root file)", async () => {
  const tree = mkdtempSync(join(tmpdir(), "pgherd-chown-"));
  const rootFile = join(tmpdir(), `pgherd-rootfile-${process.pid}`);
  try {
    writeFileSync(rootFile, "root's\n", { mode: 0o600 });
    writeFileSync(join(tree, "PG_VERSION"), "15\n");
    linkSync(rootFile, join(tree, "stolen"));
    const e = await chownTree(tree, pg).catch((x: Error) => x);
    expect((e as Error).message).toBe(`${join(tree, "stolen")} has 2 hard links and belongs to uid 0: refusing to hand it to uid ${pg.uid}`);
    expect(statSync(rootFile).uid).toBe(0);
  } finally {
    rmSync(tree, { recursive: true, force: true });
    rmSync(rootFile, { force: true });
  }
});
