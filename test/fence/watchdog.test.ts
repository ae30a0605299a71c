// The fencing watchdog as a real process: it must stop the "postmaster" at the lease end,
// not before, not when the lease is extended or disarmed, and it must exit when its state
// dir disappears with nothing armed (with a lease armed: once that is fenced); with a kernel watchdog configured that cannot be used it warns and fences at
// the lease end as before. The "postmaster" is `sleep` copied to a file named postgres, running
// in the data directory (what the watchdog checks before it signals a pid from postmaster.pid).
// arm() writes as an agent before the checked record did (plain JSON): the downgrade pairing; the
// agent of this version writes through LeaseFile, in place beside this watchdog, by rename beside
// an older binary's (built from the git history, or PGHERD_OLD_BINARY=path).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { decodeLease, encodeLease, LeaseFile, readCheckedLease } from "../../src/fence/lease-file.ts";
import { watchdogChecksLease } from "../../src/fence/watchdog-files.ts";
import { rereadTorn, TORN_RETRY_MS } from "../../src/fence/watchdog.ts";
import { createLogger, memoryLogger } from "../../src/log.ts";
import { waitFor } from "../helpers/proc.ts";

let dir: string;
let wd: ChildProcess;
let out = ""; // the watchdog's log (stderr)
const victims: ChildProcess[] = [];

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

function victim(bin = join(dir, "bin", "postgres"), cwd = join(dir, "data")): ChildProcess {
  const p = spawn(bin, ["600"], { stdio: "ignore", cwd });
  victims.push(p);
  writeFileSync(join(dir, "data", "postmaster.pid"), `${p.pid}\n`);
  return p;
}

/** The lease file as an agent before the checked record wrote it: plain JSON, by rename (writeFileSync here: the watchdog reads it the same). */
function arm(deadline: number | null, kernel: { device: string } | null = null): void {
  const k = kernel && { ...kernel, timeoutS: 1, fenceMs: 500 };
  writeFileSync(join(dir, "state", "lease"), JSON.stringify({ deadline, term: 7, dataDir: join(dir, "data"), writtenAt: hostMonotonicMs(), agentPid: process.pid, kernel: k }));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-wd-"));
  mkdirSync(join(dir, "state"));
  mkdirSync(join(dir, "data"));
  mkdirSync(join(dir, "bin"));
  copyFileSync(Bun.which("sleep")!, join(dir, "bin", "postgres"));
  Bun.spawnSync(["chmod", "755", join(dir, "bin", "postgres")]);
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
  const from = out.length;
  arm(deadline);
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 10, what: "the fenced process to die" });
  // When, by the watchdog's own clock: "lease of term 7 expired N ms ago" (the test process may
  // run late, the watchdog's line says when it fenced).
  const said = /lease of term 7 expired (-?\d+) ms ago: fencing/.exec(out.slice(from));
  expect(said).not.toBeNull();
  const late = Number(said![1]);
  console.log(`fenced ${late} ms after the lease end (by the watchdog's clock, 10 ms resolution)`);
  expect(late).toBeGreaterThanOrEqual(0);
  expect(late).toBeLessThan(500); // fence_ms budget
});

// Review finding (fencing watchdog, 4): a lease file it could not read (removed, a read error,
// damaged) counted as no lease, so the armed one was never fenced.
test("a lease file removed after its lease was verified: the verified lease is fenced at its deadline", async () => {
  const p = victim();
  const deadline = hostMonotonicMs() + 1500;
  arm(deadline);
  // The rename wakes it at once (inotify); the message below says which lease it kept.
  await Bun.sleep(500);
  rmSync(join(dir, "state", "lease"));
  await waitFor(() => out.includes("is unreadable (no such file)"), { timeoutMs: 2000, what: "the watchdog to find the file gone" });
  expect(out).toContain(`keeping the last verified lease (term 7, deadline ${deadline})`);
  expect(alive(p)).toBe(true);
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 10, what: "the fenced process to die" });
  expect(hostMonotonicMs()).toBeGreaterThanOrEqual(deadline);
  arm(null); // the next tests start disarmed
});

