// What certificate a node needs and when to replace it: pure, time passed in (no node:*, no Date.now).

const DAY = 86_400_000;
/** A node certificate is valid this long... */
export const NODE_CERT_LIFETIME_MS = 90 * DAY;
/** ...and is replaced when less than this remains (PostgreSQL reloads it: no restart). */
export const RENEW_BEFORE_MS = 30 * DAY;
/** Validity starts this long before issuance: a peer whose clock is behind still accepts a fresh certificate. */
export const BACKDATE_MS = 3_600_000;
/** The cluster CA's lifetime. */
export const CA_LIFETIME_MS = 20 * 365 * DAY;

/** A subjectAltName entry: an IP address (canonical form, see canonicalIp) or a DNS name (lower case). */
export type San = { ip: string } | { dns: string };

/** What the shell read from the certificate on disk. */
export interface CertFacts {
  notBeforeMs: number;
  notAfterMs: number;
  sans: ReadonlyArray<San>;
  /** Signed by the cluster's current CA. */
  signedByCa: boolean;
  /** server.key is the private key of this certificate. */
  keyMatches: boolean;
}

export type RenewDecision = { renew: false } | { renew: true; reason: string };

/** IPv4 dotted quad, or IPv6 as eight lower-case hex groups without leading zeros ("0:0:0:0:0:0:0:1"); null if not an IP. */
export function canonicalIp(s: string): string | null {
  const b = ipBytes(s);
  if (!b) return null;
  if (b.length === 4) return b.join(".");
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return g.join(":");
}

/** The 4 or 16 bytes of an IP address literal; null when `s` is not one (zone ids are refused). */
export function ipBytes(s: string): number[] | null {
  const v4 = (t: string): number[] | null => {
    const p = t.split(".");
    if (p.length !== 4 || !p.every((x) => /^(0|[1-9]\d{0,2})$/.test(x) && Number(x) <= 255)) return null;
    return p.map(Number);
  };
  if (!s.includes(":")) return v4(s);
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    const parts = h.split(":");
    for (const [i, x] of parts.entries()) {
      if (i === parts.length - 1 && x.includes(".")) {
        const q = v4(x);
        if (!q) return null;
        out.push((q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(x)) out.push(parseInt(x, 16));
      else return null;
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  return [...head, ...Array<number>(fill).fill(0), ...tail].flatMap((g) => [g >> 8, g & 0xff]);
}

const WILDCARDS = new Set(["", "*", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"]);
const DNS = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * The subjectAltNames a node's certificate carries: every address a peer may dial its PostgreSQL
 * at (interface addresses, listen_addresses, the advertised host). Wildcards, link-local IPv6 and
 * anything that is neither an IP nor a DNS name are left out; sorted, without duplicates.
 */
export function sanList(hosts: ReadonlyArray<string>): San[] {
  const ips = new Set<string>();
  const names = new Set<string>();
  for (const raw of hosts) {
    const h = raw.trim().replace(/^\[|\]$/g, "");
    if (WILDCARDS.has(h)) continue;
    const ip = canonicalIp(h);
    if (ip) {
      if (!WILDCARDS.has(ip) && !/^fe[89ab][0-9a-f]:/.test(ip)) ips.add(ip);
    } else if (DNS.test(h.toLowerCase())) names.add(h.toLowerCase());
  }
  return [...[...ips].sort().map((ip) => ({ ip })), ...[...names].sort().map((dns) => ({ dns }))];
}

export function sanText(s: San): string {
  return "ip" in s ? `IP:${s.ip}` : `DNS:${s.dns}`;
}

/** Whether the certificate on disk must be replaced now, and why. */
export function renewal(now: number, cert: CertFacts | null, want: ReadonlyArray<San>): RenewDecision {
  if (!cert) return { renew: true, reason: "no certificate yet" };
  if (!cert.signedByCa) return { renew: true, reason: "not signed by the cluster CA" };
  if (!cert.keyMatches) return { renew: true, reason: "the key does not match the certificate" };
  const have = new Set(cert.sans.map(sanText));
  const missing = want.map(sanText).filter((s) => !have.has(s));
  if (missing.length) return { renew: true, reason: `does not name ${missing.join(", ")}` };
  if (now < cert.notBeforeMs) return { renew: true, reason: "not valid yet (the clock went back?)" };
  if (now >= cert.notAfterMs - RENEW_BEFORE_MS) {
    const days = Math.max(0, Math.ceil((cert.notAfterMs - now) / DAY));
    return { renew: true, reason: now >= cert.notAfterMs ? "expired" : `expires in ${days} day(s)` };
  }
  return { renew: false };
}

/** Validity of a certificate issued at `now`. */
export function validity(now: number, lifetimeMs = NODE_CERT_LIFETIME_MS): { notBeforeMs: number; notAfterMs: number } {
  return { notBeforeMs: now - BACKDATE_MS, notAfterMs: now + lifetimeMs };
}
