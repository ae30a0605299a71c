// [vip]: the lease holder adds the virtual IP address to its interface and announces it
// (gratuitous ARP: `arping -U`, 3 frames, 3 more 5 s later); the address is removed the moment the
// lease is lost (before any other node can win one: docs/design.md's lease arithmetic) and when the
// agent starts or stops. While the lease is held, a failed add is tried again and the address is
// looked for every second (`ip addr show`), added again when something else removed it.
// Needs CAP_NET_ADMIN (ip addr) and CAP_NET_RAW (arping): the only programs the agent starts with its
// ambient capabilities (every other one goes through caps.ts). One operation at a time, in order.
// Before the first add, the address is recorded for the fencing watchdog (<state_dir>/vip), which
// removes it at the lease deadline when this agent is frozen or gone (src/fence/vip-release.ts).
import { execFile } from "node:child_process";
import type { Config } from "../config/schema.ts";
import { writeVipSpec } from "../fence/vip-release.ts";
import type { Logger } from "../log.ts";

const TIMEOUT_MS = 3000;
/** Gratuitous ARP frames per announcement (arping sends one a second: it runs ~ARP_COUNT s). */
const ARP_COUNT = 3;
const ARPING_TIMEOUT_MS = TIMEOUT_MS + ARP_COUNT * 1000;
/**
 * A removal that failed (not "not there") is tried again after 1, 2, 4, 5, 5 … s while no lease is
 * held here; an add that failed, the same while the lease is held.
 */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 5000;

/** Timers (tests make them short); now: the clock of hold()'s `until` (monotonic ms). */
export interface VipTiming { retryFirstMs: number; checkMs: number; announceAgainMs: number; now: () => number }
const TIMING: VipTiming = { retryFirstMs: RETRY_FIRST_MS, checkMs: 1000, announceAgainMs: 5000, now: () => performance.now() };

/** The wait before attempt `failed` + 1 after `failed` failures: first, 2×, 4× … at most RETRY_MAX_MS. */
export function retryDelayMs(failed: number, firstMs: number): number {
  return Math.min(RETRY_MAX_MS, firstMs * 2 ** Math.min(Math.max(failed - 1, 0), 16));
}

