// The agent's side of the lease file: a restarted agent announces itself without disarming a
// lease its predecessor armed (the primary may still run; only this agent may extend or disarm it).
// The checked record: a torn read never passes, an older watchdog still reads it, and the agent
// writes in place only beside a watchdog that says it verifies the check. The host clock.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostClock, hostMonotonicMs } from "../../src/fence/clock.ts";
import { decodeLease, encodeLease, LEASE_FILE, LeaseFile, parseLease, readLeaseFile, type Lease } from "../../src/fence/lease-file.ts";
import { CHECKED_LEASE, LEASE_OS_UID, WATCHDOG_FEATURES_FILE, WATCHDOG_PID_FILE, watchdogAlive, watchesDir } from "../../src/fence/watchdog-files.ts";
import { createLogger, memoryLogger } from "../../src/log.ts";
import { fakeWatchdog, killFakeWatchdogs } from "../helpers/fake-watchdog.ts";

let dir: string;
const log = createLogger("error");

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-lease-"));
});
afterAll(() => {
  killFakeWatchdogs();
  rmSync(dir, { recursive: true, force: true });
});

function stateDir(name: string): string {
  const d = join(dir, name);
  mkdirSync(d);
  fakeWatchdog(d);
  return d;
}
const watchdogPid = (d: string) => Number(readFileSync(join(d, WATCHDOG_PID_FILE), "utf8"));
const read = (d: string) => JSON.parse(readFileSync(join(d, LEASE_FILE), "utf8"));

test("a restarted agent keeps the armed lease of its predecessor and only takes it over", () => {
  const d = stateDir("armed");
  const deadline = hostMonotonicMs() + 60_000;
  writeFileSync(join(d, LEASE_FILE), JSON.stringify({ deadline, term: 5, dataDir: "/data", writtenAt: 1, agentPid: 1 }));
  new LeaseFile(d, "/data", process.getuid!(), log).ensureWatchdog();
  expect(read(d)).toMatchObject({ deadline, term: 5, dataDir: "/data", agentPid: process.pid });
});

