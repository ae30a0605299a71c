import { expect, test } from "bun:test";
import { apiFromToml, apiUrl } from "../../src/ops/api-address.ts";

test("the API URL from [api]: wildcard to loopback, https with TLS", () => {
  expect(apiUrl("0.0.0.0:7402", false)).toBe("http://127.0.0.1:7402");
  expect(apiUrl("[::]:7402", false)).toBe("http://[::1]:7402");
  expect(apiUrl("db1.example:8443", true)).toBe("https://db1.example:8443");
});

test("only [api] is read: the rest of the file may be anything (or absent)", () => {
  const r = apiFromToml(`cluster = 5\n[api]\nlisten = "10.0.0.1:7402"\ntls_cert = "/etc/c.pem"\ntls_key = "/etc/k.pem"\n`, "pgherd.toml");
  expect(r).toEqual({ kind: "ok", api: { url: "https://10.0.0.1:7402", token: "" } });
  expect(apiFromToml("", "x.toml")).toEqual({ kind: "ok", api: { url: "http://127.0.0.1:7402", token: "" } });
});

test("a bad [api] names file and key", () => {
  expect(apiFromToml(`[api]\nlisten = "nowhere"\n`, "pgherd.toml")).toMatchObject({ kind: "invalid", message: expect.stringContaining("pgherd.toml: api.listen is invalid") });
  expect(apiFromToml(`[api]\nlisten = 7\n`, "pgherd.toml")).toMatchObject({ kind: "invalid", message: "pgherd.toml: api.listen must be a string (got number)" });
  expect(apiFromToml(`[api\n`, "pgherd.toml")).toMatchObject({ kind: "invalid", message: expect.stringContaining("pgherd.toml: TOML syntax error") });
});
