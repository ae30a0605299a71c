// Password generation and libpq passfiles. A passfile lets primary_conninfo, pg_basebackup and
// pg_rewind authenticate without the password ever being in a config file, argv or a log line.
import { randomBytes } from "node:crypto";
import { writeFileAtomic, type Owner } from "./fsutil.ts";

/** URL-safe base64 of `bytes` random bytes: ASCII only (SCRAM needs no SASLprep), no ':' or '\\'. */
export function generatePassword(bytes = 24): string {
  return randomBytes(bytes).toString("base64url");
}

export interface PassfileEntry {
  /** Host name/IP, "*" for any. */
  host: string;
  port: number | "*";
  database: string;
  user: string;
  password: string;
}

/** One line: host:port:db:user:pass with ':' and '\\' escaped as libpq expects. */
export function passfileLine(e: PassfileEntry): string {
  const esc = (s: string) => {
    // eslint-disable-next-line no-control-regex
    if (/[\r\n\x00]/.test(s)) throw new Error("passfile fields may not contain newlines or NUL");
    return s.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
  };
  const field = (s: string) => (s === "*" ? "*" : esc(s));
  return [field(e.host), e.port === "*" ? "*" : String(e.port), field(e.database), field(e.user), esc(e.password)].join(":");
}

export function renderPassfile(entries: ReadonlyArray<PassfileEntry>): string {
  return entries.map(passfileLine).join("\n") + "\n";
}

/** Write atomically, mode 0600 (libpq ignores a group/world-readable passfile), owned by os_user. */
export async function writePassfile(path: string, entries: ReadonlyArray<PassfileEntry>, owner?: Owner): Promise<boolean> {
  return writeFileAtomic(path, renderPassfile(entries), { mode: 0o600, owner });
}