test("a deadline shortened by rename (as the agent writes it) is seen at once: it sleeps until the deadline or a change, no polling", async () => {
  const p = victim();
  arm(hostMonotonicMs() + 60_000); // the watchdog now sleeps up to its idle wake (1 s)
  await Bun.sleep(100);
  const deadline = hostMonotonicMs() + 150;
  const tmp = join(dir, "state", "lease.tmp");
  writeFileSync(tmp, JSON.stringify({ deadline, term: 7, dataDir: join(dir, "data"), writtenAt: hostMonotonicMs(), agentPid: process.pid }));
  renameSync(tmp, join(dir, "state", "lease"));
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 10, what: "the fenced process to die" });
  const late = hostMonotonicMs() - deadline;
  expect(late).toBeGreaterThanOrEqual(0);
  expect(late).toBeLessThan(300); // an idle wake would come up to 1 s late
  arm(null);
});

test("the watchdog mode loads only src/fence and orphans.ts: no CLI, zod, postgres or consola", () => {
  const code = `await import(${JSON.stringify(join(import.meta.dir, "../../src/fence/watchdog-main.ts"))}); console.log(JSON.stringify(Object.keys(require.cache)))`;
  const r = Bun.spawnSync([process.execPath, "-e", code]);
  const loaded = (JSON.parse(r.stdout.toString()) as string[]).map((f) => f.replace(/^.*\/(src|node_modules)\//, "$1/")).sort();
  expect(loaded).toEqual(["src/fence/clock.ts", "src/fence/kernel-watchdog.ts", "src/fence/lease-file.ts", "src/fence/watchdog-files.ts", "src/fence/watchdog-main.ts", "src/fence/watchdog.ts", "src/postgres/orphans.ts"]);
  expect(out).toContain("for changes (inotify)");
});

test("an extended lease keeps the server; a disarmed one is never fenced", async () => {
  const p = victim();
  // Renewed every 100 ms for 1.6 s, each lease 800 ms long: only a renewal this process did not
  // get to write for 700 ms lets one run out.
  for (let i = 0; i < 16; i++) {
    arm(hostMonotonicMs() + 800);
    await Bun.sleep(100);
  }
  expect(alive(p)).toBe(true);
  arm(null);
  await Bun.sleep(1200);
  expect(alive(p)).toBe(true);
  p.kill("SIGKILL");
}, 15_000);

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

test("a postmaster.pid naming another process (finding 5 of issue 10): that process is not signalled", async () => {
  const sleeper = victim("sleep", tmpdir()); // unrelated process
  const here = victim("sleep"); // in the data directory, but not a postgres executable
  for (const [p, n] of [[sleeper, 1], [here, 2]] as const) {
    writeFileSync(join(dir, "data", "postmaster.pid"), `${p.pid}\n`);
    arm(hostMonotonicMs() + 100);
    const refused = () => out.includes(`names pid ${p.pid}, which is not a PostgreSQL server`);
    await waitFor(() => refused() || !alive(p), { timeoutMs: 3000, what: `the refusal ${n} (or the signal)` });
    await Bun.sleep(200); // a SIGKILL fallback would come 100 ms after a SIGQUIT
    expect(alive(p)).toBe(true);
    expect(refused()).toBe(true);
  }
  arm(null);
  sleeper.kill("SIGKILL");
  here.kill("SIGKILL");
});

const readCalls = (pid = wd.pid) => Number(/syscr: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);

test("it says in watchdog.features that it verifies checks; an agent beside it extends in place without waking it, is kept alive by the extensions and fenced at the last one's end", async () => {
  const state = join(dir, "state");
  expect(watchdogChecksLease(state, wd.pid!)).toBe(true);
  const p = victim();
  const lf = new LeaseFile(state, join(dir, "data"), process.getuid!(), createLogger("error"));
  lf.ensureWatchdog(); // finds this watchdog running: starts none
  let until = performance.now() + 60_000;
  lf.arm(9, until);
  const ino = statSync(join(state, "lease")).ino;
  let seen = -1; // its read calls, unchanged over 30 ms: it has read the rename and sleeps
  await waitFor(() => seen === (seen = readCalls()), { timeoutMs: 2000, intervalMs: 30, what: "the watchdog to settle" });
  const quiet = readCalls();
  for (let i = 0; i < 8; i++) {
    lf.arm(9, (until += 100)); // extensions: in place, no inotify event
    Bun.sleepSync(20);
  }
  expect(statSync(join(state, "lease")).ino).toBe(ino);
  expect(readCalls() - quiet).toBeLessThanOrEqual(4); // at most one idle round (lease and /proc/uptime), not one per write
  // Short leases extended in place: it wakes at the deadline it knows, reads the extension, sleeps again.
  const t1 = performance.now();
  lf.arm(9, (until = t1 + 250)); // shorter: renamed, seen at once
  const ino2 = statSync(join(state, "lease")).ino;
  while (performance.now() < t1 + 1200) {
    lf.arm(9, (until = performance.now() + 250));
    await Bun.sleep(60);
  }
  expect(statSync(join(state, "lease")).ino).toBe(ino2);
  expect(alive(p)).toBe(true);
  // The agent stops extending (frozen): fenced at the end of the last extension.
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 5, what: "the fenced process to die" });
  const late = performance.now() - until;
  console.log(`extended in place: fenced ${Math.round(late)} ms after the lease end`);
  expect(late).toBeGreaterThanOrEqual(-10); // the deadline is on the host clock, truncated to 10 ms: at most that early, never late
  expect(late).toBeLessThan(300);
  lf.disarm(9);
  expect(statSync(join(state, "lease")).ino).not.toBe(ino2);
});

