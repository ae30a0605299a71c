// `pgherd status` (compiled binary) against a real API server with a fixed node document: --json
// is the agent's /node, the text shows the local PostgreSQL, HTTPS with --cacert, and a user
// who cannot read the 0600 config reaches the API through --api / $PGHERD_API.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ApiServer, startApi } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { BINARY, ensureBuilt } from "../../scripts/build.ts";
import { fakeSource, nodeStatus, standbyPg } from "../api/fake-source.ts";
import { requireReal } from "../helpers/require.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-status-"));
const node = nodeStatus({ postgres: standbyPg({ lagBytes: 8192, pendingRestart: ["max_connections"] }) });
const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n`, "test.toml");
let plain: ApiServer;
let tls: ApiServer;
const ca = join(dir, "ca.pem");

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** The binary, run without blocking this process (the API it talks to runs here). */
function pgherd(args: string[], opts: { env?: Record<string, string>; uid?: number; gid?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { PGHERD_CONFIG: _c, PGHERD_API: _a, PGHERD_CACERT: _ca, ...env } = process.env;
  return new Promise((resolve, reject) => {
    const p = spawn(BINARY, args, { cwd: dir, env: { ...env, ...opts.env }, uid: opts.uid, gid: opts.gid, timeout: 20_000 });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(() => {
  ensureBuilt();
  requireReal("status over HTTPS", spawnSync("openssl", ["version"]).status === 0 ? null : "no openssl");
  // A CA and a server certificate for 127.0.0.1 signed by it.
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=pgherd test CA", "-keyout", join(dir, "ca.key"), "-out", ca]);
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", join(dir, "srv.key"), "-out", join(dir, "srv.csr")]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  openssl(["x509", "-req", "-in", join(dir, "srv.csr"), "-CA", ca, "-CAkey", join(dir, "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", join(dir, "ext.cnf"), "-out", join(dir, "srv.pem")]);
  plain = startApi({ host: "127.0.0.1", port: 0, source: fakeSource({ status: node }), log: memoryLogger(), config });
  tls = startApi({ host: "127.0.0.1", port: 0, source: fakeSource({ status: node }), log: memoryLogger(), config, tls: { cert: readFileSync(join(dir, "srv.pem"), "utf8"), key: readFileSync(join(dir, "srv.key"), "utf8") } });
}, 120_000);
afterAll(async () => {
  await plain?.stop();
  await tls?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("pgherd status", () => {
  test("--json prints the agent's /node document", async () => {
    const r = await pgherd(["status", "--json", "--api", plain.url]);
    expect(r.code).toBe(0);
    const fromApi = await (await fetch(`${plain.url}/node`)).json();
    expect(JSON.parse(r.stdout)).toEqual(fromApi);
  });

  test("the text shows the local PostgreSQL: role, state, timeline, LSN, lag, pending restart", async () => {
    const r = await pgherd(["status", "--api", plain.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("postgres  replica, running, timeline 1, LSN 0/3000148");
    expect(r.stdout).toContain("lag 8192 bytes");
    expect(r.stdout).toContain("restart   pending for max_connections");
  });

  test("HTTPS: --cacert trusts the API's CA; without it the certificate is refused", async () => {
    expect(tls.url.startsWith("https://")).toBe(true);
    const ok = await pgherd(["status", "--json", "--api", tls.url, "--cacert", ca]);
    expect(ok.stderr).toBe("");
    expect(JSON.parse(ok.stdout).node.name).toBe("n2");
    const viaEnv = await pgherd(["status", "--json"], { env: { PGHERD_API: tls.url, PGHERD_CACERT: ca } });
    expect(viaEnv.code).toBe(0);
    const untrusted = await pgherd(["status", "--api", tls.url]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain(`cannot reach the pgherd agent at ${tls.url}`);
  });

  test("a config's [api] with tls_cert means https; only [api] is read", async () => {
    const port = new URL(tls.url).port;
    const f = join(dir, "api-only.toml");
    writeFileSync(f, `[api]\nlisten = "127.0.0.1:${port}"\ntls_cert = "/x/c.pem"\ntls_key = "/x/k.pem"\n`);
    const r = await pgherd(["status", "--json", "--config", f, "--cacert", ca]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout).cluster).toBe("test");
    writeFileSync(f, `[api]\nlisten = "nowhere"\n`);
    const bad = await pgherd(["status", "--config", f]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("api-only.toml: api.listen is invalid");
  });

  test("config show prints the agent's /config (redacted), TOML or --json", async () => {
    const toml = await pgherd(["config", "show", "--api", plain.url]);
    expect(toml.code).toBe(0);
    expect(toml.stdout).toContain('cluster = "test"');
    expect(toml.stdout).toContain('secret = "<redacted>"');
    expect(toml.stdout).not.toContain("s".repeat(40));
    const json = JSON.parse((await pgherd(["config", "show", "--json", "--api", plain.url])).stdout) as { cluster: string; api: { listen: string } };
    expect(json).toMatchObject({ cluster: "test", api: { listen: "127.0.0.1:7402" } });
  });

  test.skipIf(process.getuid?.() !== 0)("a user who cannot read the agent's 0600 config still reads status (no root needed)", async () => {
    const secretCfg = join(dir, "pgherd.toml");
    writeFileSync(secretCfg, `cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\nlisten = "${new URL(plain.url).host}"\n`);
    chmodSync(secretCfg, 0o600);
    chmodSync(dir, 0o755);
    const nobody = { uid: 65534, gid: 65534 };
    const r = await pgherd(["status", "--json"], { ...nobody, env: { PGHERD_API: plain.url } });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout).node.name).toBe("n2");
    // Naming the unreadable file says why and what to do instead.
    const denied = await pgherd(["status", "--config", secretCfg], nobody);
    expect(denied.code).toBe(2);
    expect(denied.stderr).toContain("permission denied (pass --api URL or set $PGHERD_API");
  });
});
