// pgherd.toml → validated, defaulted, deeply frozen Config. Every failure is a ConfigError
// whose lines start with the file's base name, so an operator sees what to fix and where.
import { readFileSync } from "node:fs";
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
  const r = configSchema.safeParse(raw, { error: configErrorMap });
  if (!r.success) throw new ConfigError(issueLines(fileLabel, r.error.issues));
  return deepFreeze(r.data);
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "file not found",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a parent is not a directory",
};

export function loadConfig(path: string): Config {
  const label = basename(path);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    const why = READ_ERRORS[code] ?? (e as Error).message;
    throw new ConfigError([`${label}: cannot read config file ${resolve(path)}: ${why}`]);
  }
  return parseConfig(text, label);
}
