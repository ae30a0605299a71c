// The agent's side of the lease file: a restarted agent announces itself without disarming a
// lease its predecessor armed (the primary may still run; only this agent may extend or disarm it).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { LEASE_FILE, LeaseFile, parseLease, WATCHDOG_PID_FILE } from "../../src/fence/lease-file.ts";
import { createLogger } from "../../src/log.ts";

let dir: string;
let fakeWatchdog: ChildProcess; // a live process named "watchdog": ensureWatchdog starts no real one
const log = createLogger("error");

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-lease-"));
  fakeWatchdog = spawn("bash", ["-c", "exec -a watchdog sleep 600"], { stdio: "ignore" });
});
afterAll(() => {
  fakeWatchdog.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function stateDir(name: string): string {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, WATCHDOG_PID_FILE), `${fakeWatchdog.pid}\n`);
  return d;
}
const read = (d: string) => JSON.parse(readFileSync(join(d, LEASE_FILE), "utf8"));

test("a restarted agent keeps the armed lease of its predecessor and only takes it over", () => {
  const d = stateDir("armed");
  const deadline = hostMonotonicMs() + 60_000;
  writeFileSync(join(d, LEASE_FILE), JSON.stringify({ deadline, term: 5, dataDir: "/data", writtenAt: 1, agentPid: 1 }));
  new LeaseFile(d, "/data", log).ensureWatchdog();
  expect(read(d)).toMatchObject({ deadline, term: 5, dataDir: "/data", agentPid: process.pid });
});

test("with no lease before it, an agent announces a disarmed one", () => {
  const d = stateDir("fresh");
  new LeaseFile(d, "/data", log, { device: "/dev/watchdog", timeoutS: 1, fenceMs: 500 }).ensureWatchdog();
  expect(read(d)).toMatchObject({ deadline: null, term: -1, agentPid: process.pid, kernel: { device: "/dev/watchdog", timeoutS: 1, fenceMs: 500 } });
});

test("parseLease: unknown keys are dropped (a newer agent's file), a bad value is refused with its key", () => {
  const ok = { deadline: 5, term: 2, dataDir: "/d", writtenAt: 1, agentPid: 9, kernel: { device: "/dev/watchdog", timeoutS: 2, fenceMs: 500 }, extra: 1 };
  expect(parseLease(ok)).toEqual({ deadline: 5, term: 2, dataDir: "/d", writtenAt: 1, agentPid: 9, kernel: { device: "/dev/watchdog", timeoutS: 2, fenceMs: 500 } });
  expect(parseLease({ ...ok, deadline: null, kernel: undefined }).deadline).toBeNull();
  expect(() => parseLease({ ...ok, deadline: "5" })).toThrow("deadline");
  expect(() => parseLease({ ...ok, term: 1.5 })).toThrow("term");
  expect(() => parseLease({ ...ok, kernel: { ...ok.kernel, timeoutS: 0 } })).toThrow("kernel.timeoutS");
  expect(() => parseLease([ok])).toThrow("lease");
});