/** `ip -o addr show … to <ip>/32` lists the address (with its prefix length) on the interface. */
export function addressListed(out: string, address: string): boolean {
  return out.split("\n").some((l) => l.includes(` inet ${address} `));
}
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class VirtualIp {
  private held = false;
  private chain: Promise<void> = Promise.resolve();
  private recorded = false;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private failedRemovals = 0;
  private stopping = false;
  /** The held lease's end (VipTiming.now): nothing is added after it, fenced or not yet. */
  private until = 0;
  /** A new one at every hold and release: a step of an earlier hold does nothing. */
  private epoch = 0;
  private failedAdds = 0;
  /** While held: the next check of the address, or the next attempt after a failed add. */
  private watch: ReturnType<typeof setTimeout> | null = null;
  /** The announcement under way (arping killed at a release: nothing announced after it). */
  private announcing: AbortController | null = null;
  private readonly timing: VipTiming;

  constructor(
    private readonly cfg: Config["vip"], private readonly stateDir: string, private readonly log: Logger,
    private readonly run: Runner = runNetTool, timing: Partial<VipTiming> = {},
  ) {
    this.timing = { ...TIMING, ...timing };
  }

  /** The agent stops: the address is removed once more, not retried after. */
  stop(reason: string): Promise<void> {
    this.stopping = true;
    this.stopRetrying();
    return this.release(reason);
  }

  /**
   * The lease is held until `until` (monotonic ms; called on every renewal): add the address and
   * announce it, then keep it there while held (watch).
   */
  hold(until = Number.POSITIVE_INFINITY): void {
    this.until = until;
    if (this.held || this.stopping) return;
    this.held = true;
    const epoch = ++this.epoch;
    this.stopRetrying();
    this.record();
    this.chain = this.chain.then(() => this.add(epoch, false));
  }

  /** The lease is gone (or the agent starts or stops): remove the address; resolves once it is gone. */
  release(reason: string): Promise<void> {
    const was = this.held;
    this.held = false;
    this.epoch++;
    this.stopWatching();
    this.chain = this.chain.then(() => this.remove(reason, was));
    return this.chain;
  }

  /**
   * release(), waited for at most `ms` (a fence: the election goes on after the fence budget, and
   * the removal, behind an add under way or a slow `ip`, finishes on its own, logged either way, and
   * one that fails is tried again: removalFailed).
   */
  releaseWithin(reason: string, ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn(`vip: ${this.cfg.address} not removed within ${ms} ms (${reason}): the removal goes on`);
        resolve();
      }, ms);
    });
    return Promise.race([this.release(reason).finally(() => clearTimeout(timer)), late]);
  }

  /** Written before the address is first added, so the watchdog knows every address this agent may hold. */
  private record(): void {
    if (this.recorded) return;
    try {
      writeVipSpec(this.stateDir, { address: this.cfg.address, interface: this.cfg.interface });
      this.recorded = true;
    } catch (e) {
      this.log.error(`vip: cannot record ${this.cfg.address} for the fencing watchdog (${(e as Error).message}): a frozen agent would leave the address on this host`);
    }
  }

  /** Still this hold's, and its lease not over (the fence may not have run yet). */
  private mayAdd(epoch: number): boolean {
    return this.held && epoch === this.epoch && this.timing.now() < this.until;
  }

  /** again: the address was found missing while held (a check, not a new hold). */
  private async add(epoch: number, again: boolean): Promise<void> {
    // Queued behind a slow ip while the lease came and went: it is not this node's any more (the
    // removal queued after it would follow, but the new holder may have added it by then; review).
    if (!this.mayAdd(epoch)) return;
    const { address, interface: dev } = this.cfg;
    const r = await this.run("ip", ["addr", "add", address, "dev", dev]);
    const existed = r.error !== null && /File exists/.test(r.error);
    if (r.error && !existed) {
      const cause = `${r.error}${missingCap(r.error, "CAP_NET_ADMIN")}`;
      if (epoch !== this.epoch) return this.log.error(`vip: could not add ${address} to ${dev}: ${cause}`);
      const delay = retryDelayMs(++this.failedAdds, this.timing.retryFirstMs);
      this.log.error(`vip: could not add ${address} to ${dev} (attempt ${this.failedAdds}; again in ${delay} ms while the lease is held): ${cause}`);
      return this.watchIn(delay, epoch);
    }
    this.failedAdds = 0;
    if (again && existed) return this.watchIn(this.timing.checkMs, epoch); // back meanwhile (or the check failed)
    this.log[again ? "warn" : "info"](again ? `vip: ${address} was gone from ${dev} (removed by something else while this node holds the lease): added again` : `vip: ${address} added to ${dev} (this node holds the lease)`);
    if (epoch !== this.epoch) return; // released meanwhile: its removal is next, no announcement first
    this.announce(epoch);
    this.watchIn(this.timing.checkMs, epoch);
  }

  private watchIn(ms: number, epoch: number): void {
    if (this.watch) clearTimeout(this.watch);
    this.watch = setTimeout(() => void this.check(epoch), ms);
    this.watch.unref?.();
  }

  /** While held: a failed add is made again; else the address is looked for, added again when gone. */
  private async check(epoch: number): Promise<void> {
    this.watch = null;
    if (!this.held || epoch !== this.epoch) return;
    if (this.timing.now() >= this.until) return this.watchIn(this.timing.checkMs, epoch); // its fence is due; a renewal moves until
    if (this.failedAdds === 0) {
      const { address, interface: dev } = this.cfg;
      const r = await this.run("ip", ["-o", "-4", "addr", "show", "dev", dev, "to", `${address.split("/")[0]}/32`]);
      if (!this.held || epoch !== this.epoch) return;
      if (!r.error && addressListed(r.out ?? "", address)) return this.watchIn(this.timing.checkMs, epoch);
    }
    this.chain = this.chain.then(() => this.add(epoch, this.failedAdds === 0));
  }

  /**
   * Gratuitous ARP off the lease path (a release does not wait for it: it kills it): ARP_COUNT
   * frames, ARP_COUNT more announceAgainMs later, a failed arping tried once more.
   */
  private announce(epoch: number): void {
    this.announcing?.abort();
    const ac = new AbortController();
    this.announcing = ac;
    const { address, interface: dev } = this.cfg;
    const live = () => !ac.signal.aborted && this.held && epoch === this.epoch;
    void (async () => {
      for (const round of [0, 1]) {
        if (round === 1) await pause(this.timing.announceAgainMs, ac.signal);
        for (let attempt = 1; attempt <= 2 && live(); attempt++) {
          const a = await this.run("arping", ["-U", "-c", String(ARP_COUNT), "-I", dev, address.split("/")[0]!], ac.signal);
          if (!a.error || !live()) break;
          this.log.warn(`vip: gratuitous ARP for ${address} on ${dev} failed${attempt === 1 ? " (tried once more)" : ""}: ${a.error}${missingCap(a.error, "CAP_NET_RAW")}`);
          if (attempt === 1) await pause(this.timing.retryFirstMs, ac.signal);
        }
      }
      if (this.announcing === ac) this.announcing = null;
    })();
  }

  private stopWatching(): void {
    if (this.watch) clearTimeout(this.watch);
    this.watch = null;
    this.failedAdds = 0;
    this.announcing?.abort();
    this.announcing = null;
  }

  private async remove(reason: string, wasHeld: boolean): Promise<void> {
    if (this.held) return; // held again meanwhile (a retry queued before the new lease): the address is ours
    const { address, interface: dev } = this.cfg;
    const r = await this.run("ip", ["addr", "del", address, "dev", dev]);
    if (r.error && !/Cannot assign requested address|not found/i.test(r.error)) return this.removalFailed(reason, r.error);
    this.stopRetrying();
    if (!r.error) this.log.warn(`vip: ${address} removed from ${dev}: ${reason}`);
    else if (wasHeld) this.log.info(`vip: ${address} was not on ${dev} any more (${reason})`);
  }

  /**
   * The address may still be on this host while another node holds the lease: tried again (1, 2, 4,
   * then 5 s apart) until it is gone or a lease is held here again. The watchdog removes it only at a
   * fence of its own, not after one this agent made.
   */
  private removalFailed(reason: string, error: string): void {
    const { address, interface: dev } = this.cfg;
    if (this.held || this.stopping) {
      this.log.error(`vip: could not remove ${address} from ${dev}: ${error}${missingCap(error, "CAP_NET_ADMIN")}${this.held ? " (this node holds the lease again)" : " (the agent stops)"}`);
      return;
    }
    const delay = retryDelayMs(++this.failedRemovals, this.timing.retryFirstMs);
    this.log.error(`vip: could not remove ${address} from ${dev} (attempt ${this.failedRemovals}; again in ${delay} ms): ${error}${missingCap(error, "CAP_NET_ADMIN")}`);
    if (this.retry) clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      this.retry = null;
      if (!this.held) this.chain = this.chain.then(() => this.remove(reason, true));
    }, delay);
    this.retry.unref?.();
  }

  private stopRetrying(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.failedRemovals = 0;
  }
}

