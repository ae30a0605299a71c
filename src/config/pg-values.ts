// Config values that end up inside PostgreSQL's files (pgherd.conf, pg_hba.conf, conninfo) or
// on its command line. Checked here, at load, against what src/postgres/pgconf.ts and hba.ts
// accept when they render: a bad value must stop the agent with exit 2, not fail every round.
import { z } from "zod";
import { LOCATION_KEYS, MANAGED_KEYS, RECOVERY_END_KEYS } from "../postgres/pgconf.ts";
import { isHost } from "./hostport.ts";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
export const noControl = (s: string) => !CONTROL.test(s);

/** An absolute path without control characters (they cannot be written into a conninfo or config line). */
export const absPath = (what = "an absolute path") =>
  z.string().startsWith("/", `must be ${what}`).refine(noControl, "must not contain control characters (newline, tab …)");

/** pg_hba.conf keywords: a role with one of these names would match far more than itself. */
const HBA_KEYWORDS = new Set(["all", "sameuser", "samerole", "samegroup", "replication"]);

export const pgIdent = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, "must be a lower-case PostgreSQL identifier (a-z, 0-9, _)")
  .refine((s) => !HBA_KEYWORDS.has(s), "must not be a pg_hba.conf keyword (all, sameuser, samerole, samegroup, replication)");

/** listen_addresses: "*" or a comma-separated list of host names and IP addresses. */
export const listenAddresses = z
  .string()
  .refine(
    (s) => s.split(",").every((a) => a.trim() === "*" || isHost(a.trim())),
    'must be "*" or a comma-separated list of host names and IP addresses',
  );

// PostgreSQL's configuration lexer: ID = letter (letter|digit)*, QUALIFIED_ID = ID "." ID; names are
// case-insensitive. The include directives are not settings: they would pull in another file.
const GUC_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;
const DIRECTIVES = new Set(["include", "include_if_exists", "include_dir"]);

export const paramValue = z.union([
  z.string().refine(noControl, "must not contain control characters (newline, tab …)"),
  z.number(),
  z.boolean(),
], "must be a string, a number or true/false");

/** [postgres.parameters]: valid setting names, none of those pgherd manages, no name twice (case-insensitively). */
export const parameters = z.record(z.string(), paramValue).superRefine((params, ctx) => {
  const seen = new Map<string, string>();
  for (const name of Object.keys(params)) {
    const lower = name.toLowerCase();
    const problem = !GUC_NAME.test(name)
      ? "is not a valid PostgreSQL setting name (letters, digits, _ and at most one dot)"
      : DIRECTIVES.has(lower)
        ? "is an include directive, not a setting"
        : (MANAGED_KEYS as readonly string[]).includes(lower)
          ? "is managed by pgherd: set it through pgherd's own keys"
          : (RECOVERY_END_KEYS as readonly string[]).includes(lower)
            ? "would end a standby's recovery (and may promote it): pgherd decides promotion"
          : (LOCATION_KEYS as readonly string[]).includes(lower)
            ? "moves a file pgherd manages (the data directory, pg_hba.conf, pg_ident.conf) away from it"
          : lower === "full_page_writes" && pgBoolOff(params[name])
            ? "off would make pg_rewind refuse every rejoin (and risk torn pages after a crash): a former primary could only be cloned again"
          : seen.has(lower)
            ? `is the same setting as ${JSON.stringify(seen.get(lower))} (names are case-insensitive)`
            : "";
    seen.set(lower, name);
    // The name goes in the message, JSON-quoted: a key is the operator's text, never a secret value.
    if (problem) ctx.addIssue({ code: "custom", path: [], message: `${JSON.stringify(name)} ${problem}` });
  }
});

/** Whether PostgreSQL reads `v` as a boolean false (off, false, no, 0 and their unique prefixes, any case). */
export function pgBoolOff(v: unknown): boolean {
  if (v === false || v === 0) return true;
  if (typeof v !== "string") return false;
  const s = v.trim().toLowerCase();
  return s === "0" || (s.length >= 2 && "off".startsWith(s)) || (s.length >= 1 && ("false".startsWith(s) || "no".startsWith(s)));
}

/**
 * Settings that run a program, load a library from a path, or write a file where they say, as the
 * PostgreSQL OS user: a change of
 * the cluster-wide configuration (an API token holder's) may not set them, or it would run what it
 * likes on every host (review); each host's pgherd.toml may (only who edits that file can). A
 * document that holds one already (seeded from the first leader's pgherd.toml) keeps it.
 */
