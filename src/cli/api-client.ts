// How CLI commands reach an agent: --api URL, else the api.listen of the config
// file (--config / $PGHERD_CONFIG / default), else the default address.
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from "node:fs";
import { loadConfig } from "../config/load.ts";
import { type CliContext, CliExit, configPathFrom, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const apiArgs = {
  api: { type: "string", valueHint: "url", description: "Agent API base URL (default: from the config's api.listen)" },
  config: { type: "string", valueHint: "path", description: "Config file to read api.listen (and api.token) from" },
} as const;

export const tokenArg = {
  "token-file": {
    type: "string", valueHint: "path",
    description: "File holding the API token (default: $PGHERD_TOKEN, else api.token from the config). Never on the command line: ps shows it",
  },
} as const;

/** --token-file, else $PGHERD_TOKEN, else api.token of the local config file, else "". */
export function apiToken(args: { "token-file"?: string; config?: string }, ctx: CliContext): string {
  const file = args["token-file"];
  if (file) return readTokenFile(file);
  if (ctx.env.PGHERD_TOKEN) return ctx.env.PGHERD_TOKEN.trim();
  const path = configPathFrom(args.config, ctx);
  if (args.config || existsSync(path)) return loadConfig(path).api.token;
  return "";
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

/** POST/PATCH/DELETE an action; returns the agent's answer whatever its status (the caller picks the exit code). */
export async function sendAction(base: string, method: "POST" | "PATCH" | "DELETE", path: string, body: unknown, token: string, timeoutMs = 90_000): Promise<ActionReply> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method, signal: AbortSignal.timeout(timeoutMs),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  } catch (e) {
    throw new CliExit(EXIT_FAILURE, `cannot reach the pgherd agent at ${base}: ${(e as Error).message}`);
  }
  const text = await res.text();
  let j: Record<string, unknown> = {};
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: keep the text as the message
  }
  const message = typeof j.message === "string" ? j.message : typeof j.error === "string" ? j.error : text.slice(0, 500);
  return { status: res.status, ok: res.ok, message, detail: j.detail };
}

export function apiBase(args: { api?: string; config?: string }, ctx: CliContext): string {
  if (args.api) return args.api.replace(/\/+$/, "");
  const path = configPathFrom(args.config, ctx);
  if (args.config || existsSync(path)) {
    const cfg = loadConfig(path);
    const [host, port] = splitListen(cfg.api.listen);
    const h = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
    return `http://${h.includes(":") ? `[${h}]` : h}:${port}`;
  }
  return "http://127.0.0.1:7402";
}

function splitListen(listen: string): [string, string] {
  const i = listen.lastIndexOf(":");
  return [listen.slice(0, i).replace(/^\[|\]$/g, ""), listen.slice(i + 1)];
}

/** GET a JSON document from the agent, with a deadline and an error that says which agent failed. */
export async function getJson(base: string, path: string, timeoutMs = 5000): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
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
