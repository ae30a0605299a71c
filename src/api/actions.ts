// Token-protected operator actions: authenticate, validate the body (strict), hand it to the agent.
// Never open by default: with api.token = "" every action is refused.
import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Logger } from "../log.ts";
import type { RejectLog } from "../net/rejects.ts";
import { ActionRequestSchema, type ActionRequest } from "./actions-contract.ts";
import { describeIssues, error, HttpError, json, readJson } from "./http.ts";
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

/** Whether the request carries the API token (never when none is configured). Compares digests: no early exit on the first wrong byte. */
export function carriesToken(req: Request, token: string): boolean {
  if (token === "") return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  return m !== null && timingSafeEqual(digest(m[1]!), digest(token));
}

/** null when authorised, else the response (401 without a token, 403 with a wrong one or none configured). */
export function authorize(req: Request, token: string, rejects: RejectLog, remote: string): Response | null {
  if (token === "") {
    rejects.add("actions-disabled", remote, "api.token is empty");
    return error(403, "actions are disabled on this agent: set api.token in its pgherd.toml (and send it as `Authorization: Bearer <token>`)");
  }
  const h = req.headers.get("authorization");
  const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  if (!m) {
    rejects.add("no-token", remote);
    return error(401, "this action needs the API token: `Authorization: Bearer <api.token>`", { "www-authenticate": 'Bearer realm="pgherd"' });
  }
  // Compare digests: equal lengths for timingSafeEqual, and no early exit on the first wrong byte.
  if (!timingSafeEqual(digest(m[1]!), digest(token))) {
    rejects.add("bad-token", remote);
    return error(403, "wrong API token");
  }
  return null;
}

export async function runAction(opts: {
  req: Request; kind: Kind; token: string; source: ApiSource; log: Logger; rejects: RejectLog; remote: string;
  /** Called once the token is accepted (a backup lifts the connection's idle timeout then, not for anyone). */
  authorized?: () => void;
}): Promise<Response> {
  const denied = authorize(opts.req, opts.token, opts.rejects, opts.remote);
  if (denied) return denied;
  opts.authorized?.();
  let body: unknown;
  try {
    body = await readJson(opts.req);
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
