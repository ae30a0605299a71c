// Signed API requests: the CLI proves it holds the API token without sending it. It asks the agent
// for a one-use nonce (GET /auth/nonce, no token needed), then sends
//   Authorization: PGHERD-HMAC nonce=<32 hex>, mac=<64 hex>
// with mac = HMAC-SHA256(token, "pgherd-api-v1\n" METHOD "\n" path?query "\n" nonce "\n" hex(SHA-256(body))).
// Whoever answers on the API's address (a local user that bound the port while the agent was down,
// a host across a plain-HTTP network) learns no token, and the request it saw is good only once and
// only where its nonce was issued: the nonce it handed out itself is unknown to every agent, and a
// nonce an agent issued is taken by the first request that shows it. `Authorization: Bearer <token>`
// stays accepted (curl, the dashboard, scripts).
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const SIGNED_SCHEME = "PGHERD-HMAC";
/** How long an issued nonce may be used. */
export const NONCE_TTL_MS = 30_000;
/** Nonces issued and not yet used or expired, at most: the oldest goes first (anyone may ask for one). */
export const MAX_NONCES = 1024;

const NONCE = /^[0-9a-f]{32}$/;
const HEADER = /^PGHERD-HMAC\s+nonce=([0-9a-f]{32}),\s*mac=([0-9a-f]{64})\s*$/;

/** The request target a signature covers: the path and query of `url` as URL parsing gives them. */
export function requestTarget(url: string): string {
  const u = new URL(url, "http://localhost");
  return `${u.pathname}${u.search}`;
}

export function isNonce(s: unknown): s is string {
  return typeof s === "string" && NONCE.test(s);
}

function mac(token: string, method: string, target: string, nonce: string, body: string | Uint8Array): string {
  const bodyHash = createHash("sha256").update(body).digest("hex");
  return createHmac("sha256", token).update(`pgherd-api-v1\n${method.toUpperCase()}\n${target}\n${nonce}\n${bodyHash}`).digest("hex");
}

/** The Authorization header value for a request (`body` exactly as sent; "" for none). */
export function signRequest(token: string, method: string, target: string, nonce: string, body: string | Uint8Array): string {
  return `${SIGNED_SCHEME} nonce=${nonce}, mac=${mac(token, method, target, nonce, body)}`;
}

/** The nonce and MAC of a signed Authorization header, or null when it is not one. */
export function parseSigned(header: string | null): { nonce: string; mac: string } | null {
  const m = header ? HEADER.exec(header) : null;
  return m ? { nonce: m[1]!, mac: m[2]! } : null;
}

/** Whether `signed` is the MAC of this request under `token` (compared in constant time). */
export function macMatches(token: string, method: string, target: string, body: Uint8Array, signed: { nonce: string; mac: string }): boolean {
  const want = Buffer.from(mac(token, method, target, signed.nonce, body), "hex");
  return timingSafeEqual(want, Buffer.from(signed.mac, "hex"));
}

/** Nonces this agent issued: each good once, for NONCE_TTL_MS; at most MAX_NONCES outstanding. `now`: a monotonic clock. */
export class NonceBook {
  /** nonce → expiry; insertion order is issue order. */
  private readonly open = new Map<string, number>();

  constructor(private readonly ttlMs = NONCE_TTL_MS, private readonly max = MAX_NONCES, private readonly random: (n: number) => Buffer = randomBytes) {}

  issue(now: number): string {
    this.prune(now);
    while (this.open.size >= this.max) this.open.delete(this.open.keys().next().value!);
    const nonce = this.random(16).toString("hex");
    this.open.set(nonce, now + this.ttlMs);
    return nonce;
  }

  /** true once for a nonce issued here and not expired; it is gone afterwards either way. */
  take(nonce: string, now: number): boolean {
    const until = this.open.get(nonce);
    this.open.delete(nonce);
    return until !== undefined && now < until;
  }

  size(): number {
    return this.open.size;
  }

  private prune(now: number): void {
    for (const [n, until] of this.open) {
      if (until > now) break; // issue order: the rest expire later
      this.open.delete(n);
    }
  }
}
