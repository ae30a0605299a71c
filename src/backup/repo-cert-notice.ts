// The repository host's certificate ([backup] repo_host): `pgherd backup repo-cert` makes it, valid
// 90 days like the nodes' own, and only an operator renews it (on that host). What is said about
// the certificate that host presents, and when it is read again. Pure: time passed in.
import type { PeerCert } from "../tls/peer-cert.ts";
import { RENEW_BEFORE_MS } from "../tls/plan.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Read once a day; again an hour after a read that failed (the host down, a refused handshake). */
export const REPO_CERT_CHECK_EVERY_MS = DAY;
export const REPO_CERT_RETRY_MS = HOUR;

export const REPO_CERT_RENEWAL = "run `pgherd backup repo-cert` on a node, copy its ca.crt, pgbackrest.crt and pgbackrest.key to the " +
  "repository host and reload its pgbackrest server (SIGHUP)";

/** Whether to read the certificate now; `last`: the previous read (when, and whether it got one), null: none yet. */
export function repoCertCheckDue(now: number, last: { atMs: number; ok: boolean } | null): boolean {
  if (!last) return true;
  return now - last.atMs >= (last.ok ? REPO_CERT_CHECK_EVERY_MS : REPO_CERT_RETRY_MS);
}

/**
 * What to say about the certificate `at` (host:port) presents: a warning when the nodes refuse it
 * (another CA's, not naming the host they dial, expired) or will within RENEW_BEFORE_MS (the window
 * in which the nodes renew their own certificates).
 */
export function repoCertStatus(now: number, c: Pick<PeerCert, "notAfterMs" | "signedByCa" | "namesHost">, at: string): { warn: boolean; text: string } {
  const date = new Date(c.notAfterMs).toISOString();
  const what = `the repository host's certificate (${at})`;
  if (!c.signedByCa) return { warn: true, text: `${what} is not signed by the cluster CA: the nodes refuse it; ${REPO_CERT_RENEWAL}` };
  if (!c.namesHost) return { warn: true, text: `${what} does not name that host among its DNS names (made with another --host?): the nodes refuse it; ${REPO_CERT_RENEWAL}` };
  if (now >= c.notAfterMs) return { warn: true, text: `${what} expired at ${date}: the nodes can no longer archive or restore through it; ${REPO_CERT_RENEWAL}` };
  const left = c.notAfterMs - now;
  if (left <= RENEW_BEFORE_MS) return { warn: true, text: `${what} expires in ${Math.ceil(left / DAY)} day(s), at ${date}: ${REPO_CERT_RENEWAL}` };
  return { warn: false, text: `${what} is valid until ${date} (${Math.floor(left / DAY)} days)` };
}
