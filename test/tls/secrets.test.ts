// The cluster CA travels with the cluster secrets: persisted 0600 with them, kept when a message
// without one arrives, accepted in a mesh message only as one PEM certificate and one PEM key.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentMsgSchema } from "../../src/agent/messages.ts";
import { SecretsStore } from "../../src/store/cluster-secrets.ts";
import { createCa } from "../../src/tls/x509.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-secrets-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ca = createCa("t", Date.now());
const base = { systemId: "7312345678901234567", replPassword: "r".repeat(32), monitorPassword: "m".repeat(32) };

describe("cluster CA in the cluster secrets", () => {
  test("persisted 0600 and read back; a later set without a CA keeps it; a new CA replaces it", () => {
    const s = new SecretsStore(dir);
    expect(s.set({ ...base, ca })).toBe(true);
    expect(statSync(s.file).mode & 0o777).toBe(0o600);
    expect(new SecretsStore(dir).get()).toEqual({ ...base, ca });
    expect(s.set(base)).toBe(false);
    expect(s.get()?.ca).toEqual(ca);
    const other = createCa("t", Date.now());
    expect(s.set({ ...base, ca: other })).toBe(true);
    expect(new SecretsStore(dir).get()?.ca).toEqual(other);
  });

  test("a secrets message carries a CA only as one PEM certificate and one PEM private key", () => {
    const msg = { t: "secrets", ...base };
    expect(AgentMsgSchema.safeParse({ ...msg, ca }).success).toBe(true);
    expect(AgentMsgSchema.safeParse(msg).success).toBe(true);
    expect(AgentMsgSchema.safeParse({ ...msg, ca: { cert: ca.key, key: ca.key } }).success).toBe(false);
    expect(AgentMsgSchema.safeParse({ ...msg, ca: { cert: `${ca.cert}${ca.cert}`, key: ca.key } }).success).toBe(false);
    expect(AgentMsgSchema.safeParse({ ...msg, ca: { cert: ca.cert, key: ca.key, extra: 1 } }).success).toBe(false);
  });
});
