// Ambient capabilities stop at the agent. docs/vip.md grants the agent (the PostgreSQL OS user)
// CAP_NET_ADMIN and CAP_NET_RAW as ambient capabilities for the virtual IP's `ip addr` and
// `arping`. Linux keeps ambient capabilities across execve, so every program the agent starts would
// hold them too: PostgreSQL through pg_ctl (and with it any superuser's archive_command or COPY TO
// PROGRAM), initdb, pg_basebackup, pg_rewind, pgBackRest, hooks, the PCP tools, getent.
// `withoutAmbientCaps` gives the argv for such a program: unchanged when this process holds no
// ambient capability (the common case: no extra exec), else run through util-linux's setpriv,
// which empties the inheritable and ambient sets and then execs the program, so a program without
// file capabilities starts with none. Without setpriv it throws rather than pass them on.
//
// Started with the capabilities, on purpose: ip and arping (integrations/vip.ts,
// fence/vip-release.ts) and the fencing watchdog (fence/lease-file.ts, pgherd itself: it removes
// the address at a fence). Not wrapped: what PostgreSQL runs (wal-push under archive_command:
// PostgreSQL started through this has nothing to pass on), and what an operator's own shell runs
// (the CLI's $EDITOR, install's systemctl, the demo's agents, which are pgherd and do this themselves).
import { existsSync, readFileSync } from "node:fs";

/** util-linux's setpriv (Essential on Debian; /bin is a link to /usr/bin). A fixed path: never PATH. */
export const SETPRIV = "/usr/bin/setpriv";
const DROP = ["--inh-caps=-all", "--ambient-caps=-all", "--"];

/** The CapAmb mask of a /proc/<pid>/status text; 0n without the line (kernels before 4.3 have no ambient set). */
export function ambientMask(status: string): bigint {
  const m = /^CapAmb:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

let own: bigint | undefined;
/** This process's ambient set, read once (pgherd never changes it). Unreadable: taken as held, so children go through setpriv. */
function ownMask(): bigint {
  if (own === undefined) {
    try {
      own = ambientMask(readFileSync("/proc/self/status", "utf8"));
    } catch {
      own = -1n;
    }
  }
  return own;
}

/**
 * The argv that starts `argv` without this process's ambient capabilities: `argv` itself when it
 * holds none, else `setpriv --inh-caps=-all --ambient-caps=-all -- ...argv`. Throws when it holds
 * some and `setpriv` is missing. `status` (a /proc/self/status text) is for tests.
 */
export function withoutAmbientCaps(argv: readonly [string, ...string[]], status?: string, setpriv = SETPRIV): [string, ...string[]] {
  const mask = status === undefined ? ownMask() : ambientMask(status);
  if (mask === 0n) return [...argv];
  if (!existsSync(setpriv)) {
    const held = mask < 0n ? "may hold ambient capabilities (/proc/self/status is unreadable)" : `holds ambient capabilities (CapAmb ${mask.toString(16).padStart(16, "0")})`;
    throw new Error(`${argv[0]} not started: this process ${held}, which every program it starts would inherit, and ${setpriv} (util-linux), which drops them, is missing: install util-linux, or remove AmbientCapabilities from the agent's unit (docs/vip.md)`);
  }
  return [setpriv, ...DROP, ...argv];
}
