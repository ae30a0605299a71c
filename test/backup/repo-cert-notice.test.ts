// What the agent and `pgherd backup ls` say about the repository host's certificate, and when the
// agent reads it again (pure, time passed in). Found by review: that certificate (90 days, renewed
// only by an operator) ended with no warning; every node's archiving then fails.
import { describe, expect, test } from "bun:test";
import { REPO_CERT_CHECK_EVERY_MS, REPO_CERT_RETRY_MS, repoCertCheckDue, repoCertStatus } from "../../src/backup/repo-cert-notice.ts";
import { RENEW_BEFORE_MS } from "../../src/tls/plan.ts";

const DAY = 86_400_000;
const T0 = Date.parse("2027-01-10T12:00:00Z");
const AT = "10.0.0.9:8432";

describe("repoCertCheckDue", () => {
  test("never read: read now", () => {
    expect(repoCertCheckDue(T0, null)).toBe(true);
  });

  test("read: again a day later, not before", () => {
    const last = { atMs: T0, ok: true };
    expect(repoCertCheckDue(T0 + REPO_CERT_CHECK_EVERY_MS - 1, last)).toBe(false);
    expect(repoCertCheckDue(T0 + REPO_CERT_CHECK_EVERY_MS, last)).toBe(true);
    expect(REPO_CERT_CHECK_EVERY_MS).toBe(DAY);
  });

  test("the read failed: again an hour later, not before", () => {
    const last = { atMs: T0, ok: false };
    expect(repoCertCheckDue(T0 + REPO_CERT_RETRY_MS - 1, last)).toBe(false);
    expect(repoCertCheckDue(T0 + REPO_CERT_RETRY_MS, last)).toBe(true);
  });
});

describe("repoCertStatus", () => {
  test("more than RENEW_BEFORE (30 days) left: no warning, the end date and the whole days left", () => {
    expect(repoCertStatus(T0, { notAfterMs: T0 + RENEW_BEFORE_MS + 1, signedByCa: true, namesHost: true }, AT))
      .toEqual({ warn: false, text: "the repository host's certificate (10.0.0.9:8432) is valid until 2027-02-09T12:00:00.001Z (30 days)" });
  });

  test("RENEW_BEFORE or less left: a warning with the days left and how to renew", () => {
    const s = repoCertStatus(T0, { notAfterMs: T0 + RENEW_BEFORE_MS, signedByCa: true, namesHost: true }, AT);
    expect(s).toEqual({ warn: true, text: expect.stringContaining("(10.0.0.9:8432) expires in 30 day(s), at 2027-02-09T12:00:00.000Z: run `pgherd backup repo-cert`") });
    expect(repoCertStatus(T0, { notAfterMs: T0 + DAY / 2, signedByCa: true, namesHost: true }, AT).text).toContain("expires in 1 day(s)");
  });

  test("expired: a warning that the nodes can no longer archive or restore through it", () => {
    expect(repoCertStatus(T0, { notAfterMs: T0, signedByCa: true, namesHost: true }, AT))
      .toEqual({ warn: true, text: expect.stringContaining("expired at 2027-01-10T12:00:00.000Z: the nodes can no longer archive or restore through it; run `pgherd backup repo-cert`") });
  });

  test("not signed by the cluster CA (the CA changed): a warning, whatever its dates", () => {
    expect(repoCertStatus(T0, { notAfterMs: T0 + 80 * DAY, signedByCa: false, namesHost: true }, AT))
      .toEqual({ warn: true, text: expect.stringContaining("is not signed by the cluster CA: the nodes refuse it; run `pgherd backup repo-cert`") });
  });

  test("not naming the host the nodes dial (made with another --host): a warning, whatever its dates", () => {
    expect(repoCertStatus(T0, { notAfterMs: T0 + 80 * DAY, signedByCa: true, namesHost: false }, AT))
      .toEqual({ warn: true, text: expect.stringContaining("(10.0.0.9:8432) does not name that host among its DNS names (made with another --host?): the nodes refuse it; run `pgherd backup repo-cert`") });
  });
});
