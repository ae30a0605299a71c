// The HTTP API of one compiled agent leading alone (real PostgreSQL, loopback): health answers of
// a primary, status documents, token checks that provably run nothing, hostile input (malformed,
// unknown fields, oversized, path traversal) answered with a clear 4xx while the agent carries on.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";
import { http, startLoopCluster, until, type LoopCluster, type LoopNode } from "./loopback.ts";
import { parseProm, sample } from "./prom.ts";

requireReal("api e2e", pgSkipReason);

let c: LoopCluster;
let n: LoopNode;
const get = (path: string, init: RequestInit = {}) => http(`${n.api}${path}`, init);
const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const post = (path: string, body: string, headers: Record<string, string> = {}) => http(`${n.api}${path}`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });

interface Node { election: { term: number; leading: boolean } }
const status = async () => (await get("/node")).json() as Node;

/** Raw HTTP/1.1 over TCP: fetch would normalise "..", a raw client does not. */
function rawGet(target: string): Promise<string> {
  return raw(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
}

function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(n.apiPort, "127.0.0.1", () => s.write(request));
    let out = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => { out += d; });
    s.on("end", () => resolve(out));
    s.on("error", reject);
    setTimeout(() => { s.destroy(); reject(new Error(`no answer to ${JSON.stringify(request)}`)); }, 5000);
  });
}