/** The capability to grant when a tool was refused for the lack of one (docs/vip.md), else "". */
export function missingCap(error: string, cap: "CAP_NET_ADMIN" | "CAP_NET_RAW"): string {
  if (/Address family not supported/i.test(error)) return " (arping needs a packet socket, AF_PACKET: add RestrictAddressFamilies=AF_PACKET to the unit's drop-in; docs/vip.md)";
  return /Operation not permitted|permission denied|must run as root/i.test(error)
    ? ` (the agent lacks ${cap}: grant it, e.g. AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW in its systemd unit; docs/vip.md)`
    : "";
}

/** Runs `ip` or `arping` (killed when `signal` aborts): the error's first line, or null; its output. */
export type Runner = (cmd: string, args: string[], signal?: AbortSignal) => Promise<{ error: string | null; out?: string }>;

function runNetTool(cmd: string, args: string[], signal?: AbortSignal): Promise<{ error: string | null; out: string }> {
  return new Promise((resolve) => {
    const timeout = cmd === "arping" ? ARPING_TIMEOUT_MS : TIMEOUT_MS;
    execFile(cmd, args, { timeout, killSignal: "SIGKILL", env: { PATH, LANG: "C" }, ...(signal ? { signal } : {}) }, (err, out, stderr) => {
      resolve({ error: err ? (stderr || err.message).trim().split("\n")[0]!.slice(0, 300) : null, out: String(out) });
    });
  });
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    t.unref?.();
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/**
 * null without [vip] address, and on a witness, which never holds the lease (then a record left by
 * an earlier configuration is removed). Review: a witness sharing the database nodes' [vip] removed
 * the address at its start and, without CAP_NET_ADMIN, which it does not need, logged an error every
 * 5 s for ever (and sent each to Sentry), advising to grant it the capability.
 */
export function createVip(cfg: Pick<Config, "vip" | "state_dir" | "role">, log: Logger): VirtualIp | null {
  if (cfg.vip.address && cfg.role === "witness") log.info(`vip: ${cfg.vip.address} is not used on a witness (it never holds the leader lease)`);
  else if (cfg.vip.address) return new VirtualIp(cfg.vip, cfg.state_dir, log.withTag("vip"));
  try {
    writeVipSpec(cfg.state_dir, null);
  } catch (e) {
    log.warn(`vip: cannot remove the fencing watchdog's record ${cfg.state_dir}/vip: ${(e as Error).message}`);
  }
  return null;
}