test("with no lease before it, an agent announces a disarmed one", () => {
  const d = stateDir("fresh");
  new LeaseFile(d, "/data", process.getuid!(), log, { device: "/dev/watchdog", timeoutS: 1, fenceMs: 500 }).ensureWatchdog();
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

const lease = (deadline: number | null, more: Partial<Lease> = {}): Lease => ({ deadline, term: 7, dataDir: "/var/lib/postgresql/15/main", writtenAt: 5_000_000, agentPid: 4242, ...more });
/** What a watchdog before the checked record does with the file's text (watchdog.ts at the time). */
const oldReader = (bytes: Buffer) => parseLease(JSON.parse(bytes.toString("utf8")));

test("a checked record decodes to its lease and still parses for an older watchdog (the check key is dropped)", () => {
  const l = lease(123_456, { kernel: { device: "/dev/watchdog", timeoutS: 1, fenceMs: 400 } });
  const rec = encodeLease(l);
  expect(rec.length % 256).toBe(0);
  expect(decodeLease(rec)).toEqual(l);
  expect(oldReader(rec)).toEqual(l);
  expect(encodeLease(lease(null), rec.length).length).toBe(rec.length); // fits: same size, written in place
  expect(decodeLease(Buffer.from(JSON.stringify(l)))).toEqual(l); // an older agent's plain JSON
  expect(decodeLease(encodeLease(lease(1, { dataDir: "/d/é".padEnd(400, "x") })))).toEqual(lease(1, { dataDir: "/d/é".padEnd(400, "x") }));
});

test("a torn read (two records mixed at any byte) never passes its check, though unchecked it would read as a later deadline", () => {
  // An extension from …1999 to …2000: mixed digits read as …2999, a deadline nobody wrote.
  const a = encodeLease(lease(901_999, { writtenAt: 901_000 }));
  const b = encodeLease(lease(902_000, { writtenAt: 901_150 }), a.length);
  let later = 0;
  for (const [first, second] of [[a, b], [b, a]] as const) {
    for (let k = 0; k <= a.length; k++) {
      const mix = Buffer.concat([first.subarray(0, k), second.subarray(k)]);
      const got = decodeLease(mix);
      if (got !== "torn") expect([lease(901_999, { writtenAt: 901_000 }), lease(902_000, { writtenAt: 901_150 })]).toContainEqual(got);
      try {
        if (oldReader(mix).deadline! > 902_000) later++;
      } catch {
        // not even JSON
      }
    }
  }
  expect(later).toBeGreaterThan(0); // what the check is for
  // A damaged check digit, or a record cut short, is refused as well.
  const bad = Buffer.from(a);
  bad[12] = bad[12] === 0x30 ? 0x31 : 0x30;
  expect(decodeLease(bad)).toBe("torn");
  expect(decodeLease(a.subarray(0, 100))).toBe("torn");
});

test("HostClock: a stale, truncated or rate-skewed offset only ever maps a time EARLIER than the true host time", () => {
  // A simulated host: performance.now() (local) and CLOCK_BOOTTIME (host) with a rate ratio, suspends, and 10 ms truncation.
  for (const [ratio, exact] of [[1, false], [1 + 5e-4, false], [1 - 5e-4, false], [1, true], [1 - 5e-4, true]] as const) {
    let local = 1000.123;
    let boot = 777_777.777;
    const advance = (ms: number) => {
      local += ms;
      boot += ms * ratio;
    };
    // exact: a host clock without truncation whose read takes 2 ms (the order of the two reads must absorb that)
    const readHost = () => {
      if (!exact) return Math.floor(boot / 10) * 10;
      advance(2);
      return boot; // taken at the end of the read: the worst case for a sample
    };
    const clock = new HostClock(1000, readHost, () => {
      const v = local;
      advance(0.05); // every read takes time
      return v;
    });
    let worst = -Infinity;
    for (let i = 0; i < 5000; i++) {
      advance(Math.random() * 37);
      if (i % 997 === 0) boot += 5000; // a suspend: CLOCK_BOOTTIME moves, performance.now() does not
      const ahead = Math.random() * 1500; // a lease end up to 1.5 s ahead
      const mapped = clock.toHost(local + ahead);
      const truth = boot + ahead * ratio; // the host time when performance.now() reaches local + ahead
      expect(mapped).toBeLessThanOrEqual(truth);
      worst = Math.max(worst, mapped - truth);
    }
    expect(worst).toBeGreaterThan(-15); // and not by much, outside a suspend's second (10 ms steps, 1 ms per s of rate)
  }
});

// Review (host suspend): performance.now() is CLOCK_MONOTONIC, which stands still while the host is
// suspended, and CLOCK_BOOTTIME does not; a lease end counted before a suspend was mapped through the
// offset sampled after it, 10 s later than it really ended.
test("HostClock: a suspend (the offset grew past the truncation and the read gap) keeps the offset from before it for every local time up to keepMs past the sample that found it; reported once", () => {
  let local = 10_000;
  let host = 50_000;
  const clock = new HostClock(1000, () => Math.floor(host / 10) * 10, () => local, 1500);
  const sent = local; // a heartbeat a majority acknowledged: the lease runs 1000 ms from its send
  const until = sent + 1000;
  const before = clock.toHost(until);
  expect(before).toBeLessThanOrEqual(host + 1000);
  local += 950;
  host += 950;
  host += 10_000; // suspended: CLOCK_BOOTTIME moves on, performance.now() does not
  local += 60;
  host += 60;
  // The same lease end (it ended ~9 s ago in real time) maps where it did, not 10 s later.
  expect(clock.toHost(until)).toBeLessThanOrEqual(before);
  expect(clock.toHost(until)).toBeLessThan(clock.hostNow());
  // Now is mapped through the new offset: within the truncation of the true host time, never ahead.
  expect(clock.hostNow()).toBeLessThanOrEqual(host);
  expect(clock.hostNow()).toBeGreaterThan(host - 12);
  const found = local; // the sample above found it
  expect(clock.suspended()).toBeGreaterThan(9_980);
  expect(clock.suspended()).toBe(0); // once
  // Every local time before keepMs past that sample (any lease counted from before it) keeps the old offset…
  expect(clock.toHost(found + 1499)).toBeLessThanOrEqual(sent + 40_000 + 1499 + 1010);
  // …and one at or after it (a lease counted after the resume) takes the new one.
  expect(clock.toHost(found + 1500)).toBeGreaterThan(host + 1500 - 15);
  local += 2000;
  host += 2000;
  expect(clock.toHost(local + 1000)).toBeGreaterThan(host + 1000 - 15);
  expect(clock.suspended()).toBe(0);
});

test("HostClock: no suspend found in the 10 ms truncation, read gaps of up to 10 ms (a preempted agent) or a 500 ppm rate error; a real one among them is", () => {
  for (const ratio of [1, 1 + 5e-4, 1 - 5e-4]) {
    let local = 1000.123;
    let boot = 777_777.777;
    const advance = (ms: number) => {
      local += ms;
      boot += ms * ratio;
    };
    let readGap = 0;
    const readHost = () => {
      const h = Math.floor(boot / 10) * 10;
      advance(readGap); // preempted between the two reads (measured up to 10 ms on a loaded 2-core host)
      return h;
    };
    const clock = new HostClock(1000, readHost, () => {
      const v = local;
      advance(0.005);
      return v;
    }, 1500);
    let worst = 0;
    for (let i = 0; i < 20_000; i++) {
      advance(Math.random() < 0.9 ? Math.random() * 30 : Math.random() * 3000);
      readGap = Math.random() < 0.1 ? Math.random() * 10 : Math.random() * 0.05;
      expect(clock.suspended()).toBe(0);
      const at = local + 1000;
      const mapped = clock.toHost(at);
      const truth = boot + (at - local) * ratio; // the host time when performance.now() reaches `at`
      expect(mapped).toBeLessThanOrEqual(truth);
      worst = Math.min(worst, mapped - truth);
    }
    // Never an offset kept as if for a suspend: only the truncation, the read gap and the rate margin.
    expect(worst).toBeGreaterThan(-25);
    boot += 200; // a 200 ms suspend
    advance(5);
    expect(clock.suspended()).toBeGreaterThanOrEqual(180);
  }
});

test("HostClock on this host: sampling /proc/uptime at every step finds no suspend", async () => {
  const clock = new HostClock(1000, hostMonotonicMs, () => performance.now(), 1000);
  const end = performance.now() + 500;
  let n = 0;
  while (performance.now() < end) {
    expect(clock.suspended()).toBe(0);
    if (++n % 50 === 0) await Bun.sleep(Math.random() * 20);
  }
  expect(n).toBeGreaterThan(100);
});

test("HostClock on this host: within /proc/uptime's resolution of it, never ahead; an armed deadline is never later than the lease end", () => {
  const clock = new HostClock();
  for (let i = 0; i < 500; i++) {
    const before = hostMonotonicMs();
    const mapped = clock.toHost(performance.now());
    const after = hostMonotonicMs() + 10; // /proc/uptime truncates: the true time is below this
    expect(mapped).toBeLessThanOrEqual(after);
    expect(mapped).toBeGreaterThanOrEqual(before - 12);
  }
  const d = stateDir("clock");
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog();
  for (let i = 0; i < 50; i++) {
    // The host clock read before p0 (truncated: at or before the true time then) and, rounded up
    // to its resolution, after p1 (at or after it): the lease's end, at performance.now() = until,
    // is on the host clock between h0 + (until - p0) and h1 + (until - p1), however long arm()
    // took between them (its file write waits on the disk: 40 ms and more on a loaded machine).
    const h0 = hostMonotonicMs();
    const p0 = performance.now();
    const until = p0 + 1000 + i * 60; // each an extension of ≥ 50 ms: written
    lf.arm(3, until);
    const p1 = performance.now();
    const h1 = hostMonotonicMs() + 10;
    const deadline = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
    expect(deadline).toBeLessThanOrEqual(h1 + (until - p1)); // never later than the lease end
    // Not much earlier either: the clock's 10 ms steps (its offset's and h0's) and the rate margin.
    expect(deadline).toBeGreaterThanOrEqual(h0 + (until - p0) - 40);
  }
});

/** A features file as the watchdog process `pid` writes it; `start` overrides its start time (a pid reused by another process). */
function features(d: string, pid: number, start?: string, what = [CHECKED_LEASE, LEASE_OS_UID]): void {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const real = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
  writeFileSync(join(d, WATCHDOG_FEATURES_FILE), `${pid} ${start ?? real} ${what.join(" ")}\n`);
}

test("every record names the OS user's uid; parseLease checks it and takes a lease without it (an older agent's)", () => {
  const d = stateDir("os-uid");
  const lf = new LeaseFile(d, "/data", 4321, log);
  lf.ensureWatchdog();
  expect(readLeaseFile(join(d, LEASE_FILE))!.osUid).toBe(4321); // the announcement
  lf.arm(2, performance.now() + 1000);
  expect(readLeaseFile(join(d, LEASE_FILE))!.osUid).toBe(4321);
  lf.disarm(2);
  expect(readLeaseFile(join(d, LEASE_FILE))).toMatchObject({ deadline: null, osUid: 4321 });
  const base = { deadline: 5, term: 2, dataDir: "/d", writtenAt: 1, agentPid: 9 };
  expect(parseLease({ ...base, osUid: 0 }).osUid).toBe(0);
  expect(parseLease(base).osUid).toBeUndefined();
  for (const bad of [-1, 1.5, "26", null]) expect(() => parseLease({ ...base, osUid: bad })).toThrow(/^osUid: expected an integer/);
});

test.skipIf(process.getuid?.() !== 0)("the agent warns, once, of a root watchdog that does not fence by the lease's OS user (an older build); of one run as another user, not", () => {
  const d = stateDir("older-build");
  const mem = memoryLogger();
  const lf = new LeaseFile(d, "/data", 4321, mem);
  const older = () => mem.lines.filter((l) => l.includes("an older build"));
  features(d, watchdogPid(d), undefined, [CHECKED_LEASE]);
  lf.ensureWatchdog();
  lf.ensureWatchdog();
  expect(older()).toEqual([expect.stringMatching(new RegExp(`^warn the fencing watchdog \\(pid ${watchdogPid(d)}\\) runs as root and does not say it limits its fence to postgres\\.os_user's processes \\(an older build`))]);
  // This build's watchdog, to an agent that has warned of none yet: nothing said.
  const d2 = stateDir("this-build");
  const mem2 = memoryLogger();
  features(d2, watchdogPid(d2));
  new LeaseFile(d2, "/data", 4321, mem2).ensureWatchdog();
  expect(mem2.lines.filter((l) => l.includes("older build"))).toEqual([]);
  // An older build run as another user (nobody) can signal only that user's processes: nothing said.
  const d3 = join(dir, "older-not-root");
  mkdirSync(d3);
  const mem3 = memoryLogger();
  features(d3, fakeWatchdog(d3, { uid: 65534, gid: 65534 }), undefined, [CHECKED_LEASE]);
  new LeaseFile(d3, "/data", 4321, mem3).ensureWatchdog();
  expect(mem3.lines.filter((l) => l.includes("older build"))).toEqual([]);
});
const inode = (d: string) => statSync(join(d, LEASE_FILE)).ino;

test("beside an older watchdog (no features file) every write renames a new file; beside one that checks, extensions go in place, all else by rename", () => {
  const d = stateDir("pairing");
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog(); // the fake watchdog wrote no features file: an older one
  lf.arm(4, performance.now() + 1000);
  const first = inode(d);
  lf.arm(4, performance.now() + 1200);
  expect(inode(d)).not.toBe(first); // renamed: never torn for a reader that cannot tell
  expect(oldReader(readFileSync(join(d, LEASE_FILE))).term).toBe(4);

  features(d, watchdogPid(d)); // the watchdog was replaced by one that checks (upgrade)
  lf.ensureWatchdog();
  lf.arm(4, performance.now() + 1400); // the first write after the switch renames a fixed-size record in place…
  const kept = inode(d);
  const size = statSync(join(d, LEASE_FILE)).size;
  for (let i = 1; i <= 5; i++) {
    lf.arm(4, performance.now() + 1400 + i * 100); // …and the next ones overwrite it
    expect(inode(d)).toBe(kept);
    expect(statSync(join(d, LEASE_FILE)).size).toBe(size);
  }
  const deadline = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  expect(deadline).toBeGreaterThan(hostMonotonicMs() + 1500);
  lf.arm(4, performance.now() + 200); // a shorter deadline: renamed, so that the watchdog's directory watch wakes it
  expect(readLeaseFile(join(d, LEASE_FILE))!.deadline!).toBeLessThan(deadline);
  expect(inode(d)).not.toBe(kept);
  let ino = inode(d);
  lf.arm(5, performance.now() + 2000); // a new term: renamed
  expect(inode(d)).not.toBe(ino);
  ino = inode(d);
  lf.arm(5, performance.now() + 2100); // its extension: in place
  expect(inode(d)).toBe(ino);
  lf.disarm(5); // renamed
  expect(inode(d)).not.toBe(ino);
  expect(readLeaseFile(join(d, LEASE_FILE))!.deadline).toBeNull();
  // A reused pid (the same pid, another start time): the test after the next.
});

test("in place, the agent notices its file was removed, replaced or cut short and renames a new one into place", () => {
  const d = stateDir("replaced");
  features(d, watchdogPid(d));
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog();
  lf.arm(2, performance.now() + 1000);
  lf.arm(2, performance.now() + 1100);
  rmSync(join(d, LEASE_FILE));
  lf.arm(2, performance.now() + 1200); // checked before each in-place write
  expect(readLeaseFile(join(d, LEASE_FILE))?.term).toBe(2);
  writeFileSync(join(d, "other"), JSON.stringify(lease(1)));
  renameSync(join(d, "other"), join(d, LEASE_FILE));
  lf.arm(2, performance.now() + 1300);
  expect(readLeaseFile(join(d, LEASE_FILE))?.term).toBe(2);
  writeFileSync(join(d, LEASE_FILE), ""); // cut short in place (the same inode): written through the mapping, this would fault
  lf.arm(2, performance.now() + 1400);
  expect(readLeaseFile(join(d, LEASE_FILE))?.term).toBe(2);
});

test("a lease file that holds no lease (empty after a crash, damaged): readLeaseFile says which file", () => {
  const d = stateDir("damaged");
  writeFileSync(join(d, LEASE_FILE), "");
  expect(() => readLeaseFile(join(d, LEASE_FILE))).toThrow(`${join(d, LEASE_FILE)} holds no lease`);
  expect(readLeaseFile(join(d, "absent"))).toBeNull();
});

test("the same lease end armed again is not written again, though its deadline reads up to 10 ms earlier on the host clock; a lease that ends earlier is", async () => {
  const d = stateDir("jitter");
  features(d, watchdogPid(d));
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog();
  const until = performance.now() + 5000;
  lf.arm(3, until);
  const written = readFileSync(join(d, LEASE_FILE));
  const ino = inode(d);
  const start = hostMonotonicMs();
  while (hostMonotonicMs() < start + 40) {
    lf.arm(3, until); // each follower's answer to one heartbeat: the same lease end, across host clock steps
    lf.arm(3, until + 10);
    await Bun.sleep(1);
  }
  expect(readFileSync(join(d, LEASE_FILE)).equals(written)).toBe(true);
  expect(inode(d)).toBe(ino);
  const before = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  lf.arm(3, until - 50); // ends 50 ms earlier (more than a clock step): written, renamed (the watchdog must see it at once)
  const after = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  expect(after).toBeLessThan(before);
  expect(inode(d)).not.toBe(ino);
  expect(after).toBeLessThanOrEqual(hostMonotonicMs() + 10 + (until - 50 - performance.now()));
});

// Review (host suspend, /tmp/review-fence/suspend2.test.ts): the old leader resumed with its lease
// still valid on performance.now(); its next arm of the same lease end mapped it through an offset
// that included the suspend, and renamed a deadline 10 s later into place: the watchdog woke, read a
// future deadline and did not fence, beside the new primary.
test("after a host suspend, re-arming a lease end counted before it does not move the watchdog's deadline: it has passed, is renamed in (the watchdog wakes) and is not held", () => {
  const d = stateDir("suspend");
  features(d, watchdogPid(d)); // extensions in place: the rename below is the expired record's
  let local = 10_000;
  let host = 50_000;
  const lf = new LeaseFile(d, "/data", process.getuid!(), log, null, new HostClock(1000, () => host, () => local, 1500));
  lf.ensureWatchdog();
  lf.arm(3, local + 900);
  local += 950;
  host += 950;
  const until = local + 1000;
  lf.arm(3, until);
  const written = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  const ino = inode(d);
  host += 10_000; // suspended 10 s
  local += 60;
  host += 60; // resumed: the next step while leading arms the same lease end
  const ok = lf.arm(3, until);
  const after = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  expect(after).toBeLessThanOrEqual(written); // before the fix: written + 10_000, past the resume
  expect(after).toBeLessThanOrEqual(host);
  expect(ok).toBe(false);
  expect(inode(d)).not.toBe(ino); // renamed: the watchdog wakes and fences now
  expect(lf.holds()).toBe(false);
  // A lease counted after the resume (ending keepMs or more past the sample that found the suspend) takes the new offset.
  expect(lf.arm(4, local + 1500)).toBe(true);
  expect(readLeaseFile(join(d, LEASE_FILE))!.deadline!).toBeGreaterThan(host + 1500 - 15);
});

// Review "rlease" (F1, F2, F4 of its test file, brought here): the first two failed before their fixes.
test("a shorter lease whose write failed is written by the next arm (the file must not keep the longer deadline)", () => {
  const d = stateDir("f1");
  features(d, watchdogPid(d));
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog();
  const t = performance.now();
  lf.arm(3, t + 3000);
  const long = readLeaseFile(join(d, LEASE_FILE))!.deadline!;
  mkdirSync(join(d, "lease.tmp")); // the next rename fails (as ENOSPC, EIO, EMFILE would): writeFileSync EISDIR
  expect(() => lf.arm(3, t + 1000)).toThrow(); // the lease shrank (e.g. capped by a consensus migration)
  rmdirSync(join(d, "lease.tmp"));
  lf.arm(3, t + 1020); // the next heartbeat: the lease still ends ~2 s before the file's deadline
  expect(readLeaseFile(join(d, LEASE_FILE))!.deadline!).toBeLessThan(long - 1500); // before the fix: the file kept `long`
});

test("a features file naming the watchdog's pid with another start time (a reused pid) keeps extensions renamed", () => {
  const d = stateDir("reused");
  features(d, watchdogPid(d), "1");
  const lf = new LeaseFile(d, "/data", process.getuid!(), log);
  lf.ensureWatchdog();
  lf.arm(4, performance.now() + 1000);
  const first = inode(d);
  lf.arm(4, performance.now() + 1200); // same term, later: an extension, which must still be renamed
  expect(inode(d)).not.toBe(first);
});

test("an agent that restarts over a record torn by its predecessor (killed mid-copy) announces it expired, never disarmed", () => {
  const d = stateDir("torn-restart");
  const D = hostMonotonicMs() + 60_000;
  const a = encodeLease(lease(D));
  const b = encodeLease(lease(D + 100), a.length);
  writeFileSync(join(d, LEASE_FILE), Buffer.concat([b.subarray(0, 40), a.subarray(40)])); // the copy of b stopped after 40 bytes
  new LeaseFile(d, "/data", process.getuid!(), log).ensureWatchdog();
  const after = decodeLease(readFileSync(join(d, LEASE_FILE)));
  expect(after).not.toBe("torn"); // renamed in, whole
  expect((after as Lease).deadline).not.toBeNull(); // before the fix: {deadline: null, term: -1}, and the watchdog stopped guarding
  expect((after as Lease).deadline!).toBeLessThanOrEqual(hostMonotonicMs()); // its deadline is unknown: expired now, fenced at once
});

// Review findings (fencing watchdog, 2 and 3).
test("a pid file naming a live process that is no watchdog of this state dir (a pid reused after a reboot) counts as no watchdog", () => {
  const d = stateDir("reused-pid");
  const other = stateDir("other-cluster");
  expect(watchdogAlive(d)).toBe(true);
  writeFileSync(join(d, WATCHDOG_PID_FILE), `${watchdogPid(other)}\n`); // another cluster's watchdog: "watchdog" in its command line
  expect(watchdogAlive(d)).toBe(false); // before the fix: alive, and no watchdog was ever started for d
  expect(watchesDir(["/usr/bin/pgherd", "watchdog", "--state-dir", "/var/lib/pgherd"], "/var/lib/pgherd/")).toBe(true);
  expect(watchesDir(["/usr/bin/pgherd", "watchdog", "--state-dir=/var/lib/pgherd"], "/var/lib/pgherd")).toBe(true);
  expect(watchesDir(["pgpool: watchdog"], "/var/lib/pgherd")).toBe(false);
  expect(watchesDir(["pgherd", "watchdog", "--state-dir", "/srv/other"], "/var/lib/pgherd")).toBe(false);
  expect(watchesDir(["pgherd", "agent", "--state-dir", "/var/lib/pgherd"], "/var/lib/pgherd")).toBe(false);
});

test("an agent that starts over a lease file holding no lease (empty after a power loss) announces it expired and goes on", () => {
  const d = stateDir("empty-at-start");
  writeFileSync(join(d, LEASE_FILE), "");
  new LeaseFile(d, "/data", process.getuid!(), log).ensureWatchdog(); // before the fix: threw on every tick, so no watchdog was started
  const after = decodeLease(readFileSync(join(d, LEASE_FILE)));
  expect((after as Lease).deadline!).toBeLessThanOrEqual(hostMonotonicMs());
});

// Review finding (fencing watchdog, 5): the host clock (CLOCK_BOOTTIME) starts again at zero on each
// boot, so a record of an earlier, longer boot read as armed for days, and a server the distribution
// started at boot went unguarded until the agent's first round.
test("an agent that starts over a record written by an earlier boot (later on the host clock than now) announces it expired", () => {
  const d = stateDir("earlier-boot");
  const then = hostMonotonicMs() + 30 * 86_400_000; // the earlier boot ran 30 days longer than this one has
  writeFileSync(join(d, LEASE_FILE), JSON.stringify({ deadline: then + 1000, term: 9, dataDir: "/data", writtenAt: then, agentPid: 1 }));
  new LeaseFile(d, "/data", process.getuid!(), log).ensureWatchdog();
  const after = read(d);
  expect(after.term).toBe(-1);
  expect(after.deadline).toBeLessThanOrEqual(hostMonotonicMs()); // before the fix: then + 1000, days ahead
});
