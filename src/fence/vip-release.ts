// The virtual IP's part of fencing. The agent writes what the watchdog needs of [vip] (address with
// prefix, interface) to <state_dir>/vip before it first adds the address; the fencing watchdog
// (watchdog.ts) removes that address at the lease deadline, together with the stop of PostgreSQL,
// so a frozen or killed agent does not leave it on this host while the new leader adds it too.
// Kept free of zod and child_process imports: the watchdog's memory is what it loads. `ip` runs with
// the watchdog's ambient CAP_NET_ADMIN on purpose (not through caps.ts): removing the address needs it.
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostMonotonicMs } from "./clock.ts";
import { LEASE_FILE, readLeaseFile, type Lease } from "./lease-file.ts";

/** watchdog.ts names it too: it loads this module only where the file exists. */
export const VIP_FILE = "vip";
const TIMEOUT_MS = 3000;
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export type VipSpec = { address: string; interface: string };

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const CIDR4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}/([1-9]|[12]\\d|3[0-2])$`);
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** The spec in parsed JSON `v` (the same rules as config [vip]); throws an Error naming the bad key. */
export function parseVipSpec(v: unknown): VipSpec {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("expected an object");
  const o = v as Record<string, unknown>;
  if (typeof o.address !== "string" || !CIDR4.test(o.address)) throw new Error('address: expected an IPv4 address with its prefix length ("10.0.0.50/24")');
  if (typeof o.interface !== "string" || !IFNAME.test(o.interface)) throw new Error("interface: expected a network interface name (1-15 letters, digits, _ . -)");
  return { address: o.address, interface: o.interface };
}

/** The agent: record the address the watchdog removes on a lapsed lease (null: none configured, remove the record). */
export function writeVipSpec(stateDir: string, spec: VipSpec | null): void {
  const file = join(stateDir, VIP_FILE);
  if (spec === null) {
    try {
      unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    return;
  }
  parseVipSpec(spec);
  writeFileSync(`${file}.tmp`, JSON.stringify(spec), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

type Log = { info(msg: string): void; warn(msg: string): void; error(msg: string): void };

/**
 * The watchdog, at the deadline of `lease`: remove the recorded address unless the agent armed a
 * newer lease meanwhile. An address that is not there is not an error. Resolves with what happened.
 */
export async function releaseVip(stateDir: string, lease: Lease, log: Log): Promise<"removed" | "absent" | "none" | "kept" | "failed"> {
  let text: string;
  try {
    text = readFileSync(join(stateDir, VIP_FILE), "utf8");
  } catch {
    return "none"; // no [vip]
  }
  let spec: VipSpec;
  try {
    spec = parseVipSpec(JSON.parse(text));
  } catch (e) {
    log.error(`${join(stateDir, VIP_FILE)} is unreadable (${(e as Error).message}): no virtual IP removed`);
    return "failed";
  }
  // The agent renewed (or won again) since this deadline passed: the address is its again.
  let now: Lease | null = null;
  try {
    now = readLeaseFile(join(stateDir, LEASE_FILE));
  } catch (e) {
    log.warn(`${(e as Error).message}: taken as not renewed`); // the address goes with the fenced server
  }
  if (now?.deadline != null && now.deadline > hostMonotonicMs() && (now.term !== lease.term || now.deadline !== lease.deadline)) return "kept";
  const t0 = performance.now();
  const r = await ip(["addr", "del", spec.address, "dev", spec.interface]);
  const ms = Math.round(performance.now() - t0);
  if (r === null) {
    log.warn(`lease of term ${lease.term} expired: virtual IP ${spec.address} removed from ${spec.interface} (${ms} ms)`);
    return "removed";
  }
  if (/Cannot assign requested address|not found/i.test(r)) {
    log.info(`lease of term ${lease.term} expired: virtual IP ${spec.address} was not on ${spec.interface}`);
    return "absent";
  }
  const cap = /Operation not permitted/i.test(r) ? " (the watchdog lacks CAP_NET_ADMIN: it inherits the agent's ambient capabilities, docs/vip.md)" : "";
  log.error(`lease of term ${lease.term} expired: could not remove virtual IP ${spec.address} from ${spec.interface}: ${r}${cap}`);
  return "failed";
}

/** `ip …` under a deadline; null on success, else its first stderr line. */
async function ip(args: string[]): Promise<string | null> {
  try {
    const bin = Bun.which("ip", { PATH });
    if (!bin) return "no ip command on PATH (Debian: iproute2)"; // not "not found": that reads as an address already gone
    const p = Bun.spawn([bin, ...args], { env: { PATH, LANG: "C" }, stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: TIMEOUT_MS, killSignal: "SIGKILL" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    if (code === 0) return null;
    return (err.trim().split("\n")[0] || `exit ${code}${p.signalCode ? ` (${p.signalCode})` : ""}`).slice(0, 300);
  } catch (e) {
    return (e as Error).message;
  }
}
