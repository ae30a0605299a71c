// [vip]: the lease holder adds the virtual IP address to its interface and announces it
// (gratuitous ARP: `arping -U`); the address is removed the moment the lease is lost (before any
// other node can win one: docs/design.md's lease arithmetic) and when the agent starts or stops.
// Needs CAP_NET_ADMIN (ip addr) and CAP_NET_RAW (arping): the only programs the agent starts with its
// ambient capabilities (every other one goes through caps.ts). One operation at a time, in order.
// Before the first add, the address is recorded for the fencing watchdog (<state_dir>/vip), which
// removes it at the lease deadline when this agent is frozen or gone (src/fence/vip-release.ts).
import { execFile } from "node:child_process";
import type { Config } from "../config/schema.ts";
import { writeVipSpec } from "../fence/vip-release.ts";
import type { Logger } from "../log.ts";

const TIMEOUT_MS = 3000;
/** A removal that failed (not "not there") is tried again after 1, 2, 4, 5, 5 … s while no lease is held here. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 5000;
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class VirtualIp {
  private held = false;
  private chain: Promise<void> = Promise.resolve();
  private recorded = false;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private failedRemovals = 0;
  private stopping = false;

  constructor(
    private readonly cfg: Config["vip"], private readonly stateDir: string, private readonly log: Logger,
    private readonly run: Runner = runNetTool, private readonly retryFirstMs = RETRY_FIRST_MS,
  ) {}

  /** The agent stops: the address is removed once more, not retried after. */
  stop(reason: string): Promise<void> {
    this.stopping = true;
    this.stopRetrying();
    return this.release(reason);
  }

  /** The lease is held (called on every renewal): add the address once and announce it. */
  hold(): void {
    if (this.held || this.stopping) return;
    this.held = true;
    this.stopRetrying();
    this.record();
    this.chain = this.chain.then(() => this.add());
  }

  /** The lease is gone (or the agent starts or stops): remove the address; resolves once it is gone. */
  release(reason: string): Promise<void> {
    const was = this.held;
    this.held = false;
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

  private async add(): Promise<void> {
    // Queued behind a slow ip while the lease came and went: it is not this node's any more (the
    // removal queued after it would follow, but the new holder may have added it by then; review).
    if (!this.held) return;
    const { address, interface: dev } = this.cfg;
    const r = await this.run("ip", ["addr", "add", address, "dev", dev]);
    if (r.error && !/File exists/.test(r.error)) {
      this.log.error(`vip: could not add ${address} to ${dev}: ${r.error}${missingCap(r.error, "CAP_NET_ADMIN")}`);
      return;
    }
    this.log.info(`vip: ${address} added to ${dev} (this node holds the lease)`);
    if (!this.held) return; // released meanwhile: its removal is next, no announcement first
    const a = await this.run("arping", ["-U", "-c", "1", "-I", dev, address.split("/")[0]!]);
    if (a.error) this.log.warn(`vip: gratuitous ARP for ${address} on ${dev} failed: ${a.error}${missingCap(a.error, "CAP_NET_RAW")}`);
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
    const delay = Math.min(RETRY_MAX_MS, this.retryFirstMs * 2 ** Math.min(this.failedRemovals, 16));
    this.failedRemovals++;
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

/** Runs `ip` or `arping`: the error's first line, or null. */
export type Runner = (cmd: string, args: string[]) => Promise<{ error: string | null }>;

function runNetTool(cmd: string, args: string[]): Promise<{ error: string | null }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: TIMEOUT_MS, killSignal: "SIGKILL", env: { PATH, LANG: "C" } }, (err, _out, stderr) => {
      resolve({ error: err ? (stderr || err.message).trim().split("\n")[0]!.slice(0, 300) : null });
    });
  });
}

/** null without [vip] address (then a record left by an earlier configuration is removed). */
export function createVip(cfg: Config, log: Logger): VirtualIp | null {
  if (cfg.vip.address) return new VirtualIp(cfg.vip, cfg.state_dir, log.withTag("vip"));
  try {
    writeVipSpec(cfg.state_dir, null);
  } catch (e) {
    log.warn(`vip: cannot remove the fencing watchdog's record ${cfg.state_dir}/vip: ${(e as Error).message}`);
  }
  return null;
}
