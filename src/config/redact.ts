// For status output, GET /config and debug logs: the config with every credential replaced. The
// cluster secret and the API token always; the Sentry DSN's public key (anyone holding it can post
// events into the project); and in free-form values (PostgreSQL parameters: an archive_command or
// restore_command with PGPASSWORD=…, a conninfo with password=…) whatever looks like a credential.
import type { Config } from "./schema.ts";

const HIDDEN = "<redacted>";

/**
 * key=value, key: value, URI passwords, bearer tokens and `Authorization: Basic …`, curl's
 * `-u`/`-U`/`--user`/`--proxy-user user:password` (also in a cluster of short flags, `-sSfu`):
 * whatever looks like a credential (also Sentry's scrubber). Every repetition is bounded or
 * anchored, so a long value costs linear time (Sentry events and GET /config run on the agent's
 * event loop). A uid:gid after `-u` (`docker exec -u 999:999`) is hidden too: the safe side.
 */
const CREDENTIAL_PATTERNS: ReadonlyArray<readonly [RegExp, (hidden: string, ...groups: string[]) => string]> = [
  [/\b([A-Za-z_]{0,64}(?:password|passwd|passphrase|pwd|secret|token|credential|signature|(?:api|private|signing|subscription|encryption|access|master|account)[_-]?key)[A-Za-z_]{0,64})(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&]+)/gi, (h, key, sep) => `${key}${sep}${h}`],
  // A name that ends in pass, key or sig, then `=`: pgBackRest's --repo1-cipher-pass=, AZURE_STORAGE_KEY=,
  // WALG_LIBSODIUM_KEY=, an Azure SAS URL's sig= (review). Only with `=`: "primary key: …" or
  // "resigned: …" in a log line are words, not credentials (re-review).
  [/(?<![A-Za-z0-9])((?:[A-Za-z0-9]{1,64}[_-]){0,8}(?:pass|key|sig))(\s*=\s*)("[^"]*"|'[^']*'|[^\s&]+)/gi, (h, key, sep) => `${key}${sep}${h}`],
  [/\b(bearer|authorization:\s*basic)\s+[A-Za-z0-9._~+/=-]+/gi, (h, what) => `${what} ${h}`],
  [/(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}:\/\/[^/\s:@]{1,256}):[^@\s/]+@/gi, (h, userinfo) => `${userinfo}:${h}@`],
  [/((?:^|\s)(?:-[A-Za-z]{0,8}[uU]\s*|--(?:proxy-)?user(?:\s+|=)))(?:'([^':]*):[^']*'|"([^":]*):[^"]*"|([A-Za-z0-9_][^\s:'"]*):[^\s'"]+)/g,
    (h, flag, sq, dq, bare) => sq !== undefined ? `${flag}'${sq}:${h}'` : dq !== undefined ? `${flag}"${dq}:${h}"` : `${flag}${bare}:${h}`],
];

/** `s` with whatever looks like a credential replaced. */
export function scrubCredentials(s: string, hidden = HIDDEN): string {
  let out = s;
  for (const [re, rep] of CREDENTIAL_PATTERNS) out = out.replace(re, (_m, ...g: unknown[]) => rep(hidden, ...(g.slice(0, -2) as string[])));
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

/** A PostgreSQL parameter that holds a shell command (archive_command, restore_command, …): its credentials may take any form. */
export const isCommandParameter = (name: string): boolean => name.endsWith("_command");

/**
 * A parameter whose name says its value is a credential (an extension's `app.jwt_secret`,
 * `anon.salt`, `myext.password`): the value is the secret itself, which the scrubber, looking for
 * `password=…` inside a value, does not see (review). PostgreSQL's own names that end so hold no
 * credential (`password_encryption` ends otherwise; `ssl_passphrase_command` is a command).
 */
export const isCredentialParameter = (name: string): boolean =>
  /(?:password|passwd|passphrase|pwd|secret|token|credentials?|salt|signature|(?:^|[._-])(?:key|pass|sig)|(?:api|private|signing|subscription|encryption|access|master|account)[_-]?key)$/i.test(name);

/** A parameter shown without the token: a command or a credential by its name is hidden whole. */
const hiddenWhole = (name: string): boolean => isCommandParameter(name) || isCredentialParameter(name);

/**
 * A conflict between pgherd.toml and the cluster-wide document (config/dynamic.ts Conflict) as shown:
 * the values of a parameter hidden whole (`hideCommands`: commands too) replaced.
 */
export function redactConflict<C extends { key: string; local: string; cluster: string | null }>(c: C, hideCommands = false): C {
  const name = c.key.slice(c.key.lastIndexOf(".") + 1);
  if (!(isCredentialParameter(name) || (hideCommands && isCommandParameter(name)))) return { ...c, local: scrubCredentials(c.local), cluster: c.cluster === null ? null : scrubCredentials(c.cluster) };
  return { ...c, local: HIDDEN, cluster: c.cluster === null ? null : HIDDEN };
}

/**
 * The cluster-wide configuration's view for a request without the API token: credentials scrubbed,
 * every command parameter and every parameter named as a credential hidden whole, in the document
 * and in the conflicts with pgherd.toml.
 */
export function redactDynamic<T>(v: T): T {
  const walk = (x: unknown): unknown => {
    if (typeof x === "string") return scrubCredentials(x);
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") {
      const o = x as Record<string, unknown>;
      if (typeof o.key === "string" && typeof o.local === "string" && (typeof o.cluster === "string" || o.cluster === null)) return redactConflict(o as { key: string; local: string; cluster: string | null }, true);
      return Object.fromEntries(Object.entries(o).map(([k, y]) => [k, hiddenWhole(k) ? HIDDEN : walk(y)]));
    }
    return x;
  };
  return walk(v) as T;
}

/**
 * Parameters named as a credential are hidden whole; `commands`: every command parameter too (GET
 * /config without the token), not only what looks like a credential in it.
 */
export function redactConfig(cfg: Config, commands = false): Config {
  return {
    ...cfg,
    secret: HIDDEN,
    api: { ...cfg.api, token: cfg.api.token === "" ? "" : HIDDEN },
    sentry: { ...cfg.sentry, dsn: redactDsn(cfg.sentry.dsn) },
    postgres: { ...cfg.postgres, parameters: mapStrings(cfg.postgres.parameters, (s) => scrubCredentials(s), commands ? hiddenWhole : isCredentialParameter) },
  };
}