test("a deadline shortened by this version's agent is renamed into place and seen at once", async () => {
  const state = join(dir, "state");
  const p = victim();
  const lf = new LeaseFile(state, join(dir, "data"), process.getuid!(), createLogger("error"));
  lf.ensureWatchdog();
  lf.arm(10, performance.now() + 60_000);
  lf.arm(10, performance.now() + 60_100);
  await Bun.sleep(100); // the watchdog now sleeps up to its idle wake (1 s)
  const end = performance.now() + 150;
  lf.arm(10, end);
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 5, what: "the fenced process to die" });
  const late = performance.now() - end;
  expect(late).toBeGreaterThanOrEqual(-10); // the host clock's resolution, as above
  expect(late).toBeLessThan(300); // an idle wake would come up to 1 s late
  lf.disarm(10);
});

test("a torn record whose mixed digits form a later deadline is refused: the last verified lease is fenced on time", async () => {
  const p = victim();
  const state = join(dir, "state");
  // A deadline ending in 999 and its extension by 1 ms: the first's digits after the second's thousands read 1 s later.
  let d = hostMonotonicMs() + 400;
  d += (999 - (d % 1000) + 1000) % 1000;
  const l = (deadline: number) => ({ deadline, term: 7, dataDir: join(dir, "data"), writtenAt: d - 500, agentPid: process.pid });
  const a = encodeLease(l(d));
  const b = encodeLease(l(d + 1), a.length);
  let torn: Buffer | null = null;
  for (let k = 0; k < a.length && !torn; k++) {
    const mix = Buffer.concat([b.subarray(0, k), a.subarray(k)]);
    try {
      if (JSON.parse(mix.toString()).deadline === d + 1000 && decodeLease(mix) === "torn") torn = mix;
    } catch {
      // not JSON at this split
    }
  }
  expect(torn).not.toBeNull();
  // The checked record first, read on the watchdog's inotify wake (its read calls: /proc/PID/io) and kept as verified.
  // Both renamed into place (a file written in place by writeFileSync may be read empty in between).
  const put = (rec: Buffer) => {
    writeFileSync(join(state, "lease.tmp"), rec);
    renameSync(join(state, "lease.tmp"), join(state, "lease"));
  };
  const before = readCalls();
  put(a);
  await waitFor(() => readCalls() >= before + 2, { timeoutMs: 1000, intervalMs: 2, what: "the watchdog to read the lease" });
  let seen = -1; // its read calls, unchanged over 30 ms: it has read the rename and sleeps
  await waitFor(() => seen === (seen = readCalls()), { timeoutMs: 2000, intervalMs: 30, what: "the watchdog to settle" });
  writeFileSync(join(state, "lease"), torn!, { flag: "r+" }); // in place, as the agent extends: the inode it verified
  await waitFor(() => out.includes("failed its check"), { timeoutMs: 3000, intervalMs: 5, what: "the refusal" });
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 5, what: "the fenced process to die" });
  const late = hostMonotonicMs() - d;
  console.log(`torn record refused: fenced ${late} ms after the verified deadline (the torn one was 1000 ms later)`);
  expect(late).toBeGreaterThanOrEqual(0);
  expect(late).toBeLessThan(500);
  arm(null); // an older agent's plain record is read again at once
  await waitFor(() => { try { return JSON.parse(readFileSync(join(state, "lease"), "utf8")).deadline === null; } catch { return false; } }, { timeoutMs: 1000, what: "the disarm" });
});

