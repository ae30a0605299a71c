// Review "rlease" (issue 12's lease-file change): tests that fail on main and show the findings.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { CHECKED_LEASE, encodeLease, LEASE_FILE, LeaseFile, readLeaseFile, WATCHDOG_FEATURES_FILE, WATCHDOG_PID_FILE } from "../../src/fence/lease-file.ts";
import { createLogger } from "../../src/log.ts";

let dir: string;
let fakeWatchdog: ChildProcess;
const log = createLogger("error");
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-rlease-"));
  fakeWatchdog = spawn("bash", ["-c", "exec -a watchdog sleep 600"], { stdio: "ignore" });
});
afterAll(() => {
  fakeWatchdog.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});
function stateDir(name: string, checks = true): string {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, WATCHDOG_PID_FILE), `${fakeWatchdog.pid}\n`);
  if (checks) {
    const stat = readFileSync(`/proc/${fakeWatchdog.pid}/stat`, "utf8");
    writeFileSync(join(d, WATCHDOG_FEATURES_FILE), `${fakeWatchdog.pid} ${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]} ${CHECKED_LEASE}\n`);
  }
  return d;
}

test("F1: a shorter lease whose write failed is written by the next arm (the file must not keep the longer deadline)", () => {
  const d = stateDir("f1");
  const lf = new LeaseFile(d, "/data", log);
  lf.ensureWatchdog();
  const t = performance.now();
  lf.arm(3, t + 3000);
  const long = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  mkdirSync(join(d, "lease.tmp")); // the next rename fails (as ENOSPC, EIO, EMFILE would): writeFileSync EISDIR
  expect(() => lf.arm(3, t + 1000)).toThrow(); // the lease shrank (e.g. capped by a consensus migration)
  rmdirSync(join(d, "lease.tmp"));
  lf.arm(3, t + 1020); // the next heartbeat: the lease still ends ~2 s before the file's deadline
  const now = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  expect(now).toBeLessThan(long - 1500); // main: the file keeps `long`
});

test("F2: an agent that restarts over a record torn by its predecessor (killed mid-copy) must not disarm it", () => {
  const d = stateDir("f2");
  const l = (deadline: number) => ({ deadline, term: 5, dataDir: "/data", writtenAt: 1, agentPid: 1 });
  const D = hostMonotonicMs() + 60_000;
  const a = encodeLease(l(D));
  const b = encodeLease(l(D + 100), a.length);
  const torn = Buffer.concat([b.subarray(0, 40), a.subarray(40)]); // the copy of b stopped after 40 bytes
  writeFileSync(join(d, LEASE_FILE), torn);
  new LeaseFile(d, "/data", log).ensureWatchdog();
  const after = JSON.parse(readFileSync(join(d, LEASE_FILE), "utf8"));
  expect(after.deadline).not.toBeNull(); // main: {deadline: null, term: -1}: the watchdog stops guarding
});

test("F4: a features file naming the watchdog's pid with another start time (a reused pid) keeps extensions renamed", () => {
  const d = stateDir("f4", false);
  writeFileSync(join(d, WATCHDOG_FEATURES_FILE), `${fakeWatchdog.pid} 1 ${CHECKED_LEASE}\n`);
  const lf = new LeaseFile(d, "/data", log);
  lf.ensureWatchdog();
  const ino = () => require("node:fs").statSync(join(d, LEASE_FILE)).ino;
  lf.arm(4, performance.now() + 1000);
  const first = ino();
  lf.arm(4, performance.now() + 1200); // same term, later: an extension, which must still be renamed
  expect(ino()).not.toBe(first);
});