export const HOST_ONLY_KEYS: ReadonlySet<string> = new Set([
  "archive_command", "archive_cleanup_command", "restore_command", "recovery_end_command", "ssl_passphrase_command",
  "archive_library", "dynamic_library_path",
  // Where the server writes its log: a log file named authorized_keys in the OS user's ~/.ssh, its
  // lines chosen through a failed login's user name (re-review).
  "log_directory", "log_filename",
  // The postmaster truncates the file it names (relative: in the data directory), writes its pid into
  // it and makes it 0644 at every start: `global/pg_control` destroys each node's data directory as
  // it restarts (review).
  "external_pid_file",
]);

/**
 * Settings naming libraries the server loads: a name with a directory separator is loaded from
 * that path (`/tmp/x`, `$libdir/../../tmp/x`; jit_provider is appended to the library directory),
 * so a library any local user could place would run as the PostgreSQL user. A change of the
 * cluster-wide configuration may name libraries only, found in the library directory or through
 * dynamic_library_path (host-only). local_preload_libraries is left out: PostgreSQL itself loads it
 * from $libdir/plugins only.
 */
export const LIBRARY_KEYS: ReadonlySet<string> = new Set(["shared_preload_libraries", "session_preload_libraries", "jit_provider"]);

/** Whether a LIBRARY_KEYS value names a library by a path (a directory separator anywhere in it). */
export function namesLibraryPath(v: unknown): boolean {
  return typeof v === "string" && /[/\\]/.test(v);
}

/**
 * Settings [postgres.parameters] refuses that earlier versions accepted. A cluster-wide document one
 * of those stored or sent may hold them: there they are left out (the document still loads and
 * applies), never refused, so an upgrade does not drop the cluster's document for the first
 * leader's pgherd.toml. A change (`config set`/`edit`, PATCH /config) and pgherd.toml refuse them.
 */
export const LEFT_OUT_WHEN_STORED: ReadonlySet<string> = new Set(["recovery_target_timeline", "sync_replication_slots", ...RECOVERY_END_KEYS, ...LOCATION_KEYS]);

/** Whether a stored document's parameter `name` = `value` is left out (LEFT_OUT_WHEN_STORED, full_page_writes off). */
function leftOut(name: string, value: unknown): boolean {
  const lower = name.toLowerCase();
  return LEFT_OUT_WHEN_STORED.has(lower) || (lower === "full_page_writes" && pgBoolOff(value));
}

/** [postgres.parameters] of a stored or received cluster-wide document: as `parameters`, with LEFT_OUT_WHEN_STORED left out. */
export const storedParameters = z
  .record(z.string(), z.unknown())
  .transform((p) => Object.fromEntries(Object.entries(p).filter(([k, v]) => !leftOut(k, v))))
  .pipe(parameters);

/** The keys of a stored document's parameters that storedParameters leaves out (for the warning). */
export function leftOutWhenStored(raw: unknown): string[] {
  const p = (raw as { settings?: { postgres?: { parameters?: unknown } } } | null)?.settings?.postgres?.parameters;
  return p && typeof p === "object" ? Object.entries(p).filter(([k, v]) => leftOut(k, v)).map(([k]) => k) : [];
}

/** Linux sun_path holds 108 bytes with the final NUL; PostgreSQL refuses a longer socket path at start. */
const MAX_SOCKET_PATH = 107;

/** The unix socket directory the agent uses: postgres.socket_dir, else "<data_dir>.sock". */
export function socketDirOf(pg: { socket_dir: string; data_dir: string }): string {
  return pg.socket_dir || `${pg.data_dir}.sock`;
}

/** Why the socket directory cannot be rendered into unix_socket_directories, or "" when it can. */
export function socketDirProblem(dir: string, port: number): string {
  // unix_socket_directories is a comma-separated list with optional double quotes.
  if (/[,"]/.test(dir) || dir.trim() !== dir) return "must not contain commas or double quotes, nor start or end with a space";
  const socket = `${dir}/.s.PGSQL.${port}`;
  const bytes = Buffer.byteLength(socket);
  if (bytes > MAX_SOCKET_PATH) return `gives the socket path ${socket} of ${bytes} bytes: the limit is ${MAX_SOCKET_PATH}`;
  return "";
}
