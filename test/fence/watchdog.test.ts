// The fencing watchdog as a real process: it must stop the "postmaster" at the lease end,
// not before, not when the lease is extended or disarmed, and it must exit when its state
// dir disappears; with a kernel watchdog configured that cannot be used it warns and fences at
// the lease end as before.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { waitFor } from "../helpers/proc.ts";

let dir: string;
let wd: ChildProcess;
let out = ""; // the watchdog's log (stderr)
const victims: ChildProcess[] = [];

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

function victim(): ChildProcess {
  const p = spawn("sleep", ["600"], { stdio: "ignore" });
  victims.push(p);
  writeFileSync(join(dir, "data", "postmaster.pid"), `${p.pid}\n`);
  return p;
}

function arm(deadline: number | null, kernel: { device: string } | null = null): void {
  const k = kernel && { ...kernel, timeoutS: 1, fenceMs: 500 };
  writeFileSync(join(dir, "state", "lease"), JSON.stringify({ deadline, term: 7, dataDir: join(dir, "data"), writtenAt: hostMonotonicMs(), agentPid: process.pid, kernel: k }));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-wd-"));
  mkdirSync(join(dir, "state"));
  mkdirSync(join(dir, "data"));
  arm(null);
  wd = spawn(process.execPath, ["src/main.ts", "watchdog", "--state-dir", join(dir, "state")], { stdio: ["ignore", "pipe", "pipe"] });
  wd.stderr!.on("data", (d) => (out += d));
  await waitFor(() => out.includes("watching"), { timeoutMs: 15_000, what: "the watchdog to start" });
});

afterAll(() => {
  for (const v of victims) v.kill("SIGKILL");
  wd?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

test("fences at the lease end, not before", async () => {
  const p = victim();
  const deadline = hostMonotonicMs() + 600;
  arm(deadline);
  await Bun.sleep(400);
  expect(alive(p)).toBe(true);
  await waitFor(() => !alive(p), { timeoutMs: 3000, what: "the fenced process to die" });
  const late = hostMonotonicMs() - deadline;
  console.log(`fenced ${late} ms after the lease end (10 ms clock resolution, 20 ms polling)`);
  expect(late).toBeGreaterThanOrEqual(0);
  expect(late).toBeLessThan(500); // fence_ms budget
});

test("an extended lease keeps the server; a disarmed one is never fenced", async () => {
  const p = victim();
  for (let i = 0; i < 8; i++) {
    arm(hostMonotonicMs() + 300);
    await Bun.sleep(100);
  }
  expect(alive(p)).toBe(true);
  arm(null);
  await Bun.sleep(600);
  expect(alive(p)).toBe(true);
  p.kill("SIGKILL");
});

test("a kernel watchdog that cannot be used: a warning, and the fence at the lease end as before", async () => {
  const p = victim();
  const deadline = hostMonotonicMs() + 600;
  arm(deadline, { device: "/dev/null" });
  await waitFor(() => out.includes("kernel watchdog unusable for term 7: cannot tell whether /dev/null has nowayout set"), { timeoutMs: 3000, what: "the warning" });
  expect(alive(p)).toBe(true);
  await waitFor(() => !alive(p), { timeoutMs: 3000, what: "the fenced process to die" });
  expect(hostMonotonicMs()).toBeGreaterThanOrEqual(deadline);
  arm(null);
});

test("exits when its state dir is removed", async () => {
  rmSync(join(dir, "state"), { recursive: true, force: true });
  await waitFor(() => wd.exitCode !== null, { timeoutMs: 3000, what: "the watchdog to exit" });
});