/** A checked record of `deadline` (term 7, this test's data dir) and one torn between it and its 1 ms extension. */
function records(deadline: number): { whole: Buffer; torn: Buffer } {
  const l = (d: number) => ({ deadline: d, term: 7, dataDir: join(dir, "data"), writtenAt: deadline - 500, agentPid: process.pid });
  const whole = encodeLease(l(deadline));
  const next = encodeLease(l(deadline + 1), whole.length);
  for (let k = whole.length - 1; k > 0; k--) {
    const torn = Buffer.concat([next.subarray(0, k), whole.subarray(k)]);
    if (decodeLease(torn) === "torn") return { whole, torn };
  }
  throw new Error("no torn split");
}
const putRenamed = (rec: Buffer) => {
  writeFileSync(join(dir, "state", "lease.tmp"), rec);
  renameSync(join(dir, "state", "lease.tmp"), join(dir, "state", "lease"));
};
const settled = async () => {
  let seen = -1; // its read calls, unchanged over 30 ms: it has read the file and sleeps
  await waitFor(() => seen === (seen = readCalls()), { timeoutMs: 2000, intervalMs: 30, what: "the watchdog to settle" });
};

test("a torn record in a file that replaced the verified one (review finding 3): its deadline is unknown, fenced at once, not at the verified deadline", async () => {
  const p = victim();
  const { whole, torn } = records(hostMonotonicMs() + 60_000);
  putRenamed(whole); // verified: 60 s
  await settled();
  const t0 = performance.now();
  putRenamed(torn); // a new file (a shorter or new-term record, then its extension torn), never read whole
  await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 5, what: "the fenced process to die" }); // main: at the verified deadline, 60 s later
  console.log(`torn record in a replaced file: fenced ${Math.round(performance.now() - t0)} ms after the rename`);
  expect(out).toContain("was replaced and failed its check");
  arm(null);
});

test("after a fence: a torn record renamed in is fenced at once, and a same-term extension is seen within the fence budget (review of 7 December)", async () => {
  // The watchdog took the fenced lease's passed deadline for the replacement's: the new server ran on.
  const p1 = victim();
  const { whole, torn } = records(hostMonotonicMs() + 300);
  putRenamed(whole);
  await waitFor(() => !alive(p1), { timeoutMs: 2000, intervalMs: 5, what: "the first fence" });
  await settled();
  const p2 = victim();
  putRenamed(torn);
  await waitFor(() => !alive(p2), { timeoutMs: 1500, intervalMs: 5, what: "the fence of the server under the torn replacement" });
  arm(null);

  // An extension of the same term after the watchdog fenced its deadline: written in place, it
  // raised no event and the watchdog, idle, read it about a second later. Renamed now.
  const state = join(dir, "state");
  const lf = new LeaseFile(state, join(dir, "data"), process.getuid!(), createLogger("error"));
  lf.ensureWatchdog();
  const p3 = victim();
  lf.arm(11, performance.now() + 300);
  await waitFor(() => !alive(p3), { timeoutMs: 2000, intervalMs: 5, what: "the fence at the first deadline" });
  await settled();
  const p4 = victim(); // started again by an agent still leading (a renewal that came just after the deadline)
  const until = performance.now() + 150;
  lf.arm(11, until);
  await waitFor(() => !alive(p4), { timeoutMs: 3000, intervalMs: 5, what: "the fence at the extension's end" });
  const late = performance.now() - until;
  console.log(`extension after a fence: fenced ${Math.round(late)} ms after its end`);
  expect(late).toBeLessThan(300); // an idle wake: up to 1 s

  // An extension under 50 ms is not written, and not held: holds() ends with the file's deadline.
  const t = performance.now();
  lf.arm(11, t + 200);
  lf.arm(11, t + 240);
  await Bun.sleep(Math.max(0, t + 215 - performance.now()));
  expect(lf.holds()).toBe(false);
  lf.disarm(11);
});

