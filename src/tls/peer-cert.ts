// The certificate a TLS server presents, read without presenting one: a handshake, then close.
// Nothing is sent but the handshake, so no credential leaves this host and the server's certificate
// need not be trusted yet (it is checked against the CA given, and only its dates are read).
// pgBackRest's server takes a client without a certificate as a check that it runs: it answers and
// hangs up, and logs nothing above "detail". Under its own deadline (never a socket timeout: Bun).
import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import type { CertFacts } from "./plan.ts";

export type PeerCert = Pick<CertFacts, "notAfterMs" | "signedByCa">;

/** The certificate `host:port` presents: when it ends, and whether `caPem` signed it. Rejects on no answer within `timeoutMs`. */
export function peerCert(host: string, port: number, caPem: string, timeoutMs: number): Promise<PeerCert> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, rejectUnauthorized: false });
    const done = (err: Error | null, cert?: PeerCert) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(cert!);
    };
    const timer = setTimeout(() => done(new Error(`no TLS handshake with ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.once("error", (e) => done(e));
    sock.once("secureConnect", () => {
      try {
        const raw = sock.getPeerCertificate(true)?.raw;
        if (!raw?.length) return done(new Error(`${host}:${port} presented no certificate`));
        const x = new X509Certificate(raw);
        const ca = new X509Certificate(caPem);
        done(null, { notAfterMs: Date.parse(x.validTo), signedByCa: x.checkIssued(ca) && x.verify(ca.publicKey) });
      } catch (e) {
        done(e as Error);
      }
    });
  });
}
