// The agent's pgbackrest server pid file: a leftover server of a killed agent is stopped on the next
// start, and only a process that /proc shows as `pgbackrest server --config=<this node's>` of the
// same user (real processes here: bash whose argv[0] is "pgbackrest", as the server's would be).
import { afterEach, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isOurServer, recordServerPid, stopLeftoverServer } from "../../src/backup/server-pid.ts";
import { createLogger } from "../../src/log.ts";
import { waitFor } from "../helpers/proc.ts";

const me = { uid: process.getuid!(), gid: process.getgid!() };
const log = createLogger("error");
const dirs: string[] = [];
const kids: ChildProcess[] = [];

afterEach(() => {
  for (const k of kids.splice(0)) k.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Returns once /proc shows the child's own command line (the spawn event can come before its exec). */
async function fakeServer(args: string[]): Promise<ChildProcess> {
  const k = spawn("/bin/bash", ["-c", "sleep 30; :", ...args], { argv0: "pgbackrest", stdio: "ignore" });
  kids.push(k);
  await new Promise((res) => k.once("spawn", res));
  await waitFor(() => readFileSync(`/proc/${k.pid}/cmdline`, "utf8").startsWith("pgbackrest\0"), { timeoutMs: 5000, intervalMs: 5, what: "the fake server's exec" });
  return k;
}

const exited = (k: ChildProcess) => new Promise<void>((res) => (k.exitCode !== null || k.signalCode !== null ? res() : k.once("exit", () => res())));

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "pgherd-srvpid-"));
  dirs.push(d);
  return d;
}

test("a leftover pgbackrest server with this node's config is stopped and the pid file removed", async () => {
  const dir = tmp();
  const conf = join(dir, "pgbackrest.conf");
  const k = await fakeServer(["server", `--config=${conf}`]);
  expect(isOurServer(k.pid!, me.uid, conf)).toBe(true);
  await recordServerPid(dir, me, k.pid!);
  expect(await stopLeftoverServer(dir, me, conf, log)).toBe(true);
  await exited(k);
  expect(k.signalCode).toBe("SIGTERM");
  expect(await stopLeftoverServer(dir, me, conf, log)).toBe(false); // the file is gone
});

test("a recorded pid that is another node's server, another program, or gone is left alone", async () => {
  const dir = tmp();
  const conf = join(dir, "pgbackrest.conf");
  const other = await fakeServer(["server", "--config=/elsewhere/pgbackrest.conf"]);
  await recordServerPid(dir, me, other.pid!);
  expect(isOurServer(other.pid!, me.uid, conf)).toBe(false);
  expect(await stopLeftoverServer(dir, me, conf, log)).toBe(false);
  expect(other.exitCode === null && other.signalCode === null).toBe(true);
  expect(isOurServer(other.pid!, me.uid + 1, "/elsewhere/pgbackrest.conf")).toBe(false); // another user's
  const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
  kids.push(sleeper);
  expect(isOurServer(sleeper.pid!, me.uid, conf)).toBe(false);
  expect(isOurServer(2 ** 22 + 7, me.uid, conf)).toBe(false);
  writeFileSync(join(dir, "tls-server.pid"), "garbage\n", { mode: 0o600 });
  expect(await stopLeftoverServer(dir, me, conf, log)).toBe(false);
});
