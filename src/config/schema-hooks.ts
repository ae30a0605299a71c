// [hooks] and [sentry]: what pgherd tells the rest of an operator's stack (docs/hooks.md,
// docs/api.md). Each section is its own strict zod object; schema.ts only references them.
import { z } from "zod";
import { isLoopbackUrlHost } from "./hostport.ts";
import { absPath } from "./pg-values.ts";

/** "" (no hook) or the absolute path of an executable (run without a shell). */
const hookPath = () => z.union([z.literal(""), absPath('an absolute path to an executable, or ""')]);

export const hooksSection = () => z.strictObject({
  /** PostgreSQL's role changed here: primary, replica or demoted (Patroni's on_role_change). */
  on_role_change: hookPath().default(""),
  /** PostgreSQL started here (Patroni's on_start). */
  on_start: hookPath().default(""),
  /** PostgreSQL stopped here (Patroni's on_stop). */
  on_stop: hookPath().default(""),
  /** Before this node's standby is promoted; a non-zero exit (or the timeout) vetoes it. */
  pre_promote: hookPath().default(""),
  /** Each run is killed (its whole process group) after this long. */
  timeout_ms: z.int().min(100, "must be at least 100").max(600_000, "must be at most 600000").default(10_000),
});

/**
 * A Sentry DSN: https://<public key>@<host>[:port]/[path/]<project id>. "" sends nothing.
 * Plain http is accepted only for a loopback receiver (a relay on the same host).
 */
export const sentryDsn = () => z.string().superRefine((v, ctx) => {
  if (v === "") return;
  const p = parseDsn(v);
  if (typeof p === "string") ctx.addIssue({ code: "custom", message: `is not a valid Sentry DSN: ${p}` });
});

export interface ParsedDsn {
  /** The envelope endpoint: <scheme>://<host>/<path>api/<project>/envelope/ */
  envelopeUrl: string;
  publicKey: string;
  projectId: string;
}

export function parseDsn(dsn: string): ParsedDsn | string {
  let u: URL;
  try {
    u = new URL(dsn);
  } catch {
    return "not a URL";
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return "the scheme must be https";
  if (u.protocol === "http:" && !isLoopbackUrlHost(u.hostname)) return "plain http is only accepted for a loopback relay (127.0.0.1, [::1], localhost); use https";
  if (!/^[0-9a-f]{16,64}$/i.test(u.username)) return "the public key (before @) must be 16-64 hex digits";
  if (u.password) return "must not carry a secret key (Sentry no longer uses one)";
  if (u.search || u.hash) return "must not have a query or fragment";
  const parts = u.pathname.split("/").filter(Boolean);
  const projectId = parts.pop();
  if (!projectId || !/^\d{1,20}$/.test(projectId)) return "the path must end with the numeric project id";
  const prefix = parts.length ? `/${parts.join("/")}` : "";
  return { envelopeUrl: `${u.protocol}//${u.host}${prefix}/api/${projectId}/envelope/`, publicKey: u.username, projectId };
}

export const sentrySection = () => z.strictObject({
  dsn: sentryDsn().default(""),
  /** Sentry's `environment` tag. */
  environment: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 characters of A-Z, a-z, 0-9, _, . and -").default("production"),
});
