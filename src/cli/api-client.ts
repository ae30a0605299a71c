// How CLI commands reach an agent: --api URL, else $PGHERD_API, else the [api] section of the
// config file (--config / $PGHERD_CONFIG / default) when this user can read it, else the default
// address. Only [api] is read and checked: any user who can reach the API can read from it, no
// root needed for a 0600 config. HTTPS when the URL says so or [api] has TLS; --cacert (or
// $PGHERD_CACERT) names the CA to trust, else the default CAs.
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from "node:fs";
import os from "node:os";
import { isLoopbackHost } from "../config/hostport.ts";
import { type ApiAddress, readApiSection } from "../ops/api-address.ts";
import { isNonce, requestTarget, signRequest } from "../api/request-signing.ts";
import { type CliContext, CliExit, configPathFrom, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const apiArgs = {
  api: { type: "string", valueHint: "url", description: "Agent API base URL (default: $PGHERD_API, else the config's [api] listen)" },
  config: { type: "string", valueHint: "path", description: "Config file to read [api] listen, tls and token from" },
  cacert: { type: "string", valueHint: "path", description: "PEM file of the CA that signed the API's certificate (default: $PGHERD_CACERT, else the default CAs)" },
} as const;

/** CA to trust per API base URL: set by apiBase, used by every request to that base. */
const trust = new Map<string, string>();
const tlsOf = (base: string) => (trust.has(base) ? { tls: { ca: trust.get(base)! } } : {});

export const tokenArg = {
  "token-file": {
    type: "string", valueHint: "path",
    description: "File holding the API token (default: $PGHERD_TOKEN, else api.token from the config). Never on the command line: ps shows it",
  },
} as const;

/**
 * --token-file, else $PGHERD_TOKEN, else api.token of the local config file, else "". The config's
 * token goes only to the agent its own [api] names (sameAgent): with --api or $PGHERD_API naming
 * another agent (another cluster's, a host across the network) it is not sent; the token for that
 * agent comes from --token-file or $PGHERD_TOKEN.
 */
export function apiToken(args: { "token-file"?: string; config?: string; api?: string }, ctx: CliContext): string {
  const file = args["token-file"];
  if (file) return readTokenFile(file);
  if (ctx.env.PGHERD_TOKEN) return ctx.env.PGHERD_TOKEN.trim();
  const own = configApi(args, ctx);
  if (!own?.token) return "";
  const asked = args.api || ctx.env.PGHERD_API;
  return !asked || sameAgent(asked, own.url) ? own.token : "";
}

/**
 * Whether `asked` names the agent the config's [api] URL names: same scheme and port, and the same
 * host or, for an agent listening on this host (a wildcard or loopback listen address), any name
 * of this host: loopback, `localhost`, its host name, one of its interfaces' addresses (a TLS
 * certificate's name, docs/operations.md).
 */
function sameAgent(asked: string, own: string): boolean {
  let a: URL;
  let o: URL;
  try {
    a = new URL(asked);
    o = new URL(own);
  } catch {
    return false;
  }
  if (a.protocol !== o.protocol || a.port !== o.port) return false;
  if (a.hostname === o.hostname) return true;
  const bare = (h: string) => h.replace(/^\[|\]$/g, "").toLowerCase();
  if (!isLoopbackHost(bare(o.hostname))) return false;
  const hn = os.hostname().toLowerCase();
  const addrs = new Set(Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address.toLowerCase())));
  const h = bare(a.hostname).replace(/\.$/, "");
  // Not any domain name starting with the host name: db1.staging.example from prod's db1 is
  // another agent (review: the token went to it). A name of this host in DNS goes by --token-file.
  return isLoopbackHost(h) || addrs.has(h) || h === hn;
}

