// Small HTTP helpers: JSON responses, bounded body reading, readable validation errors.
import type { z } from "zod";

/** Largest request body accepted (actions carry a few short fields). */
export const MAX_BODY_BYTES = 64 * 1024;

export const JSON_TYPE = "application/json; charset=utf-8";

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify(body, null, 2)}\n`, { status, headers: { "content-type": JSON_TYPE, "cache-control": "no-store", ...headers } });
}

export function error(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json({ ok: false, error: message }, status, headers);
}

/**
 * What every answer of the API carries, set once as it leaves (server.ts): `nosniff`, so that no
 * browser reads a JSON or text answer as HTML or script.
 */
export function withCommonHeaders(res: Response): Response {
  res.headers.set("x-content-type-options", "nosniff");
  return res;
}

/** An answer chosen by the request's Accept header: a cache must not serve it for another. */
export function varyOnAccept(res: Response): Response {
  res.headers.append("vary", "Accept");
  return res;
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * The body as JSON ({} when empty). Refuses a declared or actual size above `limit` before
 * buffering it all, and malformed JSON, with an HttpError that says which.
 */
export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  return parseJsonBody(await readBody(req, limit));
}

/** The body's bytes; a declared or actual size above `limit` is refused (HttpError 413) before it is all buffered. */
export async function readBody(req: Request, limit = MAX_BODY_BYTES): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body?.getReader();
  for (;;) {
    const r = await reader?.read();
    if (!r || r.done) break;
    size += r.value.byteLength;
    if (size > limit) {
      void reader!.cancel().catch(() => {});
      throw new HttpError(413, `request body exceeds the limit of ${limit} bytes`);
    }
    chunks.push(r.value);
  }
  return Buffer.concat(chunks);
}

/** A body read by readBody as JSON ({} when empty); malformed JSON is an HttpError 400. */
export function parseJsonBody(bytes: Uint8Array): unknown {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `malformed JSON body: ${(e as Error).message}`);
  }
}

/**
 * Why a request's Host header is refused, or undefined. A browser tricked by DNS rebinding sends
 * the attacker's name: only IP literals, "localhost" and this host's own names (`names`) pass, as
 * does no Host at all (HTTP/1.0 health checks).
 */
export function hostProblem(host: string | null, names: readonly string[]): string | undefined {
  if (host === null || host === "") return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(host);
  if (!m) return `Host ${JSON.stringify(host.slice(0, 100))} is malformed`;
  const name = m[1]!.toLowerCase().replace(/\.$/, "");
  if (name.startsWith("[") || /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name === "localhost") return undefined;
  if (names.some((n) => n.toLowerCase().replace(/\.$/, "") === name)) return undefined;
  return `Host ${JSON.stringify(name.slice(0, 100))} is not an address or a name of this node (DNS rebinding?): use the IP address`;
}

/** "force: expected boolean; unknown field(s) "colour"" */
export function describeIssues(e: z.ZodError): string {
  return e.issues.slice(0, 10).map((i) => {
    if (i.code === "unrecognized_keys") return `unknown field(s) ${i.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    const at = i.path.length ? `${i.path.join(".")}: ` : "";
    return `${at}${i.message}`;
  }).join("; ");
}
