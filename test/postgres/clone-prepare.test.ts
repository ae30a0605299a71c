// A clone's preparation gives way to a vote (src/agent/pg/rebuild.ts prepare): it runs inside the
// monitoring round, a task on the serial executor, and a vote's detach needs that executor within
// DETACH_BOUND_MS. Removing a previous data directory (one kept at rejoin.keep_old = 1 goes at the
// next clone) and measuring this node's own data directory each take seconds on a large tree: the
// removal goes on in the background, the walk stops, and the clone ends with CopyInterrupted
// (review of 6 December: 60,000 files in an old copy held the detach past its bound, 100,000 in the
// data directory held it 3.4 s with the walk alone). No PostgreSQL runs: nothing gets that far.
// Also which copy a clone asks for with [backup] clone_from = "backup": the latest backup only when it
// ends at or past what this node's data held (src/core/clone-source.ts restoreCovers): once the clone
// is in place the node votes with the clone's position, and a backup ending before would lower it
// below WAL it held, maybe commits it acknowledged as a synchronous standby that no other voter has
// yet (found by review); else pg_basebackup from the primary. The repository is a stand-in, and
// pg_basebackup cannot start here (no binaries).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DETACH_BOUND_MS } from "../../src/agent/pg/detach.ts";
import { SerialExecutor } from "../../src/agent/pg/executor.ts";
import type { PgHost } from "../../src/agent/pg/host.ts";
import { type CloneRepo, CopyInterrupted, Rebuilder } from "../../src/agent/pg/rebuild.ts";
import type { BackrestPaths } from "../../src/backup/pgbackrest.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot, lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { agentHost } from "../helpers/agent-host.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const LATEST = { label: "20261207-000000F", type: "full" as const, start: 0, stop: 0, walStart: "000000010000000000000003", walStop: "000000010000000000000003", lsnStart: "0/3000028", lsnStop: "0/3000100", sizeBytes: 1024, repoBytes: 1024 };

const log = memoryLogger();
let top: string;
let pg: OsUser;

