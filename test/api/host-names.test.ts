// The Host allow-list (DNS rebinding, docs/api.md) and the names operators and monitoring really use
// (review): check_patroni reads /patroni by the node's DNS name, and with TLS the certificate's full
// name is how the CLI reaches the agent; neither may get 421. Without TLS, the dashboard, /node and
// the actions still answer only an address or one of this node's names.
import { afterAll, expect, test } from "bun:test";
import { startApi } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { createCa, issueNodeCert } from "../../src/tls/x509.ts";
import { fakeSource } from "./fake-source.ts";

const FQDN = "pg1.db.example.com";
const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\nnode_name = "pg1"\n`, "test.toml");
const ca = createCa("test", Date.now());
const cert = issueNodeCert(ca, "pg1", [{ dns: FQDN }, { ip: "127.0.0.1" }], Date.now());
const plain = startApi({ host: "127.0.0.1", port: 0, source: fakeSource(), log: memoryLogger(), config });
const tls = startApi({ host: "127.0.0.1", port: 0, source: fakeSource(), log: memoryLogger(), config, tls: { cert: cert.cert, key: cert.key } });
afterAll(() => Promise.all([plain.stop(), tls.stop()]));

const get = (base: string, path: string, host: string) =>
  fetch(`${base}${path}`, { headers: { host }, tls: { ca: ca.cert }, signal: AbortSignal.timeout(5000) } as RequestInit);

test("without TLS: /patroni answers under the node's DNS name (check_patroni), /node and /config do not", async () => {
  expect((await get(plain.url, "/patroni", FQDN)).status).toBe(200);
  for (const path of ["/node", "/config"]) expect({ path, status: (await get(plain.url, path, FQDN)).status }).toEqual({ path, status: 421 });
});

test("with TLS: every path answers under the certificate's name (a rebinding page cannot pass the certificate)", async () => {
  expect(tls.url.startsWith("https://")).toBe(true);
  for (const path of ["/node", "/config", "/cluster", "/patroni"]) {
    expect({ path, status: (await get(tls.url, path, `${FQDN}:${new URL(tls.url).port}`)).status }).toEqual({ path, status: 200 });
  }
});

test("a Host that makes no URL is refused with 421, with TLS too, and logs no internal error (review: with TLS it answered 500 and logged a stack each time)", async () => {
  const { connect } = await import("node:tls");
  const { connect: plainConnect } = await import("node:net");
  const log = memoryLogger();
  const api = startApi({ host: "127.0.0.1", port: 0, source: fakeSource(), log, config, tls: { cert: cert.cert, key: cert.key } });
  try {
    const raw = (secure: boolean, port: number, host: string) => new Promise<string>((resolve, reject) => {
      const request = `GET /primary HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
      const s = secure
        ? connect({ host: "127.0.0.1", port, ca: ca.cert, servername: FQDN }, () => s.write(request))
        : plainConnect(port, "127.0.0.1", () => s.write(request));
      let got = "";
      s.setTimeout(5000, () => s.destroy(new Error("no answer")));
      s.on("data", (d) => (got += d)).on("end", () => resolve(got.split("\r\n")[0]!)).on("error", reject);
    });
    for (const host of ["[::1", "a:b:c", "%", ":80"]) {
      expect({ host, tls: await raw(true, Number(new URL(api.url).port), host) }).toEqual({ host, tls: "HTTP/1.1 421 Misdirected Request" });
      expect({ host, plain: await raw(false, Number(new URL(plain.url).port), host) }).toEqual({ host, plain: "HTTP/1.1 421 Misdirected Request" });
    }
    expect(log.lines.filter((l) => l.startsWith("error"))).toEqual([]);
    expect((await get(api.url, "/primary", "127.0.0.1")).status).toBe(503); // the check itself still answers
  } finally {
    await api.stop();
  }
});
