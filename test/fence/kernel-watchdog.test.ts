// The kernel watchdog's side of fencing. This machine has no /dev/watchdog, so the device
// protocol is checked where it can be: the keepalive rule over a simulated lease (pure), and the
// real open/ioctl path (bun:ffi) against devices that must be refused, and the driver's answers
// (capabilities, timeout) through a driver of the test's own behind /dev/null. The fencing
// process's use of it is in watchdog.test.ts.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelTimeoutS } from "../../src/config/margins.ts";
import { KernelWatchdog, mayPet, nowayoutOf, WDIOF_ALARMONLY, WDIOF_MAGICCLOSE, type Ioctl } from "../../src/fence/kernel-watchdog.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-kwd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const timers = { lease_ms: 1500, fence_ms: 500, heartbeat_ms: 200 };

test("the default timers give a 1 s kernel timeout; a longer lease a longer one", () => {
  expect(kernelTimeoutS(timers)).toBe(1);
  expect(kernelTimeoutS({ lease_ms: 5000, fence_ms: 1000, heartbeat_ms: 500 })).toBe(5);
  expect(kernelTimeoutS({ lease_ms: 1000, fence_ms: 300, heartbeat_ms: 200 })).toBe(0);
});

/**
 * A leader extends its lease to (heartbeat send time + lease_ms) when the heartbeat's acks come
 * back rttMs later; the fencing process polls every 20 ms and pets when mayPet allows it.
 * Returns the longest time the kernel went without a keepalive while the lease was extended,
 * and the kernel's reset moment after the extensions stop, relative to the last deadline.
 */
function simulate(t: typeof timers, rttMs: number, extendUntil: number) {
  const timeoutS = kernelTimeoutS(t);
  let deadline = 0;
  let lastPet = 0;
  let longestGap = 0;
  for (let now = 0; now < extendUntil + t.lease_ms + 5000; now += 20) {
    const sent = now - rttMs - ((now - rttMs) % t.heartbeat_ms); // newest acked heartbeat's send time
    if (now <= extendUntil && sent >= 0) deadline = Math.max(deadline, sent + t.lease_ms);
    if (deadline > 0 && now > deadline) break; // the user-space fence fires here; the kernel is left alone
    if (deadline > 0 && mayPet(now, deadline, timeoutS, t.fence_ms)) {
      if (lastPet > 0 && now <= extendUntil) longestGap = Math.max(longestGap, now - lastPet);
      lastPet = now;
    }
  }
  return { longestGap, resetAfterDeadline: lastPet + timeoutS * 1000 - deadline, timeoutS };
}

test("keepalives flow while the lease is extended; after it stops the kernel resets within the fence budget, not before the lease end", () => {
  for (const rtt of [1, 50, 150]) {
    for (const t of [timers, { lease_ms: 5000, fence_ms: 1000, heartbeat_ms: 500 }, { lease_ms: 3000, fence_ms: 200, heartbeat_ms: 400 }]) {
      const r = simulate(t, rtt, 10_000);
      expect(r.longestGap).toBeLessThanOrEqual(t.heartbeat_ms + 20); // never near the kernel timeout
      expect(r.longestGap).toBeLessThan(r.timeoutS * 1000);
      expect(r.resetAfterDeadline).toBeGreaterThanOrEqual(0);
      expect(r.resetAfterDeadline).toBeLessThanOrEqual(t.fence_ms);
    }
  }
});

test("mayPet is exact at its boundary", () => {
  expect(mayPet(1000, 1500, 1, 500)).toBe(true); // reset at 2000 = deadline + fence
  expect(mayPet(1001, 1500, 1, 500)).toBe(false);
});

test("devices that are not a watchdog are refused with the reason, and nothing is created", async () => {
  // No watchdog class here: a sysfs of the test's own says nowayout = 0 for the names used below.
  const sysfs = join(dir, "sysfs");
  for (const name of ["watchdog0", "plain", "null"]) {
    mkdirSync(join(sysfs, name), { recursive: true });
    writeFileSync(join(sysfs, name, "nowayout"), "0\n");
  }
  const kw = new KernelWatchdog(sysfs);
  const missing = join(dir, "watchdog");
  expect(await kw.open(missing, 1)).toMatch(new RegExp(`^cannot open ${missing}: .*ENOENT`));
  expect(existsSync(missing)).toBe(false); // O_CREAT never used
  const plain = join(dir, "plain");
  writeFileSync(plain, "");
  expect(await kw.open(plain, 1)).toBe(`${plain} is not a character device`);
  // A character device that rejects the watchdog ioctl: the real FFI call into libc's ioctl.
  expect(await kw.open("/dev/null", 1)).toBe("/dev/null refused WDIOC_GETSUPPORT (errno 25): not a watchdog, or its driver cannot say whether a crash of this process would stop it");
  expect(await kw.open("/dev/null", 0)).toMatch(/no whole-second timeout fits/);
  expect(kw.active).toBe(false);
  kw.pet(); // a no-op when nothing is open
  kw.disarm();
});

