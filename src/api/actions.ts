// Token-protected operator actions: authenticate (a bearer token, or a request signed with it:
// request-signing.ts), validate the body (strict), hand it to the agent.
// Never open by default: with api.token = "" every action is refused.
import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Logger } from "../log.ts";
import type { RejectLog } from "../net/rejects.ts";
import { ActionRequestSchema, type ActionRequest } from "./actions-contract.ts";
import { describeIssues, error, HttpError, json, parseJsonBody, readBody } from "./http.ts";
import { macMatches, NonceBook, parseSigned, requestTarget } from "./request-signing.ts";
import type { ApiSource } from "./source.ts";
import { redactDynamic, scrubCredentials } from "../config/redact.ts";

type Kind = ActionRequest["kind"];

export type ActionMethod = "POST" | "PATCH" | "DELETE";

/** Path → method → the action it asks for. */
export const ACTION_ROUTES: Readonly<Record<string, Partial<Record<ActionMethod, Kind>>>> = {
  "/switchover": { POST: "switchover", DELETE: "switchover-cancel" },
  "/failover": { POST: "failover" },
  "/rejoin": { POST: "rejoin" },
  "/pause": { POST: "pause" },
  "/resume": { POST: "resume" },
  "/config": { PATCH: "config" },
  "/members/approve": { POST: "member-approve" },
  "/members/remove": { POST: "member-remove" },
  "/node/restart": { POST: "node-restart" },
  "/node/reload": { POST: "node-reload" },
  "/consensus/migrate": { POST: "consensus-migrate" },
  "/backup": { POST: "backup" },
};

/** The action `method path` asks for, if any. */
export function actionRoute(method: string, path: string): Kind | undefined {
  return Object.hasOwn(ACTION_ROUTES, path) ? ACTION_ROUTES[path]![method as ActionMethod] : undefined;
}

// Each action's body: its request schema without the discriminator (strict: unknown fields are errors).
const bodySchemas = Object.fromEntries(
  ActionRequestSchema.options.map((o) => [o.shape.kind.value, (o as unknown as z.ZodObject).omit({ kind: true })]),
) as unknown as Record<Kind, z.ZodType<Record<string, unknown>>>;

const digest = (s: string) => createHash("sha256").update(s).digest();

/** What authenticates requests: the API token, and the nonces this agent issued for signed requests (request-signing.ts). */
export interface ApiAuth {
  token: string;
  nonces: NonceBook;
  /** Monotonic ms (the nonces' clock). */
  now: () => number;
}

export function createApiAuth(token: string, now: () => number = () => performance.now()): ApiAuth {
  return { token, nonces: new NonceBook(), now };
}

/**
 * Whether the request proves it holds the API token (never when none is configured): a bearer token
 * (digests compared: no early exit on the first wrong byte), or a signature over the request and
 * `body` with a nonce this agent issued (taken by this request, whatever the answer).
 */
export function credentialsOf(req: Request, body: Uint8Array, auth: ApiAuth): "ok" | "none" | "wrong-token" | "unknown-nonce" | "bad-signature" {
  const h = req.headers.get("authorization");
  const signed = parseSigned(h);
  if (signed) {
    if (auth.token === "") return "wrong-token";
    if (!auth.nonces.take(signed.nonce, auth.now())) return "unknown-nonce";
    return macMatches(auth.token, req.method, requestTarget(req.url), body, signed) ? "ok" : "bad-signature";
  }
  const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  if (!m) return "none";
  return auth.token !== "" && timingSafeEqual(digest(m[1]!), digest(auth.token)) ? "ok" : "wrong-token";
}

/** Whether a request without a body carries the token (GET /config). */
export function carriesToken(req: Request, auth: ApiAuth): boolean {
  return credentialsOf(req, new Uint8Array(0), auth) === "ok";
}

/** null when authorised, else the response (401 without a token, 403 with a wrong one or none configured). */
export function authorize(req: Request, body: Uint8Array, auth: ApiAuth, rejects: RejectLog, remote: string): Response | null {
  if (auth.token === "") {
    rejects.add("actions-disabled", remote, "api.token is empty");
    return error(403, "actions are disabled on this agent: set api.token in its pgherd.toml (and send it as `Authorization: Bearer <token>`)");
  }
  switch (credentialsOf(req, body, auth)) {
    case "ok": return null;
    case "none":
      rejects.add("no-token", remote);
      return error(401, "this action needs the API token: `Authorization: Bearer <api.token>`", { "www-authenticate": 'Bearer realm="pgherd"' });
    case "unknown-nonce":
      rejects.add("unknown-nonce", remote);
      return error(401, "the signed request's nonce is not one this agent issued, was used, or expired (GET /auth/nonce for a new one)");
    case "bad-signature":
      rejects.add("bad-signature", remote);
      return error(403, "wrong API token");
    case "wrong-token":
      rejects.add("bad-token", remote);
      return error(403, "wrong API token");
  }
}

export async function runAction(opts: {
  req: Request; kind: Kind; auth: ApiAuth; source: ApiSource; log: Logger; rejects: RejectLog; remote: string;
  /** Called once the token is accepted (a backup lifts the connection's idle timeout then, not for anyone). */
  authorized?: () => void;
}): Promise<Response> {
  // A signature covers the body: read first (at most MAX_BODY_BYTES); a bearer token is checked before it is read.
  const signed = parseSigned(opts.req.headers.get("authorization")) !== null && opts.auth.token !== "";
  if (!signed) {
    const denied = authorize(opts.req, new Uint8Array(0), opts.auth, opts.rejects, opts.remote);
    if (denied) return denied;
    opts.authorized?.();
  }
  let body: unknown;
  try {
    const bytes = await readBody(opts.req);
    if (signed) {
      const denied = authorize(opts.req, bytes, opts.auth, opts.rejects, opts.remote);
      if (denied) return denied;
      opts.authorized?.();
    }
    body = parseJsonBody(bytes);
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    opts.rejects.add(e.status === 413 ? "oversized" : "malformed", opts.remote, e.message);
    return error(e.status, e.message);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return error(400, "the body must be a JSON object");
  const parsed = bodySchemas[opts.kind].safeParse(body);
  if (!parsed.success) {
    const msg = describeIssues(parsed.error);
    opts.rejects.add("invalid", opts.remote, `${opts.kind}: ${msg}`);
    return error(400, `invalid ${opts.kind} request: ${msg}`);
  }
  const request = ActionRequestSchema.parse({ ...parsed.data, kind: opts.kind });
  if (!opts.source.action) return error(501, `${opts.kind} is not available in this build of the agent`);
  // Redacted as GET /config without the token: a config change may carry a parameter with a password
  // (restore_command with PGPASSWORD=…), or one whose value is the secret (app.jwt_secret: review).
  opts.log.info(`action ${opts.kind} requested from ${opts.remote}: ${JSON.stringify(redactDynamic(parsed.data))}`);
  const r = await opts.source.action(request);
  opts.log.info(`action ${opts.kind}: ${r.status} ${scrubCredentials(r.message)}`);
  return json({ ok: r.ok, message: r.message, ...(r.detail === undefined ? {} : { detail: r.detail }) }, r.status);
}
