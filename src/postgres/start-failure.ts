// Whether a failed PostgreSQL start would fail the same way on a fresh copy of the data: a setting
// PostgreSQL refuses, a library that is not installed, memory, the port, another server on the data
// directory, a full disk. Rebuilding a standby (a base backup of the whole database) for such a
// failure only copies everything again, and again at the next three failed starts. Read from what
// ctl.ts classified and from the server's own FATAL lines (LC_ALL=C: English).
import { PgCtlError } from "./ctl.ts";

/** Messages of causes a clone carries over or that lie outside the data directory. */
const SAME_ON_A_COPY: readonly RegExp[] = [
  /could not (map|create) (anonymous )?shared memory/i, // shared_buffers and the like: the host's memory
  /\bout of memory\b/i,
  /could not access file "[^"]*": No such file or directory/, // shared_preload_libraries: not installed here
  /could not load library/,
  /invalid value for parameter|unrecognized configuration parameter|configuration file "[^"]*" contains errors/,
  /insufficient parameter settings|is a lower setting than on the (primary|master) server/, // the copy's pg_control holds the same values
  /Address already in use|could not create (any TCP\/IP|Unix-domain) sockets?|could not bind/,
  /lock file "[^"]*" already exists/,
  /No space left on device/,
  /too many open files|could not open shared memory segment/i,
  /could not (load|open) (server certificate|private key|root certificate|certificate revocation)|private key file "[^"]*" has group or world access/,
  /could not load (pg_hba|pg_ident)\.conf/,
];

/**
 * The PostgreSQL line saying why the start failed, when a fresh clone would fail the same way;
 * null when it is about the data (a clone may help) or not known.
 */
export function sameOnFreshCopy(e: unknown): string | null {
  if (!(e instanceof PgCtlError)) return null;
  if (e.kind === "port-in-use" || e.kind === "already-running") return e.message;
  if (e.kind !== "start-failed") return null;
  for (const line of `${e.detail}\n${e.message}`.split("\n")) {
    if (SAME_ON_A_COPY.some((re) => re.test(line))) return line.replace(/^.*?(FATAL|PANIC|ERROR|LOG):\s+/, "").trim().slice(0, 300);
  }
  return null;
}
