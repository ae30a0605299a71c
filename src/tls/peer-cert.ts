// The certificate a TLS server presents, read without presenting one: a handshake, then close.
// Nothing is sent but the handshake, so no credential leaves this host and the server's certificate
// need not be trusted yet (it is checked against the CA given, and only its dates, the host names
// and its fingerprint are read). pgBackRest's server takes a client without a certificate as a
// check that it runs: it answers and hangs up, and logs nothing above "detail". Under its own
// deadline (never a socket timeout: Bun).
import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import type { CertFacts } from "./plan.ts";

export type PeerCert = Pick<CertFacts, "notAfterMs" | "signedByCa"> & {
  /** Whether it names the host dialed as pgBackRest checks it: a DNS name (an IP address as its text), the common name only without any subjectAltName. */
  namesHost: boolean;
  /** SHA-256 fingerprint (node:crypto's X509Certificate.fingerprint256). */
  fingerprint256: string;
};

/** The certificate `host:port` presents: when it ends, and whether `caPem` signed it. Rejects on no answer within `timeoutMs`. */
export function peerCert(host: string, port: number, caPem: string, timeoutMs: number): Promise<PeerCert> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, rejectUnauthorized: false });
    let settled = false;
    const done = (err: Error | null, cert?: PeerCert) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(cert!);
    };
    const timer = setTimeout(() => done(new Error(`no TLS handshake with ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    timer.unref(); // a read under way does not hold the agent's exit
    // `on`, not `once`: a second error event (after destroy) with no listener would be thrown.
    sock.on("error", (e) => done(e));
    sock.once("secureConnect", () => {
      try {
        const raw = sock.getPeerCertificate(true)?.raw;
        if (!raw?.length) return done(new Error(`${host}:${port} presented no certificate`));
        const x = new X509Certificate(raw);
        const ca = new X509Certificate(caPem);
        const notAfterMs = x.validToDate.getTime();
        if (!Number.isFinite(notAfterMs)) return done(new Error(`${host}:${port} presented a certificate without a readable end date (${x.validTo})`));
        // pgBackRest (tlsClientHostVerify) matches only DNS entries of the subjectAltName, and the
        // common name only when there is no DNS entry: node's checkHost with subject "default" does
        // the same (an IP address is matched as the text of a DNS entry, never against an IP entry).
        const namesHost = x.checkHost(host.replace(/^\[|\]$/g, ""), { subject: "default" }) !== undefined;
        done(null, { notAfterMs, signedByCa: x.checkIssued(ca) && x.verify(ca.publicKey), namesHost, fingerprint256: x.fingerprint256 });
      } catch (e) {
        done(e as Error);
      }
    });
  });
}
