// What a test needs from this machine (root, PostgreSQL, namespaces, HAProxy, Chromium). A test
// whose real component is missing fails with a message naming it: never a silent skip, so a run
// cannot pass with parts of the suite left out. `npm test` as root on Debian installs the system
// packages first (scripts/system-packages.sh).

const HINT = "run the tests as root on Debian: `npm test` installs the system packages (scripts/system-packages.sh)";

/** Throws when `missing` names what is missing. Call it at the top of a test file (the file fails) or inside a test. */
export function requireReal(what: string, missing: string | null | undefined, hint = HINT): void {
  if (missing) throw new Error(`${what} cannot run here: ${missing}; ${hint}`);
}