test("a device with nowayout set, or without the attribute, is refused before it is opened", async () => {
  const sysfs = join(dir, "sysfs-nowayout");
  mkdirSync(join(sysfs, "null"), { recursive: true });
  writeFileSync(join(sysfs, "null", "nowayout"), "1\n");
  expect(await new KernelWatchdog(sysfs).open("/dev/null", 1)).toBe("/dev/null has nowayout set: pgherd could never stop it again");
  expect(await new KernelWatchdog(join(dir, "no-sysfs")).open("/dev/null", 1)).toMatch(/^cannot tell whether \/dev\/null has nowayout set \(no .*no-sysfs\/null\/nowayout: ENOENT\)$/);
  // The legacy name is the first watchdog of the class.
  expect(nowayoutOf("/dev/watchdog", join(dir, "sysfs"))).toBe("0");
});

const WDIOF_SETTIMEOUT = 0x0080;
const WDIOF_KEEPALIVEPING = 0x8000;

/**
 * A watchdog driver's answers to the two ioctls pgherd makes (the request numbers of
 * include/uapi/linux/watchdog.h), for a character device that is not one (/dev/null): `options`
 * and `identity` for WDIOC_GETSUPPORT, `took` as the timeout WDIOC_SETTIMEOUT takes (null: refused).
 */
function driver(options: number, identity: string, took: number | null = 1) {
  const calls: string[] = [];
  const ioctl: Ioctl = (_fd, req, arg) => {
    if (req === 0x80285700n) {
      calls.push("GETSUPPORT");
      expect(arg.byteLength).toBe(40); // struct watchdog_info
      arg[0] = options;
      arg[1] = 0;
      new Uint8Array(arg.buffer, 8, 32).set(new TextEncoder().encode(identity));
      return { ret: 0, errno: 0 };
    }
    if (req === 0xc0045706n) {
      calls.push(`SETTIMEOUT ${arg[0]}`);
      if (took === null) return { ret: -1, errno: 22 };
      arg[0] = took;
      return { ret: 0, errno: 0 };
    }
    return { ret: -1, errno: 25 };
  };
  return { calls, open: (timeoutS: number) => {
    const sysfs = join(dir, "sysfs-driver");
    mkdirSync(join(sysfs, "null"), { recursive: true });
    writeFileSync(join(sysfs, "null", "nowayout"), "0\n");
    const kw = new KernelWatchdog(sysfs, async () => ioctl);
    return kw.open("/dev/null", timeoutS).then((problem) => ({ problem, kw }));
  } };
}

// Review finding (kernel watchdog capabilities): only nowayout was checked. Without
// WDIOF_MAGICCLOSE the kernel stops the timer on any close (watchdog_dev.c, watchdog_release), so a
// watchdog process that died (OOM, SIGKILL) stopped it and the host was never reset; a device with
// WDIOF_ALARMONLY never resets at all. Both were opened and used as a fence.
test("a device whose close without 'V' would stop it (no WDIOF_MAGICCLOSE), or that only raises an alarm, is refused before its timeout is set", async () => {
  const noMagic = driver(WDIOF_SETTIMEOUT | WDIOF_KEEPALIVEPING, "Some Timer");
  const r1 = await noMagic.open(1);
  expect(r1.problem).toBe("/dev/null (Some Timer) lacks WDIOF_MAGICCLOSE (options 0x8080): the kernel stops it on any close, so a crash of the fencing watchdog would stop it instead of resetting the host");
  expect(r1.kw.active).toBe(false);
  expect(noMagic.calls).toEqual(["GETSUPPORT"]);

  const alarm = driver(WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_ALARMONLY, "");
  const r2 = await alarm.open(1);
  expect(r2.problem).toBe("/dev/null has WDIOF_ALARMONLY set (options 0x580): it raises an alarm instead of resetting the host");
  expect(r2.kw.active).toBe(false);
  expect(alarm.calls).toEqual(["GETSUPPORT"]);
});

test("a device with WDIOF_MAGICCLOSE is armed with the timeout it took; a timeout refused or longer than asked is not", async () => {
  const caps = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING;
  const good = driver(caps, "i6300ESB timer");
  const { problem, kw } = await good.open(2);
  expect(problem).toBeNull();
  expect(good.calls).toEqual(["GETSUPPORT", "SETTIMEOUT 2"]);
  expect(kw.active).toBe(true);
  expect(kw.timeoutS).toBe(1); // the driver took 1 s: shorter is fine
  kw.pet();
  kw.disarm();
  expect(kw.active).toBe(false);

  expect((await driver(caps, "x", null).open(1)).problem).toBe("/dev/null refused WDIOC_SETTIMEOUT 1 s (errno 22): not a watchdog, or its driver cannot take that timeout");
  expect((await driver(caps, "x", 5).open(1)).problem).toBe("/dev/null took a timeout of 5 s instead of 1 s: too long to reset the host before another node may lead");
});