// Review finding 4: a torn read at the passed deadline is read again before it fences. rereadTorn
// reads a real file here; its clock is the test's, so the extension lands at a chosen point of the
// loop, whatever else the machine runs (a second process writing within the loop's few ms raced).
describe("a torn read that would fence is read again (rereadTorn)", () => {
  const file = () => join(dir, "torn-reread");
  const deadline = 1_000_000;
  let whole: Buffer, torn: Buffer;
  beforeAll(() => void ({ whole, torn } = records(deadline))); // dir exists from the file's beforeAll
  const later = () => encodeLease({ deadline: deadline + 60_000, term: 7, dataDir: join(dir, "data"), writtenAt: deadline, agentPid: process.pid }, whole.length);
  /** A clock that moves only when told: sleep(ms) moves it ms, after `during(sleeps)`; reads are counted with the time they began. */
  const run = async (during: (sleeps: number, clock: { t: number }) => void = () => {}, pauseAfterFirstRead = 0) => {
    const clock = { t: 0 };
    const began: number[] = [];
    let sleeps = 0;
    const read = () => {
      began.push(clock.t);
      const r = readCheckedLease(file());
      if (began.length === 1) clock.t += pauseAfterFirstRead; // this process paused between the read and its verdict
      return r;
    };
    const r = await rereadTorn(read, (r) => r === "torn", { now: () => clock.t, sleep: async (ms) => { during(++sleeps, clock); clock.t += ms; } });
    return { r, began };
  };

  test("torn on every read: it fences on a read begun TORN_RETRY_MS after the first, not before", async () => {
    writeFileSync(file(), torn);
    const { r, began } = await run();
    expect(r).toBe("torn");
    expect(began.at(-1)!).toBe(TORN_RETRY_MS);
    expect(began.slice(0, -1).every((t) => t < TORN_RETRY_MS)).toBe(true);
  });

  test("an extension completed during the retries is the answer: the server is kept", async () => {
    writeFileSync(file(), torn);
    const { r, began } = await run((sleeps) => sleeps === 3 && writeFileSync(file(), later(), { flag: "r+" }));
    expect(r).not.toBe("torn");
    expect((r as { deadline: number }).deadline).toBe(deadline + 60_000);
    expect(began).toEqual([0, 1, 2, 3]);
  });

  test("paused longer than the retries right after the first torn read: one more read follows, and an extension completed meanwhile is seen", async () => {
    writeFileSync(file(), torn);
    const { r, began } = await run((sleeps) => sleeps === 1 && writeFileSync(file(), later(), { flag: "r+" }), 50);
    expect((r as { deadline: number }).deadline).toBe(deadline + 60_000);
    expect(began).toEqual([0, 51]);
  });

  test("a whole record, or a torn one that would not fence, is read once", async () => {
    writeFileSync(file(), whole);
    expect((await run()).began).toEqual([0]);
    writeFileSync(file(), torn);
    const clock = { t: 0 };
    let reads = 0;
    expect(await rereadTorn(() => (reads++, readCheckedLease(file())), () => false, { now: () => clock.t, sleep: async () => {} })).toBe("torn");
    expect(reads).toBe(1);
  });
});

// Upgrade: a watchdog of an older binary (before the checked record) outlives its agent; the new agent beside it.
/** The last release before the checked lease record. */
const OLD_REV = "f703e81";

