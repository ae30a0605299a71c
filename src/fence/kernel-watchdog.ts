// The kernel watchdog (/dev/watchdog), the third line of fencing: the fencing watchdog process
// keeps it alive only while this host's lease is valid. If that process freezes or dies (the
// agent too, or the whole user space), nobody writes to the device and the kernel resets the
// host, at the latest fence_ms after the lease end: the same budget the user-space fence has.
// Linux API (Documentation/watchdog/watchdog-api.rst): any write is a keepalive; the ioctl
// WDIOC_SETTIMEOUT sets the timeout in whole seconds and returns the one the driver took;
// writing 'V' before close disarms it (a close without it, e.g. a crash, leaves it running), unless
// the driver was built or loaded with nowayout: such a device is refused. That last promise holds
// only for a driver that reports WDIOF_MAGICCLOSE (WDIOC_GETSUPPORT): without it the kernel stops
// the timer on any close (watchdog_dev.c, watchdog_release), a crash's included, so the host would
// not be reset; and one that reports WDIOF_ALARMONLY raises an alarm instead of a reset. Both are
// refused as well.
import { closeSync, constants, fstatSync, openSync, readFileSync, realpathSync, writeSync } from "node:fs";
import { basename } from "node:path";

const WDIOC_SETTIMEOUT = 0xc0045706n; // _IOWR('W', 6, int)
/** _IOR('W', 0, struct watchdog_info): { u32 options; u32 firmware_version; u8 identity[32] }, 40 bytes. */
const WDIOC_GETSUPPORT = 0x80285700n;
/** watchdog_info.options bits (include/uapi/linux/watchdog.h). */
export const WDIOF_MAGICCLOSE = 0x0100;
export const WDIOF_ALARMONLY = 0x0400;

/**
 * Whether a keepalive at `now` is allowed: the kernel's reset moment after it (now + timeout)
 * must not fall later than the lease end plus the fence budget, so a host whose fencing froze
 * is reset before any other node can be elected (docs/design.md, fencing).
 */
export function mayPet(now: number, deadline: number, timeoutS: number, fenceMs: number): boolean {
  return now + timeoutS * 1000 <= deadline + fenceMs;
}

/** ioctl(2) on fd with `arg` as its argument's memory; a test passes its own (KernelWatchdog's constructor). */
export type Ioctl = (fd: number, req: bigint, arg: Int32Array) => { ret: number; errno: number };
let ioctl: Ioctl | null = null;

/** libc's ioctl through bun:ffi, loaded on first use (only hosts that configure a watchdog pay for it). */
async function loadIoctl(): Promise<Ioctl> {
  if (ioctl) return ioctl;
  const ffi = await import("bun:ffi");
  const libc = ffi.dlopen("libc.so.6", {
    ioctl: { args: [ffi.FFIType.i32, ffi.FFIType.u64, ffi.FFIType.ptr], returns: ffi.FFIType.i32 },
    __errno_location: { args: [], returns: ffi.FFIType.ptr },
  });
  ioctl = (fd, req, arg) => {
    const ret = libc.symbols.ioctl(fd, req, ffi.ptr(arg)) as number;
    const errnoPtr = libc.symbols.__errno_location();
    return { ret, errno: ret < 0 && errnoPtr ? ffi.read.i32(errnoPtr, 0) : 0 };
  };
  return ioctl;
}

/** One open watchdog device. open() returns an error message instead of throwing. */
export class KernelWatchdog {
  private fd: number | null = null;
  private device = "";
  /** The timeout the driver took, in seconds. */
  timeoutS = 0;

  /**
   * `sysfs`: where the watchdog class lives; `ioctlOf`: how ioctl(2) is called (libc through
   * bun:ffi). A test points them at a directory and a driver of its own.
   */
  constructor(private readonly sysfs = "/sys/class/watchdog", private readonly ioctlOf: () => Promise<Ioctl> = loadIoctl) {}

  get active(): boolean {
    return this.fd !== null;
  }

