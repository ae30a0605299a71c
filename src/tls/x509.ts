// The cluster CA and node certificates, built in process (ECDSA P-256, SHA-256): keys are made by
// node:crypto and never written anywhere but their final 0600 file, and validity is exact (time
// passed in, backdated for peers whose clock is behind). Reading uses node:crypto X509Certificate.
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import { bits, bool, children, explicit, implicit, octets, oid, seq, set, time, uint, utf8, type Der } from "./der.ts";
import { CA_LIFETIME_MS, canonicalIp, ipBytes, validity, type CertFacts, type San } from "./plan.ts";

/** A certificate and its private key, both PEM. */
export interface CertAndKey {
  cert: string;
  key: string;
}

const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));
const CN = "2.5.4.3";

function name(cn: string): Der {
  return seq(set(seq(oid(CN), utf8(cn))));
}

function ext(id: string, critical: boolean, value: Der): Der {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

function keyId(spki: Der): Der {
  return createHash("sha256").update(spki).digest().subarray(0, 20);
}

function pem(label: string, der: Der): string {
  const b64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function der(pemText: string): Uint8Array {
  return new Uint8Array(new X509Certificate(pemText).raw);
}

/** The subject Name of a certificate exactly as encoded (the issuer of what it signs must match byte for byte). */
function subjectOf(certDer: Der): Der {
  const tbs = children(certDer, 0)[0]!;
  const f = children(certDer, tbs[0]);
  // version [0], serial, signature, issuer, validity, subject
  const [s, e] = f[(certDer[f[0]![0]] === 0xa0 ? 5 : 4)]!;
  return certDer.subarray(s, e);
}

interface Spec {
  subject: string;
  issuer: Der;
  signer: KeyObject;
  /** The issuer's key identifier (authorityKeyIdentifier); absent for a self-signed CA. */
  issuerKeyId?: Der;
  publicKey: KeyObject;
  notBeforeMs: number;
  notAfterMs: number;
  ca: boolean;
  sans: ReadonlyArray<San>;
}

function build(s: Spec): string {
  const spki = new Uint8Array(s.publicKey.export({ type: "spki", format: "der" }));
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const exts: Der[] = [
    ext("2.5.29.19", true, s.ca ? seq(bool(true)) : seq()),
    // CA: keyCertSign + cRLSign (bits 5, 6); node: digitalSignature (bit 0).
    ext("2.5.29.15", true, s.ca ? bits(Uint8Array.of(0x06), 1) : bits(Uint8Array.of(0x80), 7)),
    ext("2.5.29.14", false, octets(keyId(spki))),
  ];
  if (s.issuerKeyId) exts.push(ext("2.5.29.35", false, seq(implicit(0, s.issuerKeyId))));
  if (!s.ca) exts.push(ext("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))));
  if (s.sans.length) {
    exts.push(ext("2.5.29.17", false, seq(...s.sans.map((n) => ("ip" in n ? implicit(7, Uint8Array.from(ipBytes(n.ip) ?? [])) : implicit(2, new TextEncoder().encode(n.dns)))))));
  }
  const tbs = seq(
    explicit(0, uint(Uint8Array.of(2))),
    uint(serial),
    ECDSA_SHA256,
    s.issuer,
    seq(time(s.notBeforeMs), time(s.notAfterMs)),
    name(s.subject),
    spki,
    explicit(3, seq(...exts)),
  );
  const sig = sign("sha256", tbs, s.signer);
  return pem("CERTIFICATE", seq(tbs, ECDSA_SHA256, bits(new Uint8Array(sig))));
}

function newKey(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

/** A new self-signed cluster CA named after the cluster. */
export function createCa(cluster: string, now: number): CertAndKey {
  const k = newKey();
  const subject = `pgherd CA ${cluster} ${randomBytes(4).toString("hex")}`;
  const cert = build({
    subject, issuer: name(subject), signer: k.privateKey, publicKey: k.publicKey,
    notBeforeMs: now - 3_600_000, notAfterMs: now + CA_LIFETIME_MS, ca: true, sans: [],
  });
  return { cert, key: k.privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** A node (server and client) certificate for `sans`, signed by `ca`, valid from `now` (backdated). */
export function issueNodeCert(ca: CertAndKey, node: string, sans: ReadonlyArray<San>, now: number, lifetimeMs?: number): CertAndKey {
  const k = newKey();
  const caDer = der(ca.cert);
  const caSpki = new Uint8Array(new X509Certificate(ca.cert).publicKey.export({ type: "spki", format: "der" }));
  const v = validity(now, lifetimeMs);
  const cert = build({
    subject: node, issuer: subjectOf(caDer), signer: createPrivateKey(ca.key), issuerKeyId: keyId(caSpki),
    publicKey: k.publicKey, ...v, ca: false, sans,
  });
  return { cert, key: k.privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** What renewal() needs to know about a certificate on disk (`key`: the key file beside it). */
export function certFacts(certPem: string, keyPem: string | null, caPem: string): CertFacts | null {
  let c: X509Certificate;
  try {
    c = new X509Certificate(certPem);
  } catch {
    return null;
  }
  const ca = new X509Certificate(caPem);
  let keyMatches = false;
  try {
    keyMatches = keyPem !== null && c.checkPrivateKey(createPrivateKey(keyPem));
  } catch { /* unreadable key: replace both */ }
  const sans: San[] = [];
  for (const part of (c.subjectAltName ?? "").split(", ")) {
    const m = /^(IP Address|DNS):(.+)$/.exec(part);
    if (m?.[1] === "DNS") sans.push({ dns: m[2]!.toLowerCase() });
    else if (m) {
      const ip = canonicalIp(m[2]!);
      if (ip) sans.push({ ip });
    }
  }
  return {
    notBeforeMs: Date.parse(c.validFrom), notAfterMs: Date.parse(c.validTo), sans,
    signedByCa: c.checkIssued(ca) && c.verify(ca.publicKey), keyMatches,
  };
}

/** The CA's fingerprint for log lines ("AB:CD:…", SHA-256). */
export function fingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}