/** PGHERD_OLD_BINARY, or OLD_REV's binary built from this repository's history into a fresh directory. */
function olderBinary(): string {
  if (process.env.PGHERD_OLD_BINARY) return process.env.PGHERD_OLD_BINARY;
  const root = join(import.meta.dir, "..", "..");
  const tree = mkdtempSync(join(dir, "old-tree-")); // removed with dir
  const unpack = spawnSync("bash", ["-c", 'set -o pipefail; git -C "$1" archive "$2" | tar -x -C "$3"', "unpack", root, OLD_REV, tree], { encoding: "utf8" });
  if (unpack.status !== 0) throw new Error(`cannot unpack ${OLD_REV} from the git history of ${root} (a clone with its history is needed): ${unpack.stderr}`);
  symlinkSync(join(root, "node_modules"), join(tree, "node_modules"));
  const build = spawnSync(process.execPath, [join(tree, "scripts", "build.ts")], { cwd: tree, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`building ${OLD_REV} failed: ${build.stdout}${build.stderr}`);
  return join(tree, "dist", "pgherd");
}

test("beside an older binary's watchdog the agent renames every record, which that watchdog reads and fences on", async () => {
  const state = join(dir, "state-old");
  mkdirSync(state);
  let oldOut = "";
  const old = spawn(olderBinary(), ["watchdog", "--state-dir", state], { stdio: ["ignore", "pipe", "pipe"] });
  old.stderr!.on("data", (d) => (oldOut += d));
  try {
    await waitFor(() => oldOut.includes("watching"), { timeoutMs: 15_000, what: "the old watchdog to start" });
    expect(watchdogChecksLease(state, old.pid!)).toBe(false);
    const said = memoryLogger();
    const lf = new LeaseFile(state, join(dir, "data"), process.getuid!(), said);
    lf.ensureWatchdog();
    // That build does not limit its fence to the lease's OS user: an agent says so when it runs as root.
    expect(said.lines.filter((l) => l.includes(`fencing watchdog (pid ${old.pid}) runs as root and does not say it limits its fence`)).length).toBe(process.getuid?.() === 0 ? 1 : 0);
    let until = 0;
    let p: ChildProcess | undefined;
    // Extends a 300 ms lease every 100 ms. The claim holds only while each extension came before the
    // lease it extends ended: a run in which this process itself stalled that long (its own arm came
    // too late: the fence was right) is run again, and said so.
    for (let attempt = 1; ; attempt++) {
      let lapsed = -Infinity;
      for (let i = 0; i < 8; i++) {
        const ino = statSync(join(state, "lease")).ino;
        if (i > 0) lapsed = Math.max(lapsed, performance.now() - until);
        until = performance.now() + 300;
        lf.arm(11, until);
        expect(statSync(join(state, "lease")).ino).not.toBe(ino); // renamed every time: that watchdog cannot tell a torn record
        if (i === 0) p = victim(); // under a lease: one lapsed in a run before must not fence it
        await Bun.sleep(100);
      }
      if (alive(p!)) break;
      const why = `the old watchdog fenced while the lease was extended (attempt ${attempt}; the latest extension came ${Math.round(lapsed)} ms after the lease it extended ended). Its log:\n${oldOut}`;
      if (lapsed < -20 || attempt === 3) throw new Error(why); // in time even on the host clock, whose mapping may end a lease up to ~20 ms early
      console.log(`${why}\n-> this process stalled past its own lease: run again`);
    }
    await waitFor(() => !alive(p!), { timeoutMs: 3000, intervalMs: 5, what: "the fenced process to die" });
    const late = performance.now() - until;
    console.log(`older watchdog: fenced ${Math.round(late)} ms after the lease end`);
    expect(late).toBeGreaterThanOrEqual(-10); // the host clock's resolution, as above
    expect(late).toBeLessThan(300);
    lf.disarm(11);
  } finally {
    old.kill("SIGKILL");
  }
}, 60_000);

// Review finding (fencing watchdog, 6): a virtual IP whose removal failed stayed on the fenced host
// for good (the new leader adds it too). Here `ip` fails (no such interface): tried again each second.
test("a virtual IP whose removal failed is tried again while the fenced lease is the last", async () => {
  const p = victim();
  writeFileSync(join(dir, "state", "vip"), JSON.stringify({ address: "10.9.9.9/24", interface: "pgh-none0" }), { mode: 0o600 });
  try {
    arm(hostMonotonicMs() + 100);
    await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 10, what: "the fenced process to die" });
    await waitFor(() => out.includes("could not remove virtual IP 10.9.9.9/24 from pgh-none0"), { timeoutMs: 3000, what: "the first removal to fail" });
    // The record now names an interface `ip` knows, without the address (lo): the next try finds it
    // gone, which ends the tries (`ip addr del` of an address lo does not have changes nothing).
    writeFileSync(join(dir, "state", "vip"), JSON.stringify({ address: "10.9.9.9/24", interface: "lo" }), { mode: 0o600 });
    await waitFor(() => out.includes("virtual IP 10.9.9.9/24 was not on lo"), { timeoutMs: 5000, what: "the removal tried again" });
  } finally {
    rmSync(join(dir, "state", "vip"), { force: true });
  }
  arm(null);
});

