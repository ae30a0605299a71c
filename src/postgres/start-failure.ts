// What ended a failed PostgreSQL start, as the server said it: the last FATAL or PANIC line it
// logged (the LOG, WARNING, DETAIL and HINT lines around it are not the cause), else the error's
// own message. The loop (src/agent/pg/loop.ts) compares it before and after an automatic rebuild:
// a start that a fresh clone failed the same way (a library not installed, memory, a setting the
// cluster runs) is not rebuilt again.
import { PgCtlError } from "./ctl.ts";

export function failedStartCause(e: unknown): string {
  return (lastFatal(e instanceof PgCtlError ? e.detail : "") ?? (e instanceof Error ? e.message : String(e))).slice(0, 300);
}

/** The last FATAL or PANIC line of a server log's text, as "FATAL: <message>"; null when none. */
export function lastFatal(log: string): string | null {
  let last: string | null = null;
  for (const line of log.split("\n")) {
    const m = /\b(FATAL|PANIC):\s+(.*)$/.exec(line);
    if (m) last = `${m[1]}: ${m[2]!.trim()}`;
  }
  return last;
}
