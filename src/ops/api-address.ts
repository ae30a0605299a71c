// Where the CLI finds the agent's API in a config file: only the [api] table is read and
// validated, so a user who may read the file but not run the agent (or a copy holding just
// [api]) gets an address, and a broken key elsewhere does not stop a read-only command.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parse } from "smol-toml";
import { configErrorMap, issueLines } from "../config/errors.ts";
import { apiSection } from "../config/schema.ts";

export interface ApiAddress {
  /** "http(s)://host:port", a wildcard listen address replaced by loopback. */
  url: string;
  token: string;
}

export type ApiLookup = { kind: "ok"; api: ApiAddress } | { kind: "unreadable" | "invalid"; message: string };

/** The base URL for an api.listen "host:port" (a wildcard host becomes loopback). */
export function apiUrl(listen: string, tls: boolean): string {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[|\]$/g, "");
  const h = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return `${tls ? "https" : "http"}://${h.includes(":") ? `[${h}]` : h}:${listen.slice(i + 1)}`;
}

export function apiFromToml(text: string, label: string): ApiLookup {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    return { kind: "invalid", message: `${label}: TOML syntax error: ${((e as Error).message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "")}` };
  }
  const table = (raw as Record<string, unknown>).api ?? {};
  const r = apiSection().safeParse(table, { error: configErrorMap });
  if (!r.success) return { kind: "invalid", message: issueLines(label, r.error.issues.map((i) => ({ ...i, path: ["api", ...i.path] }))).join("\n") };
  return { kind: "ok", api: { url: apiUrl(r.data.listen, r.data.tls_cert !== ""), token: r.data.token } };
}

export function readApiSection(path: string): ApiLookup {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EACCES" ? "permission denied (pass --api URL or set $PGHERD_API; reading the API needs no root)" : code === "ENOENT" ? "file not found" : (e as Error).message;
    return { kind: "unreadable", message: `${basename(path)}: cannot read config file ${path}: ${why}` };
  }
  return apiFromToml(text, basename(path));
}
