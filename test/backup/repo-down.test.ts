// backup/repo-down.ts: the file that makes restore_command skip a repository host that takes no
// connection. Real TCP (a port that refuses, then listens) and a real file.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RepoDownFlag } from "../../src/backup/repo-down.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { freeTcpPorts } from "../../src/demo/ports.ts";

let dir = "";
let port = 0;
let server: Server | null = null;

/** A port nothing listens on now, below the ephemeral range and not the suite's other worker's (src/demo/ports.ts). */
async function freePort(): Promise<number> {
  return (await freeTcpPorts(1))[0]!;
}

function flag(): { f: RepoDownFlag; file: string; log: ReturnType<typeof memoryLogger> } {
  const cfg = parseConfig(`cluster = "main"\nsecret = "${"s".repeat(40)}"\n[postgres]\ndata_dir = "${dir}/pgdata"\nos_user = "postgres"\n[backup]\ntool = "pgbackrest"\nrepo_path = "/var/lib/pgbackrest"\nrepo_host = "127.0.0.1"\nrepo_host_port = ${port}\n`, "pgherd.toml");
  const log = memoryLogger();
  return { f: new RepoDownFlag(cfg, log), file: join(dir, "pgdata.pgbackrest", "repo-down"), log };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-repodown-"));
  mkdirSync(join(dir, "pgdata.pgbackrest"));
  port = await freePort();
});
afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = null;
  rmSync(dir, { recursive: true, force: true });
});

async function listen(): Promise<void> {
  server = createServer((c) => c.destroy());
  await new Promise<void>((r) => server!.listen(port, "127.0.0.1", r));
}

test("before a promotion one look without an answer sets the file; an answer removes it", async () => {
  const { f, file } = flag();
  expect(await f.check()).toBe(true);
  expect(existsSync(file)).toBe(true);
  await listen();
  expect(await f.check()).toBe(false);
  expect(existsSync(file)).toBe(false);
});

test("beside the rounds (confirm) it takes two looks in a row without an answer; one answer between starts over", async () => {
  const { f, file } = flag();
  expect(await f.check({ confirm: true })).toBe(true);
  expect(existsSync(file)).toBe(false);
  await listen();
  expect(await f.check({ confirm: true })).toBe(false);
  await new Promise<void>((r) => server!.close(() => r()));
  server = null;
  expect(await f.check({ confirm: true })).toBe(true);
  expect(existsSync(file)).toBe(false);
  expect(await f.check({ confirm: true })).toBe(true);
  expect(existsSync(file)).toBe(true);
  // Once set, a confirmed look that answers removes it at once.
  await listen();
  expect(await f.check({ confirm: true })).toBe(false);
  expect(existsSync(file)).toBe(false);
});

test("the agent stops: the file is removed and no later look writes it again", async () => {
  const { f, file, log } = flag();
  expect(await f.check()).toBe(true);
  expect(existsSync(file)).toBe(true);
  await f.close();
  expect(existsSync(file)).toBe(false);
  expect(log.lines.some((l) => l.includes("stopping: removing"))).toBe(true);
  expect(await f.check()).toBe(true);
  expect(existsSync(file)).toBe(false);
});
