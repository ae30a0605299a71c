// A vote while pg_rewind runs (src/agent/pg/rewind-vote.ts, rewind-task.ts). pg_rewind holds the
// serial executor for as long as it runs (up to an hour): a vote is given the position the data held
// at rest before it began, without waiting, and the rewind then does not start the server as a
// standby of its source, the primary of an older term. Here pg_rewind is a stand-in program (the
// postgres OS user runs it, as the real one) that waits for a gate file, then says what pg_rewind
// says; the agent's code around it is the real one. test/e2e/rebuild-vote.e2e.test.ts has the same
// with real PostgreSQL and a real failover.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SerialExecutor } from "../../src/agent/pg/executor.ts";
import type { PgHost } from "../../src/agent/pg/host.ts";
import { CopyInterrupted, Rebuilder } from "../../src/agent/pg/rebuild.ts";
import type { Position } from "../../src/core/position.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot, lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { agentHost } from "../helpers/agent-host.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const BEFORE: Position = { timeline: 1, lsn: "0/5000A8" };
const FROM = "10.0.0.2:5432";

let top: string;
let pg: OsUser;
let n = 0;

beforeAll(async () => {
  requireReal("rewind vote tests", isRoot() ? null : "needs root (the agent's rebuild runs as root, its tools as the postgres OS user)");
  pg = await lookupOsUser(PG_OS_USER);
  top = mkdtempSync("/tmp/pgherd-rewind-vote-");
  chmodSync(top, 0o755);
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

interface Setup {
  host: PgHost;
  rebuild: Rebuilder;
  gate: string;
  started: string;
  /** What the stand-in did: servers started, and the last upstream written. */
  starts: number;
  upstream: string | undefined;
}

/** A node whose pg_rewind waits for `gate` to go, then exits with `exit` and `out` (a bin directory of its own). */
function setup(out: string, exit: number, before: Position | null): Setup {
  const dir = join(top, `n${++n}`);
  const bin = `${dir}-bin`;
  // The stand-in runs as the postgres OS user: it says it started in a directory of that user's.
  const run = `${dir}-run`;
  const gate = join(run, "gate");
  const started = join(run, "started");
  mkdirSync(bin, { mode: 0o755 });
  mkdirSync(run, { mode: 0o755 });
  chownSync(run, pg.uid, pg.gid);
  writeFileSync(join(bin, "pg_rewind"), `#!/bin/sh\n: > ${started}\nwhile [ -e ${gate} ]; do sleep 0.02; done\nprintf '%s\\n' '${out}' >&2\nexit ${exit}\n`, { mode: 0o755 });
  writeFileSync(gate, "");
  const host = agentHost(dir, { bins: { dir: bin, version: 15, versionString: "15" }, log: memoryLogger(), pg, replPassword: "p", existing: true });
  const s: Setup = { host, rebuild: undefined as unknown as Rebuilder, gate, started, starts: 0, upstream: undefined };
  host.stopServer = async () => true;
  host.startServer = async () => {
    s.starts++;
  };
  host.writeConfig = async (_standby: boolean, upstream?: string) => {
    s.upstream = upstream;
    return [];
  };
  s.rebuild = new Rebuilder(host, () => {}, () => {}, undefined, async () => before);
  return s;
}

/** The rewind as a round runs it: a task of the serial executor; resolves to "started" or the error it ended with. */
function rewindInRound(s: Setup): { exec: SerialExecutor; done: Promise<unknown> } {
  const exec = new SerialExecutor();
  const done = exec.run("round", () => s.rebuild.rewindFrom(FROM, false)).then(() => "started", (e: unknown) => e);
  return { exec, done };
}

const NOT_NEEDED = "pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required";

test("a vote while pg_rewind runs is given the position held before it at once; the rewind then does not start the server as its source's standby", async () => {
  const s = setup(NOT_NEEDED, 0, BEFORE);
  const { exec, done } = rewindInRound(s);
  await waitFor(() => existsSync(s.started), { timeoutMs: 10_000, what: "pg_rewind to run" });
  expect(s.rebuild.rewinder.vote.active()).toBe(true);
  // The executor is held by the rewind: a detach through it would wait (and be refused after its bound).
  const queued = exec.run("detach", async () => "ran", { maxWaitMs: 200 }).catch((e: Error) => e.name);
  expect(s.rebuild.rewinder.vote.vote(7)).toEqual(BEFORE);
  expect(await queued).toBe("QueueTimeout");
  unlinkSync(s.gate);
  const ended = await done;
  expect(ended).toBeInstanceOf(CopyInterrupted);
  expect((ended as Error).message).toContain("asked for its vote in term 7");
  expect(s.starts).toBe(0); // not started as a standby of FROM, the older term's primary
  expect(s.rebuild.rewinder.vote.active()).toBe(false);
  expect(s.rebuild.rewinder.vote.vote(8)).toBeNull(); // over: a later vote takes the executor's turn
  expect(s.host.rewindMarker.get()).toBeNull(); // the rewind itself is done: a standby's data
}, 30_000);

test("without a vote the rewound node starts as a standby of its source", async () => {
  const s = setup(NOT_NEEDED, 0, BEFORE);
  const { done } = rewindInRound(s);
  await waitFor(() => existsSync(s.started), { timeoutMs: 10_000, what: "pg_rewind to run" });
  unlinkSync(s.gate);
  expect(await done).toBe("started");
  expect(s.starts).toBe(1);
  expect(s.upstream).toBe(FROM);
}, 30_000);

test("a pg_rewind that fails after a vote was asked takes no fresh clone of its source; one that changed the data keeps the marker (a clone of the next leader)", async () => {
  const s = setup("pg_rewind: need to copy 16 MB (total source directory size is 40 MB)\npg_rewind: error: could not fetch remote file: connection lost", 1, BEFORE);
  const { done } = rewindInRound(s);
  await waitFor(() => existsSync(s.started), { timeoutMs: 10_000, what: "pg_rewind to run" });
  expect(s.rebuild.rewinder.vote.vote(9)).toEqual(BEFORE);
  unlinkSync(s.gate);
  const ended = await done;
  expect(ended).toBeInstanceOf(CopyInterrupted);
  expect((ended as Error).message).toContain("asked for its vote in term 9");
  expect(s.starts).toBe(0);
  expect(s.host.rewindMarker.get()?.from).toBe(FROM); // touched: only a fresh clone replaces this directory now
}, 30_000);

test("with the position at rest not known before pg_rewind, a vote is not given one: it waits for the executor as before", async () => {
  const s = setup(NOT_NEEDED, 0, null);
  const { done } = rewindInRound(s);
  await waitFor(() => existsSync(s.started), { timeoutMs: 10_000, what: "pg_rewind to run" });
  expect(s.rebuild.rewinder.vote.active()).toBe(false);
  expect(s.rebuild.rewinder.vote.vote(7)).toBeNull();
  unlinkSync(s.gate);
  expect(await done).toBe("started");
}, 30_000);
