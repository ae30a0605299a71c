// Replication TLS, the pure parts: which names a node certificate carries and when it is replaced
// (time passed in), plus the certificates the in-process builder makes, checked by node:crypto
// and by the openssl CLI (an independent X.509 implementation) when it is installed.
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BACKDATE_MS, canonicalIp, NODE_CERT_LIFETIME_MS, RENEW_BEFORE_MS, renewal, sanList, type CertFacts } from "../../src/tls/plan.ts";
import { certFacts, createCa, issueNodeCert } from "../../src/tls/x509.ts";

const DAY = 86_400_000;
const T0 = Date.parse("2026-12-01T12:00:00Z");

describe("sanList", () => {
  test("interface and configured addresses, canonical, sorted, no wildcard or link-local, names lower-cased", () => {
    expect(sanList(["10.0.0.2", "*", "0.0.0.0", "::", "::1", "fe80::1", "[fd00::2]", "10.0.0.2", " 127.0.0.1 ", "DB1.example.com", "bad name", ""]))
      .toEqual([{ ip: "0:0:0:0:0:0:0:1" }, { ip: "10.0.0.2" }, { ip: "127.0.0.1" }, { ip: "fd00:0:0:0:0:0:0:2" }, { dns: "db1.example.com" }]);
  });

  test("IPv6 forms are one address; malformed addresses are not IPs", () => {
    expect(canonicalIp("fd00:0::0:2")).toBe("fd00:0:0:0:0:0:0:2");
    expect(canonicalIp("::ffff:10.0.0.1")).toBe("0:0:0:0:0:ffff:a00:1");
    for (const bad of ["10.0.0.256", "10.0.0", "01.0.0.1", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1", "fe80::1%eth0"]) expect(canonicalIp(bad)).toBeNull();
  });
});

describe("renewal (time passed in)", () => {
  const want = sanList(["10.0.0.2", "127.0.0.1"]);
  const good: CertFacts = { notBeforeMs: T0 - BACKDATE_MS, notAfterMs: T0 + NODE_CERT_LIFETIME_MS, sans: want, signedByCa: true, keyMatches: true };

  test("kept while more than RENEW_BEFORE (a third of its 90 days) remains, renewed from then on", () => {
    expect(RENEW_BEFORE_MS * 3).toBe(NODE_CERT_LIFETIME_MS);
    expect(renewal(T0, good, want)).toEqual({ renew: false });
    const lastKeep = good.notAfterMs - RENEW_BEFORE_MS - 1;
    expect(renewal(lastKeep, good, want)).toEqual({ renew: false });
    expect(renewal(lastKeep + 1, good, want)).toEqual({ renew: true, reason: "expires in 30 day(s)" });
  });

  test("expired: replaced", () => {
    expect(renewal(good.notAfterMs, good, want)).toEqual({ renew: true, reason: "expired" });
    expect(renewal(good.notAfterMs + DAY, good, want)).toEqual({ renew: true, reason: "expired" });
  });

  test("missing: issued", () => {
    expect(renewal(T0, null, want)).toEqual({ renew: true, reason: "no certificate yet" });
  });

  test("signed by another CA (the cluster CA changed): replaced", () => {
    expect(renewal(T0, { ...good, signedByCa: false }, want)).toEqual({ renew: true, reason: "not signed by the cluster CA" });
  });

  test("a key that is not the certificate's: replaced", () => {
    expect(renewal(T0, { ...good, keyMatches: false }, want)).toEqual({ renew: true, reason: "the key does not match the certificate" });
  });

  test("not valid yet (the clock went back): replaced", () => {
    expect(renewal(good.notBeforeMs - 1, good, want)).toMatchObject({ renew: true, reason: expect.stringContaining("not valid yet") });
  });

  test("an address it does not name: replaced", () => {
    expect(renewal(T0, good, sanList(["10.0.0.2", "127.0.0.1", "10.0.0.9"]))).toEqual({ renew: true, reason: "does not name IP:10.0.0.9" });
  });

  test("an address that went away does not make it flap: a certificate naming more is kept", () => {
    expect(renewal(T0, good, sanList(["10.0.0.2"]))).toEqual({ renew: false });
  });
});

describe("certificates built in process", () => {
  const ca = createCa("demo", T0);
  const other = createCa("demo", T0);
  const want = sanList(["10.0.0.2", "::1", "db1.example.com"]);
  const node = issueNodeCert(ca, "n1", want, T0);

  test("the node certificate names its addresses, is signed by the cluster CA, backdated, and its key matches", () => {
    const f = certFacts(node.cert, node.key, ca.cert)!;
    expect(f).toEqual({ notBeforeMs: T0 - BACKDATE_MS, notAfterMs: T0 + NODE_CERT_LIFETIME_MS, sans: want, signedByCa: true, keyMatches: true });
    expect(renewal(T0, f, want)).toEqual({ renew: false });
    const x = new X509Certificate(node.cert);
    expect(x.ca).toBe(false);
    expect(x.subject).toBe("CN=n1");
    expect(x.checkIP("10.0.0.2")).toBe("10.0.0.2");
    expect(x.checkIP("10.0.0.3")).toBeUndefined();
    expect(new X509Certificate(ca.cert).ca).toBe(true);
  });

  test("another CA's certificate and a key that does not belong are seen as such", () => {
    const foreign = issueNodeCert(other, "n1", want, T0);
    expect(certFacts(foreign.cert, foreign.key, ca.cert)?.signedByCa).toBe(false);
    expect(certFacts(node.cert, foreign.key, ca.cert)?.keyMatches).toBe(false);
    expect(certFacts(node.cert, null, ca.cert)?.keyMatches).toBe(false);
    expect(certFacts("garbage", node.key, ca.cert)).toBeNull();
  });

  test.skipIf(!Bun.which("openssl"))("openssl verifies the chain strictly for TLS server use, and rejects another CA", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgherd-tls-"));
    try {
      writeFileSync(join(dir, "ca.crt"), ca.cert);
      writeFileSync(join(dir, "other.crt"), other.cert);
      writeFileSync(join(dir, "node.crt"), node.cert);
      const verify = (caFile: string) => Bun.spawnSync(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-attime", String(T0 / 1000), "-CAfile", join(dir, caFile), join(dir, "node.crt")]);
      const ok = verify("ca.crt");
      expect(`${ok.exitCode} ${ok.stdout.toString().trim()}`).toBe(`0 ${join(dir, "node.crt")}: OK`);
      expect(verify("other.crt").exitCode).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
