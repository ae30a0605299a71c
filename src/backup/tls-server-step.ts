// What the agent does each round with its running `pgbackrest server` when the CA or certificate on
// disk may not be the ones it serves (tls-server.ts carries it out). Pure.
//
// pgBackRest's server (src/command/server/server.c, 2.37 and later) installs its SIGHUP handler
// only after it has loaded its config, bound its port and read its TLS files; before that the
// handler every pgbackrest command starts with (src/command/exit.c) ends the process on SIGHUP. It
// calls accept() only after that, and the TLS handshake happens in the child
// it forks per connection, so a handshake with it proves the handler is there. On SIGHUP it only
// sets a flag; its accept loop then re-reads its config (pgbackrest.conf and its arguments), and
// builds its socket (the port bound again) and TLS server anew; the children serving sessions under
// way are not signalled (they are sent SIGTERM only when the server gets SIGTERM).

/** The first pgBackRest release with `pgbackrest server` (and its SIGHUP reload). */
export const SERVER_SINCE: readonly [number, number] = [2, 37];

/** What `pgbackrest version` printed, when that pgBackRest has no server (else null; unreadable: null, its start will tell). */
export function serverVersionProblem(versionOutput: string): string | null {
  const m = /pgBackRest (\d+)\.(\d+)/.exec(versionOutput);
  if (!m) return null;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major > SERVER_SINCE[0] || (major === SERVER_SINCE[0] && minor >= SERVER_SINCE[1])) return null;
  return `pgBackRest ${major}.${minor} has no \`pgbackrest server\` (${SERVER_SINCE.join(".")} and later): not started; ` +
    "backups from a standby and a repository host need it on every node (install pgBackRest " + SERVER_SINCE.join(".") + " or later and restart the agent)";
}

/** Checks after a SIGHUP that may not show the new certificate before the server is restarted. */
export const RELOAD_TRIES = 3;

/**
 * How long after its start, and after how many failed handshakes, a server no handshake has reached
 * is restarted when a renewal waits for it: one the agent cannot reach at its own address (a
 * tls_address bound to another address family, loopback without IPv6) would otherwise keep its old
 * certificate until it expires, unsaid. A minute leaves a slow start on a loaded host its time.
 */
export const READY_MS = 60_000;
export const READY_TRIES = 3;

export interface ServerView {
  /** The CA and certificate on disk. */
  files: string;
  /** The CA and certificate it is known to serve: those at its start, or at a reload it was seen to take. */
  serving: string;
  /** A TLS handshake with it succeeded since its start. */
  ready: boolean;
  /** A handshake with it is under way. */
  checking: boolean;
  /** The files it was sent SIGHUP for and not yet seen to serve; null: none. */
  reloadedFor: string | null;
  /** The fingerprint of the certificate on disk (looked at only while reloadedFor is set). */
  onDisk: string;
  /** The fingerprint it presented at the last handshake since the SIGHUP; null: none, or it failed. */
  presented: string | null;
  /** Handshakes started since the SIGHUP. */
  tries: number;
  /** Handshakes that failed since its start, while not ready. */
  unready: number;
  /** Milliseconds since its start (monotonic). */
  upMs: number;
}

export type ServerStep =
  | { do: "nothing" }
  /** A handshake with it: whether it is ready, or presents the new certificate. */
  | { do: "check" }
  /** SIGHUP. */
  | { do: "reload" }
  /** It presents the certificate on disk: the files are served. */
  | { do: "reloaded" }
  /** SIGTERM (it is started again when it has exited), and why. */
  | { do: "restart"; why: string };

export function serverStep(v: ServerView): ServerStep {
  if (v.checking) return { do: "nothing" };
  if (v.reloadedFor !== null) {
    if (v.reloadedFor !== v.files) return { do: "reload" }; // renewed again since the SIGHUP
    if (v.presented === v.onDisk) return { do: "reloaded" };
    if (v.tries >= RELOAD_TRIES) {
      return { do: "restart", why: `${v.tries} handshakes since its SIGHUP did not show the new certificate (${v.presented === null ? "the last one failed" : "it still presents another"})` };
    }
    return { do: "check" };
  }
  if (v.files === v.serving) return { do: "nothing" };
  if (v.ready) return { do: "reload" };
  if (v.unready >= READY_TRIES && v.upMs >= READY_MS) {
    return { do: "restart", why: `no TLS handshake with it succeeded in ${Math.round(v.upMs / 1000)} s since its start (${v.unready} tries; is its tls_address reachable from this host?), so it cannot be sent SIGHUP safely` };
  }
  return { do: "check" };
}
