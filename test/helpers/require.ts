// What a test needs from this machine (root, PostgreSQL, namespaces, HAProxy, Chromium). A test
// whose real component is missing fails with a message naming it: never a silent skip, so a run
// cannot pass with parts of the suite left out. `npm test` as root on Debian installs the system
// packages first (scripts/system-packages.sh).

import { rootWithoutPtrace } from "../../src/postgres/orphans.ts";
import { isRoot } from "../../src/postgres/users.ts";

const HINT = "run the tests as root on Debian: `npm test` installs the system packages (scripts/system-packages.sh)";

/** Throws when `missing` names what is missing. Call it at the top of a test file (the file fails) or inside a test. */
export function requireReal(what: string, missing: string | null | undefined, hint = HINT): void {
  if (missing) throw new Error(`${what} cannot run here: ${missing}; ${hint}`);
}

/**
 * What a test that acts on the postgres OS user's processes lacks: root, and with it CAP_SYS_PTRACE
 * (their /proc links are read before any signal: src/postgres/orphans.ts); null when it has both.
 */
export function rootWithPtraceMissing(): string | null {
  if (!isRoot()) return "needs root";
  return rootWithoutPtrace() ? "root without CAP_SYS_PTRACE cannot read another user's /proc links (a container's default): run the tests with it" : null;
}