describe("HTTP API of one agent", () => {
  beforeAll(async () => {
    c = await startLoopCluster({ test: "api-solo", size: 1 });
    n = c.nodes[0]!;
    await until(async () => (await get("/primary")).status === 200, "the agent to run a leading primary", 60_000);
  }, 120_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`api e2e logs: ${c.dir}`);
  }, 60_000);

  test("a leading primary: Patroni's answers, for GET, HEAD and OPTIONS", async () => {
    const want: Record<string, number> = {
      "/primary": 200, "/read-write": 200, "/leader": 200, "/read-only": 200, "/health": 200, "/liveness": 200, "/readiness": 200,
      "/replica": 503, "/async": 503, "/sync": 503, "/standby-leader": 503, "/replica?lag=1GB": 503, "/primary?tag_noloadbalance=true": 200,
    };
    for (const [path, code] of Object.entries(want)) {
      for (const method of ["GET", "HEAD", "OPTIONS"]) {
        const r = await get(path, { method });
        expect(`${method} ${path} → ${r.status}`).toBe(`${method} ${path} → ${code}`);
        if (method !== "GET") expect(r.body).toBe("");
      }
    }
    // HAProxy's httpchk: HTTP/1.0, no Host header.
    for (const [req, code] of [["OPTIONS /primary", 200], ["OPTIONS /replica", 503], ["GET /primary?lag=1MB", 200], ["HEAD /", 200]] as const) {
      expect(`${req}: ${(await raw(`${req} HTTP/1.0\r\n\r\n`)).split("\r\n")[0]}`).toMatch(new RegExp(`^${req.replace("?", "\\?")}: HTTP/1\\.[01] ${code} `));
    }
    const body = (await get("/primary")).json() as Record<string, unknown>;
    expect(body).toMatchObject({ check: "/primary", ok: true, role: "primary", state: "running", leading: true, node: "n1" });
    const rep = (await get("/replica")).json() as Record<string, unknown>;
    expect(rep).toMatchObject({ ok: false, reason: "not a standby" });
  });

  test("/ is the primary check for load balancers and the dashboard for browsers", async () => {
    expect((await get("/")).status).toBe(200);
    expect((await get("/", { method: "OPTIONS" })).status).toBe(200);
    expect((await get("/", { headers: { accept: "application/json" } })).json()).toMatchObject({ check: "/", ok: true });
    const page = await get("/", { headers: { accept: "text/html,application/xhtml+xml" } });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(page.body).toContain("<title>pgherd");
    for (const a of ["/ui/app.js", "/ui/style.css"]) expect((await get(a)).status).toBe(200);
  });

  test("/events streams a snapshot every second, past Bun's 10 s idle timeout; a refused backup request's connection does not", async () => {
    // A backup lifts its connection's idle timeout, but only once its token is accepted: a refused
    // one (kept alive) is closed by the idle timeout meanwhile, as any other idle connection.
    const refused = new Promise<{ status: string; closed: boolean }>((resolve, reject) => {
      let out = "";
      const s = net.connect(n.apiPort, "127.0.0.1", () => s.write(`POST /backup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`));
      s.setEncoding("utf8");
      s.on("data", (d: string) => { out += d; });
      s.on("close", () => resolve({ status: out.split("\r\n")[0] ?? "", closed: true }));
      s.on("error", reject);
      setTimeout(() => { resolve({ status: out.split("\r\n")[0] ?? "", closed: false }); s.destroy(); }, 16_000);
    });
    const ctl = new AbortController();
    const res = await fetch(`${n.api}/events`, { signal: ctl.signal });
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    const t0 = performance.now();
    try {
      while (performance.now() - t0 < 12_500) {
        const r = await Promise.race([reader.read(), Bun.sleep(3000).then(() => "stalled" as const)]);
        if (r === "stalled") throw new Error(`no event for 3 s after ${Math.round(performance.now() - t0)} ms`);
        if (r.done) throw new Error(`stream closed after ${Math.round(performance.now() - t0)} ms`);
        text += dec.decode(r.value, { stream: true });
      }
    } finally {
      ctl.abort();
    }
    const frames = text.split("\n\n").filter((f) => f.startsWith("event: snapshot\ndata: "));
    expect(frames.length).toBeGreaterThanOrEqual(10);
    const snap = JSON.parse(frames.at(-1)!.slice("event: snapshot\ndata: ".length)) as { node: { node: { name: string } }; cluster: { view: { members: unknown[] } }; history: unknown[] };
    expect(snap.node.node.name).toBe("n1");
    expect(snap.cluster.view.members).toHaveLength(1);
    expect(Array.isArray(snap.history)).toBe(true);
    expect(await refused).toEqual({ status: "HTTP/1.1 401 Unauthorized", closed: true });
  }, 30_000);

  test("a bad lag value is a 400 naming it", async () => {
    const r = await get("/replica?lag=lots");
    expect(r.status).toBe(400);
    expect(r.body).toContain("lag=");
  });

  test("status documents: /node, /cluster, /history, /config (redacted)", async () => {
    expect(((await get("/node")).json() as { node: { name: string } }).node.name).toBe("n1");
    expect((await get("/cluster")).json()).toMatchObject({ source: "leader", view: { members: [{ name: "n1", role: "primary" }] } });
    const h = (await get("/history")).json();
    expect(Array.isArray(h)).toBe(true);
    const cfg = await get("/config");
    expect(cfg.status).toBe(200);
    expect(cfg.json()).toMatchObject({ cluster: "api-solo", secret: "<redacted>", api: { token: "<redacted>" } });
    expect(cfg.body).not.toContain(c.token);
  });

  test("actions without the token (401) or with a wrong one (403) run nothing", async () => {
    const before = await status();
    const historyBefore = (await get("/history")).body;
    const linesBefore = n.agent.linesMatching(/action \w+ requested/).length;
    for (const [path, method, body] of [["/pause", "POST", "{}"], ["/switchover", "POST", "{}"], ["/failover", "POST", '{"to":"n1"}'], ["/rejoin", "POST", "{}"], ["/resume", "POST", "{}"], ["/config", "PATCH", '{"durability":"strict"}']] as const) {
      const none = await http(`${n.api}${path}`, { method, body });
      expect(`${path} ${none.status}`).toBe(`${path} 401`);
      expect(none.headers.get("www-authenticate")).toContain("Bearer");
      const wrong = await http(`${n.api}${path}`, { method, body, headers: auth(`${c.token}x`) });
      expect(`${path} ${wrong.status}`).toBe(`${path} 403`);
      expect(wrong.json()).toMatchObject({ ok: false, error: "wrong API token" });
      const basic = await http(`${n.api}${path}`, { method, body, headers: { authorization: `Basic ${btoa(`x:${c.token}`)}` } });
      expect(`${path} ${basic.status}`).toBe(`${path} 401`);
    }
    // Nothing ran: no request reached the agent's action runner, no history entry, no pause, same term.
    expect(n.agent.linesMatching(/action \w+ requested/).length).toBe(linesBefore);
    expect((await get("/history")).body).toBe(historyBefore);
    const after = await status();
    expect(after.election).toMatchObject({ term: before.election.term, leading: true });
    expect(((await get("/node")).json() as { paused?: boolean }).paused ?? false).toBe(false);
    // The same request with the right token does reach it (so the checks above can fail).
    const ok = await post("/pause", "{}", auth(c.token));
    expect(ok.status).toBe(200);
    expect(n.agent.linesMatching(/action pause requested/).length).toBe(1);
    expect((await post("/resume", "", auth(c.token))).status).toBe(200);
  });

  test("bad bodies: malformed JSON, unknown fields, wrong types, oversized", async () => {
    const t = auth(c.token);
    const bad = await post("/switchover", "{to: n2", t);
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ ok: false, error: expect.stringContaining("malformed JSON") });
    const unknown = await post("/switchover", '{"to":"n2","colour":"red","kind":"pause"}', t);
    expect(unknown.status).toBe(400);
    expect(unknown.body).toContain('unknown field(s) \\"colour\\", \\"kind\\"');
    const types = await post("/switchover", '{"force":"yes"}', t);
    expect(types.status).toBe(400);
    expect(types.body).toContain("force");
    expect((await post("/pause", "[1,2]", t)).status).toBe(400);
    expect((await post("/failover", "{}", t)).body).toContain("to:");
    const big = await post("/switchover", JSON.stringify({ to: "x".repeat(100 * 1024) }), t);
    expect(big.status).toBe(413);
    expect(big.body).toContain("exceeds the limit");
    expect((await post("/switchover", "x".repeat(2 << 20), t)).status).toBe(413); // above Bun's own ceiling too
    // Chunked (no Content-Length): cut while streaming.
    const chunks = new ReadableStream({ start(ctl) { for (let i = 0; i < 100; i++) ctl.enqueue(new TextEncoder().encode(" ".repeat(1024))); ctl.close(); } });
    const streamed = await http(`${n.api}/pause`, { method: "POST", body: chunks, headers: t });
    expect(streamed.status).toBe(413);
    expect((await get("/pause")).status).toBe(405);
    expect((await http(`${n.api}/node`, { method: "DELETE" })).status).toBe(405);
    expect((await get("/nope")).status).toBe(404);
  });

  test("path traversal on static files: a clear 4xx, plain and encoded, never a file", async () => {
    // Bun resolves "..", "%2e%2e" and "\\" before the handler sees the path: those arrive outside
    // /ui/ and find no route (404). What survives normalisation is refused by the API itself (400).
    const cases: [string, number][] = [
      ["/../../etc/passwd", 404], ["/ui/../../etc/passwd", 404], ["/%2e%2e/%2e%2e/etc/passwd", 404], ["/ui/..\\..\\etc\\passwd", 404],
      ["/ui/..%2f..%2fetc%2fpasswd", 400], ["/ui/%252e%252e/%252e%252e/etc/passwd", 400], ["/ui/app.js%00.css", 400], ["/ui/%ZZ", 400],
    ];
    for (const [target, code] of cases) {
      const r = await rawGet(target);
      expect(`${target}: ${r.split("\r\n")[0]}`).toBe(`${target}: HTTP/1.1 ${code} ${code === 400 ? "Bad Request" : "Not Found"}`);
      expect(r).not.toContain("root:");
      expect(r).toContain('"ok": false');
    }
    expect((await get("/ui/passwd")).status).toBe(404);
  });

  test("after all that the agent still leads, serves and counts the rejects", async () => {
    expect(n.agent.proc.exited).toBe(false);
    const s = await status();
    expect(s.election.leading).toBe(true);
    expect((await get("/primary")).status).toBe(200);
    const m = await get("/metrics");
    expect(m.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const f = parseProm(m.body);
    expect(sample(f, "pgherd_api_rejects_total", { reason: "no-token" })).toBe(13); // 12 in the token test, 1 the refused backup beside /events
    expect(sample(f, "pgherd_api_rejects_total", { reason: "bad-token" })).toBe(6);
    expect(sample(f, "pgherd_api_rejects_total", { reason: "bad-path" })).toBe(4);
    expect(sample(f, "pgherd_api_rejects_total", { reason: "oversized" })).toBe(2);
    expect(n.agent.linesMatching(/\[n1:api\] rejected 127\.0\.0\.1: bad-token/).length).toBeGreaterThan(0);
  });
});
