// GET /config on a real server (loopback, port 0) with a fake source: the secret and the token are
// never shown; the Sentry DSN's public key and what looks like a credential in a PostgreSQL
// parameter (restore_command with PGPASSWORD=…, a conninfo with password=…) are shown only to a
// request with the API token, which `pgherd config edit` needs to write the values back unchanged.
import { afterAll, expect, test } from "bun:test";
import { startApi } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { fakeSource } from "./fake-source.ts";

const TOKEN = "config-redact-token-0123456789-abcdefghij";
const SECRET = "s".repeat(40);
const DSN_KEY = "0123456789abcdef0123456789abcdef";
const PW = "hunter2secret";
const config = parseConfig([
  `cluster = "test"`, `secret = "${SECRET}"`,
  `[api]`, `token = "${TOKEN}"`,
  `[sentry]`, `dsn = "https://${DSN_KEY}@o1.ingest.example.io/42"`,
  `[postgres.parameters]`, `restore_command = "PGPASSWORD=${PW} fetch-wal %f %p"`, `work_mem = "8MB"`,
].join("\n"), "test.toml");
const dynamic = { cluster: { version: 3, term: 2, at: "", by: "", settings: { postgres: { parameters: { archive_command: `copy-wal --to postgresql://walkeeper:${PW}@wal.example/archive %p`, work_mem: "16MB" } } } }, conflicts: [] };
const source = { ...fakeSource(), dynamicConfig: () => dynamic } as unknown as ReturnType<typeof fakeSource>;
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
afterAll(() => api.stop());

const get = async (headers: Record<string, string> = {}) => {
  const res = await fetch(`${api.url}/config`, { headers, signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return { text: await res.clone().text(), doc: (await res.json()) as Record<string, any> };
};

test("without the token: no secret, no token, no DSN key, no password in a parameter; the rest as it is", async () => {
  for (const headers of [{}, { authorization: "Bearer wrong-token-wrong-token-wrong-token" }] as Record<string, string>[]) {
    const { text, doc } = await get(headers);
    for (const hidden of [SECRET, TOKEN, DSN_KEY, PW]) expect(text).not.toContain(hidden);
    expect(doc.redacted).toBe(true);
    expect(doc.sentry.dsn).toBe("https://<redacted>@o1.ingest.example.io/42");
    expect(doc.postgres.parameters).toEqual({ restore_command: "<redacted>", work_mem: "8MB" }); // a command: hidden whole
    expect(doc.dynamic.cluster.settings.postgres.parameters.work_mem).toBe("16MB");
    expect(doc.dynamic.cluster.version).toBe(3);
  }
});

test("without the token: a command parameter is hidden whole, whatever form its credentials take (review: pgBackRest's cipher pass, an Azure key, a SAS signature)", async () => {
  const secrets = ["--repo1-cipher-pass=Zk3q9", "AZURE_STORAGE_KEY=Qm9v", "WALG_LIBSODIUM_KEY=c29k", "sv=2022&sig=U2lnbmF0dXJl&se=2030"];
  const cfg = parseConfig([`cluster = "test"`, `secret = "${SECRET}"`, `[api]`, `token = "${TOKEN}"`, `[postgres.parameters]`, `archive_command = "${secrets.join(" ")} %p"`, `work_mem = "8MB"`].join("\n"), "test.toml");
  const dyn = { cluster: { version: 3, term: 2, at: "", by: "", settings: { postgres: { parameters: { restore_command: `wal-g --s3 ${secrets.join(" ")} %f %p` } } } }, conflicts: [] };
  const own = startApi({ host: "127.0.0.1", port: 0, source: { ...fakeSource(), dynamicConfig: () => dyn } as unknown as ReturnType<typeof fakeSource>, log: memoryLogger(), config: cfg });
  try {
    const res = await fetch(`${own.url}/config`, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    for (const s of ["Zk3q9", "Qm9v", "c29k", "U2lnbmF0dXJl"]) expect(text).not.toContain(s);
    const doc = JSON.parse(text);
    expect(doc.postgres.parameters).toEqual({ archive_command: "<redacted>", work_mem: "8MB" });
    expect(doc.dynamic.cluster.settings.postgres.parameters.restore_command).toBe("<redacted>");
    // With the token: the file's parameters with what looks like a credential replaced, these included.
    const full = await (await fetch(`${own.url}/config`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5000) })).json() as Record<string, any>;
    expect(full.postgres.parameters.archive_command).toBe("--repo1-cipher-pass=<redacted> AZURE_STORAGE_KEY=<redacted> WALG_LIBSODIUM_KEY=<redacted> sv=2022&sig=<redacted>&se=2030 %p");
  } finally {
    own.stop();
  }
});

test("with the token: the cluster-wide values as they are (written back by config edit); the secret and the token still hidden", async () => {
  const { text, doc } = await get({ authorization: `Bearer ${TOKEN}` });
  expect(doc.redacted).toBe(false);
  expect(doc.dynamic).toEqual(dynamic);
  for (const hidden of [SECRET, TOKEN]) expect(text).not.toContain(hidden);
});

test("a parameter named as a credential (app.jwt_secret, anon.salt, myext.password) is hidden whole, in pgherd.toml's, the cluster document's and the conflicts (review: the value is the secret itself)", async () => {
  const [JWT, SALT, EXT] = ["jwt-signing-key-0123456789abcdef", "salt-9f8e7d6c", "hunter2ext"];
  const cfg = parseConfig([`cluster = "test"`, `secret = "${SECRET}"`, `[api]`, `token = "${TOKEN}"`, `[postgres.parameters]`, `"myext.password" = "${EXT}"`, `"app.jwt_secret" = "${JWT}"`, `password_encryption = "scram-sha-256"`].join("\n"), "test.toml");
  const dyn = {
    cluster: { version: 3, term: 2, at: "", by: "", settings: { postgres: { parameters: { "anon.salt": SALT, "app.jwt_secret": `${JWT}-cluster`, work_mem: "16MB" } } } },
    conflicts: [{ key: "postgres.parameters.app.jwt_secret", local: JSON.stringify(JWT), cluster: JSON.stringify(`${JWT}-cluster`) }, { key: "postgres.parameters.work_mem", local: "\"8MB\"", cluster: "\"16MB\"" }],
  };
  const own = startApi({ host: "127.0.0.1", port: 0, source: { ...fakeSource(), dynamicConfig: () => dyn } as unknown as ReturnType<typeof fakeSource>, log: memoryLogger(), config: cfg });
  try {
    const text = await (await fetch(`${own.url}/config`, { signal: AbortSignal.timeout(5000) })).text();
    for (const s of [JWT, SALT, EXT]) expect(text).not.toContain(s);
    const doc = JSON.parse(text);
    expect(doc.postgres.parameters).toEqual({ "myext.password": "<redacted>", "app.jwt_secret": "<redacted>", password_encryption: "scram-sha-256" });
    expect(doc.dynamic.cluster.settings.postgres.parameters).toEqual({ "anon.salt": "<redacted>", "app.jwt_secret": "<redacted>", work_mem: "16MB" });
    expect(doc.dynamic.conflicts).toEqual([{ key: "postgres.parameters.app.jwt_secret", local: "<redacted>", cluster: "<redacted>" }, { key: "postgres.parameters.work_mem", local: "\"8MB\"", cluster: "\"16MB\"" }]);
    // With the token: the cluster document as it is (config edit writes it back).
    const full = await (await fetch(`${own.url}/config`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5000) })).json() as Record<string, any>;
    expect(full.dynamic).toEqual(dyn);
  } finally {
    own.stop();
  }
});
