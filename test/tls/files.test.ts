// NodeTls's files: <data_dir>.tls/ (0700) with ca.crt, server.crt, server.key (0600), owned by the
// PostgreSQL OS user; a link put in their place (by that user, who owns the directory) is refused,
// never followed, also when the agent runs as root.
import { afterAll, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import type { ClusterSecrets } from "../../src/store/cluster-secrets.ts";
import { NodeTls } from "../../src/tls/node-tls.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-tlsfiles-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const osUser = isRoot() ? "postgres" : (process.env.USER ?? "postgres");
const u = await lookupOsUser(osUser);
if (isRoot()) chownSync(root, u.uid, u.gid);

function nodeTls(dataDir: string, s: { v?: ClusterSecrets }, log = memoryLogger(), replicationTls = true) {
  const cfg = parseConfig(`cluster = "f"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\n[postgres]\nos_user = "${osUser}"\ndata_dir = "${dataDir}"\nreplication_tls = ${replicationTls}\n`, "test");
  return new NodeTls({ cfg, log, secrets: { secrets: () => s.v, saveSecrets: (v) => { s.v = v; } }, hosts: () => ["10.0.0.1"] });
}

describe("replication TLS files", () => {
  test("a bootstrapping primary makes a CA it hands to the new secrets; files 0600 in a 0700 directory of the OS user", async () => {
    const s: { v?: ClusterSecrets } = {};
    const tls = nodeTls(join(root, "a"), s);
    const r = await tls.prepare(true);
    expect(s.v).toBeUndefined(); // no secrets yet: establishIdentity stores the CA with them
    const ca = tls.caForNewSecrets().ca!;
    expect(readFileSync(r.ssl!.caFile, "utf8")).toBe(ca.cert);
    expect(statSync(tls.dir).mode & 0o777).toBe(0o700);
    for (const f of [r.ssl!.caFile, r.ssl!.certFile, r.ssl!.keyFile]) expect({ f, mode: statSync(f).mode & 0o777, uid: statSync(f).uid }).toEqual({ f, mode: 0o600, uid: u.uid });
    // A standby without the cluster's CA yet has no server files and no plain fallback as a client.
    const standby = nodeTls(join(root, "b"), {});
    expect(await standby.prepare(false)).toEqual({ ssl: null, changed: [] });
    expect(await standby.client()).toEqual({ sslmode: "verify-full", sslrootcert: `${standby.dir}/ca.crt`, channel_binding: "require" });
  });

  test.skipIf(!isRoot())("as root: a link in place of the key, or of the directory, is refused and its target left alone", async () => {
    const secret = join(root, "root-only");
    writeFileSync(secret, "root secret\n", { mode: 0o600 });
    const s: { v?: ClusterSecrets } = {};
    const tls = nodeTls(join(root, "c"), s);
    await tls.prepare(true);
    const key = join(tls.dir, "server.key");
    unlinkSync(key);
    symlinkSync(secret, key);
    await expect(tls.prepare(true)).rejects.toThrow(/symbolic link/);
    expect(statSync(secret).uid).toBe(0);
    expect(readFileSync(secret, "utf8")).toBe("root secret\n");

    const elsewhere = join(root, "elsewhere");
    mkdirSync(elsewhere, { mode: 0o755 });
    const d = nodeTls(join(root, "d"), {});
    symlinkSync(elsewhere, d.dir);
    await expect(d.prepare(true)).rejects.toThrow(/symbolic link/);
    expect(statSync(elsewhere).uid).toBe(0);
    expect(statSync(elsewhere).mode & 0o777).toBe(0o755);
  });

  test("replication_tls = false: a warning at start, no files, no client TLS", async () => {
    const log = memoryLogger();
    const tls = nodeTls(join(root, "e"), {}, log, false);
    expect(log.lines.filter((l) => l.startsWith("warn ") && l.includes("replication TLS is off"))).toHaveLength(1);
    expect(await tls.prepare(true)).toEqual({ ssl: null, changed: [] });
    expect(await tls.client()).toBeUndefined();
  });
});
