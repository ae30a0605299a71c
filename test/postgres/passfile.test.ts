// Issue 10, "Secrets": the replication password reaches pg_basebackup and pg_rewind through a
// passfile, never PGPASSWORD (readable in /proc/<pid>/environ by the OS user and inherited by
// every child), and the passfile lies outside the data directory (base backups copy it, so a
// password in it would travel with every clone). The tools are replaced by a script that
// records its environment; the agent's PgHost writes the real passfile.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PgHost } from "../../src/agent/pg/host.ts";
import { Rebuilder } from "../../src/agent/pg/rebuild.ts";
import { memoryLogger } from "../../src/log.ts";
import type { PgBins } from "../../src/postgres/binaries.ts";
import { isRoot, lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { agentHost as sharedAgentHost } from "../helpers/agent-host.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

const PASSWORD = "repl-password-5c1e9d2a7b";
/** The recording pg_basebackup leaves what a real one does in its -D directory, as far as these tests look: PG_VERSION, backup_label. */
const CLONE_TARGET = 'while [ $# -gt 0 ]; do if [ "$1" = "-D" ]; then mkdir -p "$2" && echo 15 > "$2/PG_VERSION" && : > "$2/backup_label"; fi; shift; done\n';
const log = memoryLogger();
let top: string;
let pg: OsUser;
let bins: PgBins;

beforeAll(async () => {
  requireReal("passfile tests", isRoot() ? null : "needs root (the tools run as the postgres OS user)");
  pg = await lookupOsUser(PG_OS_USER);
  top = mkdtempSync("/tmp/pgherd-passfile-");
  chmodSync(top, 0o755);
  const bin = join(top, "bin");
  mkdirSync(bin, { mode: 0o755 });
  const out = join(top, "out");
  mkdirSync(out, { mode: 0o700 });
  chownSync(out, pg.uid, pg.gid);
  for (const tool of ["pg_basebackup", "pg_rewind"]) {
    writeFileSync(join(bin, tool), `#!/bin/sh\nenv > ${out}/${tool}.env\n${tool === "pg_basebackup" ? CLONE_TARGET : ""}exit 0\n`, { mode: 0o755 });
  }
  bins = { dir: bin, version: 15, versionString: "15 (recording script)" };
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

/** The agent's PgHost for `data` (helpers/agent-host.ts); `existing`: a data directory (PG_VERSION) made first. */
function agentHost(data: string, o: { existing?: boolean } = {}): PgHost {
  return sharedAgentHost(data, { bins, log, pg, replPassword: PASSWORD, ...o });
}

const envOf = (tool: string) => readFileSync(join(top, "out", `${tool}.env`), "utf8");

test("the agent's clone (pg_basebackup) and rewind (pg_rewind) get PGPASSFILE, never PGPASSWORD", async () => {
  const data = join(top, "rebuild-data");
  const host = agentHost(data);
  const rebuild = new Rebuilder(host, () => {}, () => {});
  // The recording tools exit 0 without copying anything: starting the "standby" fails afterwards (no pg_ctl here).
  await rebuild.rewindFrom("10.0.0.2:5432", false).catch(() => {});
  await rebuild.cloneFrom("10.0.0.2:5432").catch(() => {});
  for (const tool of ["pg_rewind", "pg_basebackup"]) {
    const env = envOf(tool);
    expect(env).not.toContain("PGPASSWORD");
    expect(env).not.toContain(PASSWORD);
    expect(env).toContain(`PGPASSFILE=${data}.pgpass\n`);
  }
  expect(readFileSync(`${data}.pgpass`, "utf8")).toContain(PASSWORD);
});

test("the agent's passfile lies outside the data directory: 0600, the OS user's, and no file in the data directory holds the password", async () => {
  const data = join(top, "node-data");
  const host = agentHost(data, { existing: true });
  await host.writeConfig(true, "10.0.0.2:5432");
  expect(host.passfile).toBe(`${data}.pgpass`);
  const st = statSync(host.passfile);
  expect([st.uid, st.gid, st.mode & 0o777]).toEqual([pg.uid, pg.gid, 0o600]);
  expect(readFileSync(host.passfile, "utf8")).toBe(`10.0.0.2:5432:*:${host.cfg.postgres.repl_user}:${PASSWORD}\n`);
  for (const n of readdirSync(data)) expect(readFileSync(join(data, n), "utf8")).not.toContain(PASSWORD);
  expect(readFileSync(join(data, "pgherd.conf"), "utf8")).toContain(`passfile=${data}.pgpass`);
});

test("after pg_rewind the standby's configuration is written before the rewind marker goes: a failure in between keeps the marker (found by review)", async () => {
  const data = join(top, "rewound-data");
  const host = agentHost(data, { existing: true });
  const rebuild = new Rebuilder(host, () => {}, () => {});
  const writeConfig = host.writeConfig.bind(host);
  host.writeConfig = () => Promise.reject(new Error("No space left on device"));
  await expect(rebuild.rewindFrom("10.0.0.2:5432", false)).rejects.toThrow("No space left on device");
  expect(host.rewindMarker.get()).not.toBeNull(); // no standby.signal yet: the directory stays a clone's only
  expect(existsSync(join(data, "standby.signal"))).toBe(false);
  host.writeConfig = writeConfig;
  await rebuild.rewindFrom("10.0.0.2:5432", false).catch(() => {}); // the start fails afterwards (no pg_ctl here)
  expect(existsSync(join(data, "standby.signal"))).toBe(true);
  expect(host.rewindMarker.get()).toBeNull();
});

test("a clone is a standby's data from its first moment in place: standby.signal is in it before the swap (found by review)", async () => {
  const data = join(top, "clone-data");
  const host = agentHost(data, { existing: true });
  host.writeConfig = () => Promise.reject(new Error("killed before the first start")); // what follows the swap
  await expect(new Rebuilder(host, () => {}, () => {}).cloneFrom("10.0.0.2:5432")).rejects.toThrow("killed before the first start");
  expect(existsSync(join(data, "backup_label"))).toBe(true); // the clone is in place
  expect(existsSync(join(data, "standby.signal"))).toBe(true);
});
