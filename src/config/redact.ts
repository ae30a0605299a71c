// For status output, GET /config and debug logs: the config with every credential replaced. The
// cluster secret and the API token always; the Sentry DSN's public key (anyone holding it can post
// events into the project); and in free-form values (PostgreSQL parameters: an archive_command or
// restore_command with PGPASSWORD=…, a conninfo with password=…) whatever looks like a credential.
import type { Config } from "./schema.ts";

const HIDDEN = "<redacted>";

/**
 * key=value, key: value, URI passwords, bearer and basic credentials, curl's `-u user:password`:
 * whatever looks like a credential (also Sentry's scrubber).
 */
const CREDENTIAL_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\b([A-Za-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key)[A-Za-z_]*)(\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi, `$1$2${HIDDEN}`],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+/gi, `$1 ${HIDDEN}`],
  [/([a-z][a-z0-9+.-]*:\/\/[^/\s:@]+):[^@\s/]+@/gi, `$1:${HIDDEN}@`],
  [/((?:^|\s)(?:-u\s*|--user(?:\s+|=)|--proxy-user(?:\s+|=))["']?[^\s:"']+):("[^"]*"|'[^']*'|[^\s"']+)/g, `$1:${HIDDEN}`],
];

/** `s` with whatever looks like a credential replaced. */
export function scrubCredentials(s: string, hidden = HIDDEN): string {
  let out = s;
  for (const [re, rep] of CREDENTIAL_PATTERNS) out = out.replace(re, rep.replaceAll(HIDDEN, hidden));
  return out;
}

/** Every string in a JSON value, scrubbed (keys kept). */
export function scrubStrings<T>(v: T): T {
  return mapStrings(v, (s) => scrubCredentials(s));
}

/** Every string in a JSON value through `text`; the value of a key `hideKey` names becomes `hidden` whole. */
export function mapStrings<T>(v: T, text: (s: string) => string, hideKey: (k: string) => boolean = () => false, hidden = HIDDEN): T {
  const walk = (x: unknown): unknown => {
    if (typeof x === "string") return text(x);
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, hideKey(k) ? hidden : walk(y)]));
    return x;
  };
  return walk(v) as T;
}

/** A DSN without its public key: where events go stays visible. */
function redactDsn(dsn: string): string {
  if (dsn === "") return "";
  try {
    const u = new URL(dsn);
    return `${u.protocol}//${HIDDEN}@${u.host}${u.pathname}`;
  } catch {
    return HIDDEN;
  }
}

export function redactConfig(cfg: Config): Config {
  return {
    ...cfg,
    secret: HIDDEN,
    api: { ...cfg.api, token: cfg.api.token === "" ? "" : HIDDEN },
    sentry: { ...cfg.sentry, dsn: redactDsn(cfg.sentry.dsn) },
    postgres: { ...cfg.postgres, parameters: scrubStrings(cfg.postgres.parameters) },
  };
}