beforeAll(async () => {
  requireReal("clone preparation tests", isRoot() ? null : "needs root (the agent's rebuild runs as root, its tools as the postgres OS user)");
  pg = await lookupOsUser(PG_OS_USER);
  top = mkdtempSync("/tmp/pgherd-clone-prepare-");
  chmodSync(top, 0o755);
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

/** `dirs` directories of 1,000 one-byte files under `dir` (hard links of one file each: quicker to make). */
function fill(dir: string, dirs: number): void {
  for (let d = 0; d < dirs; d++) {
    const sub = join(dir, `d${d}`);
    mkdirSync(sub);
    writeFileSync(join(sub, "f0"), "x");
    for (let i = 1; i < 1000; i++) linkSync(join(sub, "f0"), join(sub, `f${i}`));
  }
}

/** A clone started inside a round, a vote 100 ms later: how long its detach waited, and how the clone ended. */
async function voteDuringClone(host: PgHost): Promise<{ waitedMs: number; clone: unknown; stopped: boolean }> {
  let stopped = false;
  host.stopServer = async () => {
    stopped = true;
    return false;
  };
  const rebuild = new Rebuilder(host, () => {}, () => {});
  const exec = new SerialExecutor();
  const clone = exec.run("round", () => rebuild.cloneFrom("10.0.0.2:5432")).then(() => "cloned", (e: unknown) => e);
  await Bun.sleep(100);
  const t0 = performance.now();
  rebuild.interruptCopy("a vote in term 7 needs this node");
  const waitedMs = await exec.run("detach", async () => performance.now() - t0, { maxWaitMs: DETACH_BOUND_MS }).finally(() => rebuild.voteDetached());
  return { waitedMs, clone: await clone, stopped };
}

test("a previous data directory removed before a clone does not hold a vote's detach: it goes on in the background", async () => {
  const data = join(top, "old-copy");
  const host = agentHost(data, { bins: { dir: "/nonexistent", version: 15, versionString: "15" }, log, pg, replPassword: "p", existing: true });
  expect(host.cfg.rejoin.keep_old).toBe(1); // the one kept copy goes before the next clone
  const old = `${data}.pgherd-old-2026-12-01T00-00-00-000Z`;
  mkdirSync(old);
  writeFileSync(join(old, "standby.signal"), ""); // a standby's data: not spared as a former primary's
  fill(old, 60);
  const copies = () => readdirSync(dirname(data)).filter((n) => n.startsWith(`${basename(data)}.pgherd-`));
  const r = await voteDuringClone(host);
  expect(r.waitedMs).toBeLessThan(1000); // well within its bound (the removal alone takes seconds)
  expect(r.clone).toBeInstanceOf(CopyInterrupted);
  expect(r.stopped).toBe(false); // the server was never stopped
  expect(copies().length).toBe(1); // still being removed when the clone gave way
  await waitFor(() => copies().length === 0, { timeoutMs: 30_000, what: "the previous data directory removed in the background" });
  expect(existsSync(data)).toBe(true);
}, 60_000);

test("the walk of this node's own data directory (the clone's size) stops for a vote's detach", async () => {
  const data = join(top, "large-data");
  const host = agentHost(data, { bins: { dir: "/nonexistent", version: 15, versionString: "15" }, log, pg, replPassword: "p", existing: true });
  fill(data, 100);
  const r = await voteDuringClone(host);
  expect(r.waitedMs).toBeLessThan(1000); // well within its bound (the whole walk takes seconds)
  expect(r.clone).toBeInstanceOf(CopyInterrupted);
  expect(r.stopped).toBe(false);
  expect(log.lines.filter((l) => l.includes("room for a clone"))).toEqual([]); // the walk never ended
}, 60_000);

/** The copies a clone of a node that held `held` asks for, the latest backup ending at 1/0/3000100. */
async function copiesFor(name: string, held: { timeline: number; lsn: string } | null): Promise<string[]> {
  const asked: string[] = [];
  const repo: CloneRepo = {
    paths: async () => ({}) as BackrestPaths,
    info: async () => ({ status: "ok", archiveMin: null, archiveMax: null, backups: [LATEST] }),
    restore: async () => {
      asked.push("restore");
      throw new Error("stand-in restore: it fails");
    },
  };
  const host = agentHost(join(top, name), { bins: { dir: "/nonexistent", version: 15, versionString: "15" }, log, pg, replPassword: "p", existing: true, backup: true });
  expect(host.cfg.backup.clone_from).toBe("backup");
  host.heldPosition = held;
  host.stopServer = async () => false;
  const e = await new Rebuilder(host, () => {}, () => {}, repo).cloneFrom("10.0.0.2:5432").then(() => null, (err: Error) => err);
  if (e?.message.includes("pg_basebackup")) asked.push("pg_basebackup"); // it could not start: no binaries here
  else throw new Error(`the clone ended otherwise: ${e?.message}`);
  return asked;
}

test("a standby that held WAL past the latest backup's end is cloned from the primary, not restored", async () => {
  expect(await copiesFor("ahead", { timeline: 1, lsn: "0/7000000" })).toEqual(["pg_basebackup"]);
  expect(log.lines.some((l) => l.includes("before what this node's data directory holds (1/0/7000000)"))).toBe(true);
});

test("one the backup covers, or one that held nothing, restores the latest backup", async () => {
  // The stand-in restore fails: pg_basebackup after it, as always.
  expect(await copiesFor("behind", { timeline: 1, lsn: "0/2000000" })).toEqual(["restore", "pg_basebackup"]);
  expect(await copiesFor("zero", { timeline: 0, lsn: "0/0" })).toEqual(["restore", "pg_basebackup"]);
  expect(await copiesFor("nothing", null)).toEqual(["restore", "pg_basebackup"]);
});