// Review finding (fencing watchdog, 7): their default action ended it (`killall -HUP pgherd` to reload the agent).
test("SIGHUP, SIGUSR1 and SIGUSR2 do not end it", async () => {
  for (const sig of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const) {
    wd.kill(sig);
    await waitFor(() => out.includes(`${sig} ignored`), { timeoutMs: 5_000, what: `the watchdog to log ${sig}` });
  }
  expect(alive(wd)).toBe(true);
});

// Review finding (fencing watchdog, state dir): a state dir removed (an operator wiping the node)
// while the agent was frozen or killed ended the watchdog at once, with the kernel watchdog
// disarmed: the armed lease lapsed unfenced and the old primary ran on beside the next leader.
test("a state dir removed under an armed lease: the lease is fenced at its deadline, then the watchdog exits", async () => {
  const base = mkdtempSync(join(dir, "wiped-"));
  const state = join(base, "state");
  const data = join(base, "data");
  mkdirSync(state);
  mkdirSync(data);
  const p = spawn(join(dir, "bin", "postgres"), ["600"], { stdio: "ignore", cwd: data });
  victims.push(p);
  writeFileSync(join(data, "postmaster.pid"), `${p.pid}\n`);
  let log = "";
  const w = spawn(process.execPath, ["src/main.ts", "watchdog", "--state-dir", state], { stdio: ["ignore", "pipe", "pipe"] });
  w.stderr!.on("data", (d) => (log += d));
  try {
    await waitFor(() => log.includes("watching"), { timeoutMs: 15_000, what: "the watchdog to start" });
    // A lease ~500 ms ahead, renamed in (as the agent writes a term's first) and read: its read
    // calls rose and then held still. A run in which this process got there too late is armed again.
    let deadline = 0;
    for (let attempt = 1; ; attempt++) {
      deadline = hostMonotonicMs() + 500;
      const before = readCalls(w.pid);
      writeFileSync(join(state, "lease.tmp"), JSON.stringify({ deadline, term: 7, dataDir: data, writtenAt: hostMonotonicMs(), agentPid: process.pid }));
      renameSync(join(state, "lease.tmp"), join(state, "lease"));
      await waitFor(() => readCalls(w.pid) >= before + 2, { timeoutMs: 1000, intervalMs: 2, what: "the watchdog to read the lease" });
      let seen = -1;
      await waitFor(() => seen === (seen = readCalls(w.pid)), { timeoutMs: 2000, intervalMs: 30, what: "the watchdog to settle" });
      if (hostMonotonicMs() < deadline - 200) break;
      if (attempt === 3) throw new Error("this test process stalled past the lease three times before it could remove the state dir");
    }
    expect(alive(p)).toBe(true);
    rmSync(state, { recursive: true, force: true });
    await waitFor(() => !alive(p), { timeoutMs: 3000, intervalMs: 10, what: "the fenced process to die" }); // main: the watchdog exited at once, the server ran on
    const said = /lease of term 7 expired (-?\d+) ms ago: fencing/.exec(log);
    expect(said).not.toBeNull();
    expect(Number(said![1])).toBeGreaterThanOrEqual(0);
    expect(Number(said![1])).toBeLessThan(500);
    expect(log).toContain(`${state} is gone: the lease of term 7 stays in force, fenced at its deadline ${deadline}`);
    // Nothing armed any more: it exits, after the fence.
    await waitFor(() => w.exitCode !== null, { timeoutMs: 3000, what: "the watchdog to exit" });
    expect(log.indexOf(`${state} is gone: exiting`)).toBeGreaterThan(log.indexOf("PostgreSQL fenced"));
  } finally {
    w.kill("SIGKILL");
  }
});

test("exits when its state dir is removed", async () => {
  rmSync(join(dir, "state"), { recursive: true, force: true });
  await waitFor(() => wd.exitCode !== null, { timeoutMs: 3000, what: "the watchdog to exit" });
});
