// Headers every API answer carries (nosniff, set once in server.ts) and `/`'s Vary: Accept (the
// dashboard for a browser, the primary check for anything else). Real server, fake source.
import { afterAll, expect, test } from "bun:test";
import { startApi } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { fakeSource } from "./fake-source.ts";

const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\ntoken = "t0ken-for-the-header-tests-0123456789abcdef"\n`, "test.toml");
const source = fakeSource();
source.clusters = async () => {
  throw new Error("a source that fails (the API answers 500)");
};
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
afterAll(() => api.stop());

const call = async (method: string, path: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${api.url}${path}`, { method, headers, signal: AbortSignal.timeout(5000) });
  await res.body?.cancel(); // /events never ends
  return { status: res.status, nosniff: res.headers.get("x-content-type-options"), vary: res.headers.get("vary") };
};

test("X-Content-Type-Options: nosniff on every answer: JSON, metrics, health checks, events, dashboard files, errors", async () => {
  const cases: [string, string, Record<string, string>?][] = [
    ["GET", "/node"], ["GET", "/cluster"], ["GET", "/history"], ["GET", "/metrics"], ["GET", "/config"], ["GET", "/events"],
    ["GET", "/primary"], ["HEAD", "/replica"], ["OPTIONS", "/health"], ["GET", "/liveness"], ["GET", "/?lag=x"],
    ["GET", "/ui/app.js"], ["GET", "/ui/style.css"], ["GET", "/", { accept: "text/html" }],
    ["GET", "/nowhere"], ["PUT", "/node"], ["GET", "/ui/%2e%2e/x"], ["GET", "/node", { host: "rebind.example" }],
    ["POST", "/pause"], ["GET", "/clusters"],
  ];
  const seen: { method: string; path: string; status: number; nosniff: string | null }[] = [];
  for (const [method, path, headers] of cases) {
    const r = await call(method, path, headers);
    seen.push({ method, path, status: r.status, nosniff: r.nosniff });
  }
  expect(seen.filter((s) => s.nosniff !== "nosniff")).toEqual([]);
  // Each kind of answer was reached, errors included.
  expect([...new Set(seen.map((s) => s.status))].sort()).toEqual([200, 400, 401, 404, 405, 421, 500, 503]);
});

test("/ says Vary: Accept in both its answers; other paths do not vary", async () => {
  expect(await call("GET", "/", { accept: "text/html,application/xhtml+xml" })).toMatchObject({ status: 200, vary: "Accept" });
  expect(await call("GET", "/")).toMatchObject({ status: 503, vary: "Accept" });
  expect(await call("GET", "/", { accept: "application/json" })).toMatchObject({ status: 503, vary: "Accept" });
  expect(await call("HEAD", "/")).toMatchObject({ status: 503, vary: "Accept" });
  expect((await call("GET", "/primary", { accept: "text/html" })).vary).toBeNull();
});

test("/master answers as /primary does (Patroni's name before 3.0, in many HAProxy configs: `option httpchk OPTIONS /master`); before, 404", async () => {
  for (const method of ["OPTIONS", "GET", "HEAD"]) {
    const [master, primary] = [await call(method, "/master"), await call(method, "/primary")];
    expect(master.status).toBe(primary.status);
    expect([200, 503]).toContain(master.status);
  }
});