/** The token in a file (surrounding whitespace and the final newline dropped); a file others may read is refused. */
function readTokenFile(path: string): string {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const st = fstatSync(fd);
    // Pipes and process substitution (<(pass show pgherd)) are fine; a shared regular file is not.
    if (st.isFile() && st.mode & 0o077) {
      throw new CliExit(EXIT_USAGE, `pgherd: token file ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}: group and others must have no access (chmod 600 ${path})`);
    }
    text = readFileSync(fd, "utf8").trim();
  } catch (e) {
    if (e instanceof CliExit) throw e;
    throw new CliExit(EXIT_USAGE, `pgherd: cannot read token file ${path}: ${(e as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (!text) throw new CliExit(EXIT_USAGE, `pgherd: token file ${path} is empty`);
  return text;
}

export interface ActionReply {
  status: number;
  ok: boolean;
  message: string;
  detail?: unknown;
}

/** The node that won instead of a switchover's target (the agent's 202 answer), else null. */
export function winnerOf(r: ActionReply): string | null {
  const w = (r.detail as { winner?: unknown } | undefined)?.winner;
  return typeof w === "string" ? w : null;
}

/**
 * The Authorization header for a request with the token: signed with a nonce the agent issued
 * (src/api/request-signing.ts), so the token itself never leaves this process: whoever answers on
 * the address (a local user who bound the port while the agent was down) learns nothing it can use
 * twice. An agent without /auth/nonce (older than this CLI) gets the bearer token only over HTTPS,
 * whose certificate authenticated it. No token: no header.
 */
async function authorization(base: string, method: string, path: string, body: string, token: string): Promise<Record<string, string>> {
  if (!token) return {};
  const res = await fetch(`${base}/auth/nonce`, { signal: AbortSignal.timeout(5000), ...tlsOf(base) });
  const j = (await res.json().catch(() => null)) as { nonce?: unknown } | null;
  if (res.ok && isNonce(j?.nonce)) return { authorization: signRequest(token, method, requestTarget(`${base}${path}`), j.nonce, body) };
  if (res.status === 403) return {}; // actions disabled there: its answer to the request says so
  if (res.status === 404 && base.startsWith("https:")) return { authorization: `Bearer ${token}` };
  throw new CliExit(EXIT_FAILURE, `the agent at ${base} gave no nonce to sign the request with (${res.status} for GET /auth/nonce${res.status === 404 ? ": an agent older than this CLI?" : ""}); the API token is not sent in clear over HTTP: upgrade that agent or reach it over HTTPS`);
}

/** POST/PATCH/DELETE an action; returns the agent's answer whatever its status (the caller picks the exit code). */
export async function sendAction(base: string, method: "POST" | "PATCH" | "DELETE", path: string, body: unknown, token: string, timeoutMs = 90_000): Promise<ActionReply> {
  let res: Response;
  try {
    const text = body === undefined ? "" : JSON.stringify(body);
    const auth = await authorization(base, method, path, text, token);
    res = await fetch(`${base}${path}`, {
      method, signal: AbortSignal.timeout(timeoutMs), ...tlsOf(base),
      ...(body === undefined ? {} : { body: text }),
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...auth },
    });
  } catch (e) {
    if (e instanceof CliExit) throw e;
    throw new CliExit(EXIT_FAILURE, `cannot reach the pgherd agent at ${base}: ${(e as Error).message}`);
  }
  const text = await res.text();
  let j: Record<string, unknown> = {};
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: keep the text as the message
  }
  const said = typeof j.message === "string" ? j.message : typeof j.error === "string" ? j.error : text.slice(0, 500);
  const message = res.status === 401 && !token ? `${said} (no token was sent: --token-file or $PGHERD_TOKEN; the config's api.token goes only to the address its [api] names)` : said;
  return { status: res.status, ok: res.ok, message, detail: j.detail };
}

export function apiBase(args: { api?: string; config?: string; cacert?: string }, ctx: CliContext): string {
  const base = (args.api || ctx.env.PGHERD_API || configApi(args, ctx)?.url || "http://127.0.0.1:7402").replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]+$/.test(base)) throw new CliExit(EXIT_USAGE, `pgherd: API address ${JSON.stringify(base)} must look like http://host:port or https://host:port`);
  const cacert = args.cacert || ctx.env.PGHERD_CACERT;
  if (cacert) {
    try {
      trust.set(base, readFileSync(cacert, "utf8"));
    } catch (e) {
      throw new CliExit(EXIT_USAGE, `pgherd: cannot read CA file ${cacert}: ${(e as Error).message}`);
    }
  }
  return base;
}

/**
 * The [api] section of the config file, or null when there is none to read: the default (or
 * $PGHERD_CONFIG) file absent or not readable by this user (a 0600 file of the agent's). A file
 * named with --config must be readable; an invalid [api] is an error naming file and key.
 */
function configApi(args: { config?: string }, ctx: CliContext): ApiAddress | null {
  const path = configPathFrom(args.config, ctx);
  if (!args.config && !existsSync(path)) return null;
  const r = readApiSection(path);
  if (r.kind === "ok") return r.api;
  if (r.kind === "unreadable" && !args.config) return null;
  throw new CliExit(EXIT_USAGE, r.message);
}

/** GET a JSON document from the agent, with a deadline and an error that says which agent failed. */
export async function getJson(base: string, path: string, timeoutMs = 5000, token = ""): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs), ...tlsOf(base), headers: await authorization(base, "GET", path, "", token) });
  } catch (e) {
    if (e instanceof CliExit) throw e;
    throw new CliExit(EXIT_FAILURE, `cannot reach the pgherd agent at ${base}: ${(e as Error).message}`);
  }
  const text = await res.text();
  if (!res.ok) throw new CliExit(EXIT_FAILURE, `agent at ${base} answered ${res.status} for ${path}: ${text.slice(0, 300)}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new CliExit(EXIT_FAILURE, `agent at ${base} sent invalid JSON for ${path}`);
  }
}
