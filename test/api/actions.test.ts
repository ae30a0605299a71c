// Action routes on a real server (loopback, port 0) with a fake source: which request reaches the
// agent for which method and path, the token check in front of it, and that the agent's answer
// comes back unchanged. The agent's own decisions are tested elsewhere.
import { afterAll, describe, expect, test } from "bun:test";
import type { ActionRequest, ActionResult } from "../../src/api/actions-contract.ts";
import { startApi } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource } from "./fake-source.ts";

const TOKEN = "t0ken-for-the-action-tests-0123456789abcdef";
const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\ntoken = "${TOKEN}"\n`, "test.toml");
const scheduled = { at: "2026-12-01T17:00:00.000Z", to: "n3", requestedAt: "2026-12-01T16:00:00.000Z" };
const answers: Partial<Record<ActionRequest["kind"], ActionResult>> = {
  "switchover-cancel": { status: 200, ok: true, message: "scheduled switchover to n3 at 2026-12-01T17:00:00.000Z cancelled" },
  switchover: { status: 202, ok: true, message: "switchover scheduled for 2026-12-01T17:00:00.000Z" },
};
const source = fakeSource({ view: clusterView({ scheduledSwitchover: scheduled }), answer: (r) => answers[r.kind] ?? { status: 404, ok: false, message: "nothing" } });
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
afterAll(() => api.stop());

const auth = { authorization: `Bearer ${TOKEN}` };
const call = async (method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) => {
  const res = await fetch(`${api.url}${path}`, { method, ...init, signal: AbortSignal.timeout(5000) });
  return { status: res.status, allow: res.headers.get("allow"), body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
};

describe("DELETE /switchover", () => {
  test("asks the agent for switchover-cancel and answers what it says", async () => {
    source.requests.length = 0;
    const r = await call("DELETE", "/switchover", { headers: auth });
    expect(r).toEqual({ status: 200, allow: null, body: { ok: true, message: "scheduled switchover to n3 at 2026-12-01T17:00:00.000Z cancelled" } });
    expect(source.requests).toEqual([{ kind: "switchover-cancel" }]);
  });

  test("the agent's 404 (nothing scheduled) comes back as a 404", async () => {
    answers["switchover-cancel"] = { status: 404, ok: false, message: "no switchover is scheduled" };
    try {
      expect(await call("DELETE", "/switchover", { headers: auth })).toMatchObject({ status: 404, body: { ok: false, message: "no switchover is scheduled" } });
    } finally {
      answers["switchover-cancel"] = { status: 200, ok: true, message: "cancelled" };
    }
  });

  test("needs the token like every action; nothing reaches the agent without it", async () => {
    source.requests.length = 0;
    expect((await call("DELETE", "/switchover")).status).toBe(401);
    expect((await call("DELETE", "/switchover", { headers: { authorization: "Bearer wrong" } })).status).toBe(403);
    expect(source.requests).toEqual([]);
  });

  test("takes no fields", async () => {
    source.requests.length = 0;
    const r = await call("DELETE", "/switchover", { headers: auth, body: JSON.stringify({ to: "n3" }) });
    expect(r.status).toBe(400);
    expect(String(r.body?.error)).toContain("to");
    expect(source.requests).toEqual([]);
  });

  test("an empty target or time is refused, never taken as none (a script's unset variable: the best standby, now)", async () => {
    source.requests.length = 0;
    for (const [path, body] of [["/switchover", { to: "" }], ["/switchover", { to: "n3", at: "" }], ["/failover", { to: "" }]] as const) {
      const r = await call("POST", path, { headers: auth, body: JSON.stringify(body) });
      expect(r.status).toBe(400);
      expect(String(r.body?.error)).toMatch(/names no (member|time)/);
    }
    expect(source.requests).toEqual([]);
  });

  test("POST /switchover still asks for a switchover; other methods name both", async () => {
    source.requests.length = 0;
    const r = await call("POST", "/switchover", { headers: auth, body: JSON.stringify({ to: "n3", at: scheduled.at }) });
    expect(r).toMatchObject({ status: 202, body: { ok: true } });
    expect(source.requests).toEqual([{ kind: "switchover", to: "n3", at: scheduled.at }]);
    const put = await call("PUT", "/switchover", { headers: auth });
    expect(put.status).toBe(405);
    expect(put.allow).toBe("POST, DELETE");
    expect((await call("DELETE", "/failover", { headers: auth })).status).toBe(405);
  });
});

describe("GET /cluster", () => {
  test("carries the scheduled switchover the source reports", async () => {
    const r = await call("GET", "/cluster");
    expect(r.status).toBe(200);
    expect((r.body?.view as { scheduledSwitchover?: unknown }).scheduledSwitchover).toEqual(scheduled);
  });
});