  async open(device: string, timeoutS: number): Promise<string | null> {
    if (this.fd !== null && this.device === device && this.timeoutS <= timeoutS) return null;
    this.disarm();
    if (timeoutS < 1) return `no whole-second timeout fits lease_ms + fence_ms (need at least 1 s)`;
    // Before the open, which starts the timer: a device that cannot be stopped again ("nowayout")
    // would reset the host after every orderly disarm (switchover, step-down, shutdown).
    const nowayout = nowayoutOf(device, this.sysfs);
    if (nowayout !== "0") return nowayout === "1" ? `${device} has nowayout set: pgherd could never stop it again` : `cannot tell whether ${device} has nowayout set (${nowayout})`;
    let ioctlFn: Ioctl;
    try {
      ioctlFn = await this.ioctlOf();
    } catch (e) {
      return `cannot call ioctl through bun:ffi: ${(e as Error).message}`;
    }
    let fd: number;
    try {
      // O_WRONLY without O_CREAT: a missing device must not become a regular file in /dev.
      fd = openSync(device, constants.O_WRONLY);
    } catch (e) {
      return `cannot open ${device}: ${(e as Error).message}`;
    }
    // Opening a real watchdog starts it: from here on every way out disarms it ('V'), not just closes.
    try {
      if (!fstatSync(fd).isCharacterDevice()) {
        magicClose(fd);
        return `${device} is not a character device`;
      }
      // Before its timeout is touched: a device that a crash of this process would stop, or that
      // never resets, is no fence.
      const incapable = capabilityProblem(device, fd, ioctlFn);
      if (incapable) {
        magicClose(fd);
        return incapable;
      }
      const arg = new Int32Array([timeoutS]);
      const r = ioctlFn(fd, WDIOC_SETTIMEOUT, arg);
      if (r.ret < 0) {
        magicClose(fd);
        return `${device} refused WDIOC_SETTIMEOUT ${timeoutS} s (errno ${r.errno}): not a watchdog, or its driver cannot take that timeout`;
      }
      if (arg[0]! > timeoutS || arg[0]! < 1) {
        magicClose(fd);
        return `${device} took a timeout of ${arg[0]} s instead of ${timeoutS} s: too long to reset the host before another node may lead`;
      }
      this.fd = fd;
      this.device = device;
      this.timeoutS = arg[0]!;
      return null;
    } catch (e) {
      if (this.fd !== fd) magicClose(fd);
      return `${device}: ${(e as Error).message}`;
    }
  }

  /** Keepalive: the kernel resets the host timeoutS after the last one. */
  pet(): void {
    if (this.fd !== null) writeSync(this.fd, "\0");
  }

  /** Stop it (magic close): used when nothing needs fencing any more. */
  disarm(): void {
    if (this.fd === null) return;
    magicClose(this.fd);
    this.fd = null;
    this.timeoutS = 0;
  }
}

/** Why the driver's WDIOC_GETSUPPORT answer makes the device no fence, or null when it is one. */
function capabilityProblem(device: string, fd: number, ioctlFn: Ioctl): string | null {
  const info = new Int32Array(10); // struct watchdog_info
  const r = ioctlFn(fd, WDIOC_GETSUPPORT, info);
  if (r.ret < 0) return `${device} refused WDIOC_GETSUPPORT (errno ${r.errno}): not a watchdog, or its driver cannot say whether a crash of this process would stop it`;
  const options = info[0]! >>> 0;
  const bytes = new Uint8Array(info.buffer, 8, 32);
  const end = bytes.indexOf(0);
  const identity = new TextDecoder().decode(bytes.subarray(0, end < 0 ? 32 : end)).trim();
  const name = `${device}${identity ? ` (${identity})` : ""}`;
  const hex = `options 0x${options.toString(16)}`;
  if (options & WDIOF_ALARMONLY) return `${name} has WDIOF_ALARMONLY set (${hex}): it raises an alarm instead of resetting the host`;
  if (!(options & WDIOF_MAGICCLOSE)) return `${name} lacks WDIOF_MAGICCLOSE (${hex}): the kernel stops it on any close, so a crash of the fencing watchdog would stop it instead of resetting the host`;
  return null;
}

function magicClose(fd: number): void {
  try {
    writeSync(fd, "V");
  } catch {
    // nothing more can be done for it; close anyway
  }
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/**
 * "0", "1", or why it is unknown: /sys/class/watchdog/<name>/nowayout of the device (the legacy
 * /dev/watchdog is watchdog0). A device without that attribute is not a watchdog we may use.
 */
export function nowayoutOf(device: string, sysfs = "/sys/class/watchdog"): string {
  const name = basename(realpathOr(device));
  const dev = name === "watchdog" ? "watchdog0" : name;
  try {
    return readFileSync(`${sysfs}/${dev}/nowayout`, "utf8").trim();
  } catch (e) {
    return `no ${sysfs}/${dev}/nowayout: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  }
}

function realpathOr(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}
