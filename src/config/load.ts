// pgherd.toml → validated, defaulted, deeply frozen Config. Every failure is a ConfigError
// whose lines start with the file's base name, so an operator sees what to fix and where.
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import { ConfigError, configErrorMap, issueLines } from "./errors.ts";
import { deepFreeze } from "./freeze.ts";
import { type Config, configSchema } from "./schema.ts";

export { ConfigError } from "./errors.ts";

export function parseConfig(text: string, fileLabel: string): Config {
  let raw: unknown;
  try {
    raw = parse(text, { unsafeKeyBehaviour: "throw" });
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    // smol-toml appends a code excerpt after a blank line; the first line is the reason.
    const reason = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
    throw new ConfigError([`${fileLabel}: TOML syntax error at line ${e.line} column ${e.column}: ${reason}`]);
  }
  const r = configSchema().safeParse(raw, { error: configErrorMap });
  if (!r.success) throw new ConfigError(issueLines(fileLabel, r.error.issues));
  return deepFreeze(r.data);
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "file not found",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a parent is not a directory",
};

/**
 * Why the agent must not trust this file, or "". It holds the cluster secret and says which
 * binaries the agent runs: only its owner may read or write it, and that owner is the agent's
 * own user or root.
 */
export function privacyProblem(st: { mode: number; uid: number; isFile(): boolean }, path: string, euid: number): string {
  if (!st.isFile()) return `${path} is not a regular file`;
  const mode = st.mode & 0o7777;
  if (mode & 0o077) {
    return `${path} has mode ${mode.toString(8).padStart(4, "0")}: it holds the cluster secret, so group and others must have no access (chmod 600 ${path})`;
  }
  if (st.uid !== euid && st.uid !== 0) {
    return `${path} is owned by uid ${st.uid}: whoever can write it controls this agent, so it must belong to root or to the agent's own user (uid ${euid})`;
  }
  return "";
}

/** The secret files a config names besides itself (TLS keys, the etcd password), by key: what readPrivateFile reads. */
export function secretFiles(cfg: Config): [string, string][] {
  const all: [string, string][] = [["api.tls_key", cfg.api.tls_key], ["consensus.tls_key", cfg.consensus.tls_key], ["consensus.password_file", cfg.consensus.password_file]];
  return all.filter(([, path]) => path !== "");
}

/**
 * What the agent would refuse in a secret file (`pgherd config check`): a link, a file it cannot
 * open, one group or others may read; the owner is judged as the file's own (the checker may be
 * another user than the agent). "" when fine.
 */
export function secretFileProblem(path: string, what: string): string {
  let fd: number;
  try {
    fd = openSecret(path, what);
  } catch (e) {
    return (e as Error).message;
  }
  try {
    const st = fstatSync(fd);
    return secretProblem(st, path, what, st.uid);
  } finally {
    closeSync(fd);
  }
}

/** Reads a secret file only its owner (this user or root) may read; never follows a link. `what` names it in errors. */
export function readPrivateFile(path: string, what: string): string {
  const fd = openSecret(path, what);
  try {
    const problem = secretProblem(fstatSync(fd), path, what, process.geteuid?.() ?? 0);
    if (problem) throw new Error(problem);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and validates a config file. `ownerOnly` (the agent) also refuses a file others may
 * read or write; commands that only look up api.listen do not need that.
 */
export function loadConfig(path: string, opts: { ownerOnly?: boolean } = {}): Config {
  return loadConfigOwned(path, opts).cfg;
}

/** loadConfig, and the uid of the file's owner (read from the descriptor the text came from). */
export function loadConfigOwned(path: string, opts: { ownerOnly?: boolean } = {}): { cfg: Config; owner: number } {
  const label = basename(path);
  const full = resolve(path);
  let text: string;
  let owner: number;
  let fd: number | undefined;
  try {
    // One descriptor for the check and the read: the file checked is the file read.
    fd = openSync(path, "r");
    const st = fstatSync(fd);
    owner = st.uid;
    const problem = opts.ownerOnly ? privacyProblem(st, full, process.geteuid?.() ?? 0) : "";
    if (problem) throw new ConfigError([`${label}: ${problem}`]);
    text = readFileSync(fd, "utf8");
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? "";
    const why = READ_ERRORS[code] ?? (e as Error).message;
    throw new ConfigError([`${label}: cannot read config file ${full}: ${why}`]);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return { cfg: parseConfig(text, label), owner };
}

/**
 * Opens a secret file for reading without following a link; errors name the key. Only a regular
 * file is opened at all (opening a device can act: /dev/watchdog arms the host's watchdog; a FIFO
 * blocks), and the file opened is the one looked at (same device and inode).
 */
function openSecret(path: string, what: string): number {
  let fd: number | undefined;
  try {
    const seen = lstatSync(path);
    if (seen.isSymbolicLink()) throw Object.assign(new Error("link"), { code: "ELOOP" });
    if (!seen.isFile()) throw new Error(`${path} is not a regular file`);
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    const st = fstatSync(fd);
    if (st.dev !== seen.dev || st.ino !== seen.ino) throw new Error(`${path} was replaced while it was opened`);
    return fd;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ELOOP" ? `${path} is a symbolic link (the agent opens it without following links)` : code === "ENOENT" ? `${path}: no such file` : (e as Error).message;
    throw new Error(`${what}: ${why}`);
  }
}

/** privacyProblem for a secret file other than the config, named by its key; "" when fine. */
function secretProblem(st: { mode: number; uid: number; isFile(): boolean }, path: string, what: string, euid: number): string {
  const problem = privacyProblem(st, path, euid);
  return problem ? `${what}: ${problem.replace("the cluster secret", "a secret")}` : "";
}
