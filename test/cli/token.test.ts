// Where the CLI takes the API token from: --token-file, $PGHERD_TOKEN or the config, never argv
// (every local user can read a command line in ps or /proc). Run in-process against a real API
// server on loopback that checks the token; its source is a fake: the agent is not the point here.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { startApi } from "../../src/api/server.ts";
import { apiToken } from "../../src/cli/api-client.ts";
import { runCli } from "../../src/cli/run.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { fakeSource } from "../api/fake-source.ts";

const TOKEN = "cli-token-test-0123456789-abcdefghijklmnop";
const SECRET = "s".repeat(40);
const config = parseConfig(`cluster = "test"\nsecret = "${SECRET}"\n[api]\ntoken = "${TOKEN}"\n`, "test.toml");
const source = fakeSource();
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
const dir = mkdtempSync(join(tmpdir(), "pgherd-token-"));
afterAll(() => {
  void api.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => void (source.requests.length = 0));

/** A file with `text` and `mode` (chmod after writing: the umask must not decide the test). */
function file(name: string, text: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

async function pgherd(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  // PGHERD_CONFIG points nowhere so a real /etc/pgherd/pgherd.toml on this host cannot supply a token.
  const code = await runCli(argv, { env: { PGHERD_CONFIG: join(dir, "none.toml"), ...env }, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

describe("the API token is never taken from argv", () => {
  test("--token is refused with exit 2, names the alternatives and sends nothing", async () => {
    for (const argv of [["pause", "--token", TOKEN], ["switchover", `--token=${TOKEN}`], ["config", "set", "durability=async", "--token", TOKEN]]) {
      const r = await pgherd([...argv, "--api", api.url]);
      expect(r.code).toBe(2);
      expect(r.err).toContain("--token is refused: every local user sees a command line (ps, /proc). Use --token-file PATH or $PGHERD_TOKEN");
      expect(r.err).not.toContain(TOKEN);
    }
    expect(source.requests).toEqual([]);
  });

  test("--help offers --token-file, not --token", async () => {
    const r = await pgherd(["failover", "--help"]);
    expect(r.out).toContain("--token-file");
    expect(r.out).not.toMatch(/--token\b(?!-)/);
  });
});

describe("--token-file", () => {
  test("a 0600 file's token is sent (trailing newline dropped): the action runs", async () => {
    const path = file("tok", `${TOKEN}\n`, 0o600);
    expect(await pgherd(["pause", "--token-file", path, "--api", api.url])).toEqual({ code: 0, out: "pause done\n", err: "" });
    expect(source.requests).toEqual([{ kind: "pause" }]);
  });

  test("it wins over $PGHERD_TOKEN", async () => {
    const path = file("tok-wins", TOKEN, 0o400);
    expect((await pgherd(["resume", "--token-file", path, "--api", api.url], { PGHERD_TOKEN: "wrong".repeat(8) })).code).toBe(0);
    const wrong = file("tok-wrong", "wrong".repeat(8), 0o600);
    const r = await pgherd(["resume", "--token-file", wrong, "--api", api.url], { PGHERD_TOKEN: TOKEN });
    expect(r).toMatchObject({ code: 1, out: "wrong API token\n" });
  });

  test("a file group or others may read is refused before any request, naming file and mode", async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const path = file(`tok-${mode.toString(8)}`, TOKEN, mode);
      const r = await pgherd(["pause", "--token-file", path, "--api", api.url]);
      expect(r.code).toBe(2);
      expect(r.err).toBe(`pgherd: token file ${path} has mode 0${mode.toString(8)}: group and others must have no access (chmod 600 ${path})\n`);
    }
    expect(source.requests).toEqual([]);
  });

  test("a missing or empty file is a usage error", async () => {
    const missing = join(dir, "no-such-token");
    expect(await pgherd(["pause", "--token-file", missing, "--api", api.url])).toMatchObject({ code: 2, err: expect.stringContaining(`cannot read token file ${missing}`) });
    const empty = file("tok-empty", "\n", 0o600);
    expect(await pgherd(["pause", "--token-file", empty, "--api", api.url])).toMatchObject({ code: 2, err: `pgherd: token file ${empty} is empty\n` });
    expect(source.requests).toEqual([]);
  });

  test("rejoin reads the token before its first request", async () => {
    const shared = file("tok-shared", TOKEN, 0o644);
    let requests = 0;
    const counting = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (requests++, new Response("{}")) });
    try {
      const r = await pgherd(["rejoin", "--token-file", shared, "--api", `http://127.0.0.1:${counting.port}`]);
      expect(r.code).toBe(2);
      expect(requests).toBe(0);
    } finally {
      counting.stop(true);
    }
  });
});

describe("other sources", () => {
  test("$PGHERD_TOKEN", async () => {
    expect((await pgherd(["pause", "--api", api.url], { PGHERD_TOKEN: `${TOKEN}\n` })).code).toBe(0);
    expect(source.requests).toEqual([{ kind: "pause" }]);
  });

  test("api.token of the config file when neither is given, sent to the address its [api] names (also when --api names the same)", async () => {
    const cfg = file("with-token.toml", `cluster = "test"\nsecret = "${SECRET}"\n[api]\nlisten = "${new URL(api.url).host}"\ntoken = "${TOKEN}"\n`, 0o600);
    expect((await pgherd(["pause", "--config", cfg])).code).toBe(0);
    expect((await pgherd(["resume", "--config", cfg, "--api", api.url])).code).toBe(0);
    // The same agent by another name of this host (a TLS certificate's name: docs/operations.md).
    const port = new URL(api.url).port;
    expect((await pgherd(["pause", "--config", cfg, "--api", `http://localhost:${port}`])).code).toBe(0);
    expect((await pgherd(["resume", "--config", cfg], { PGHERD_API: `http://localhost:${port}` })).code).toBe(0);
    expect(source.requests).toEqual([{ kind: "pause" }, { kind: "resume" }, { kind: "pause" }, { kind: "resume" }]);
  });

  test("the config's token is never sent to another address named by --api or $PGHERD_API (another cluster's agent, a host across the network)", async () => {
    const cfg = file("own-token.toml", `cluster = "test"\nsecret = "${SECRET}"\n[api]\nlisten = "${new URL(api.url).host}"\ntoken = "${TOKEN}"\n`, 0o600);
    const seen: (string | null)[] = [];
    const other = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => (seen.push(req.headers.get("authorization")), Response.json({ message: "this action needs the API token" }, { status: 401 })) });
    try {
      const url = `http://127.0.0.1:${other.port}`;
      const viaArg = await pgherd(["pause", "--config", cfg, "--api", url]);
      const viaEnv = await pgherd(["pause", "--config", cfg], { PGHERD_API: url });
      expect(seen).toEqual([null, null]);
      expect(viaArg).toMatchObject({ code: 1, out: expect.stringContaining("no token was sent: --token-file or $PGHERD_TOKEN") });
      expect(viaEnv.code).toBe(1);
    } finally {
      other.stop(true);
    }
  });

  test("a domain name that starts with this host's name is another agent: the config's token is not for it (review: db1.staging.example from prod's db1)", () => {
    const cfg = file("lookalike.toml", `cluster = "test"\nsecret = "${SECRET}"\n[api]\nlisten = "${new URL(api.url).host}"\ntoken = "${TOKEN}"\n`, 0o600);
    const port = new URL(api.url).port;
    const ctx = { env: {}, out: () => {}, err: () => {} };
    expect(apiToken({ config: cfg, api: `http://${hostname()}.attacker.invalid:${port}` }, ctx)).toBe("");
    expect(apiToken({ config: cfg, api: `http://${hostname()}:${port}` }, ctx)).toBe(TOKEN);
    expect(apiToken({ config: cfg, api: `http://localhost:${port}` }, ctx)).toBe(TOKEN);
  });

  test("no token at all: the agent's 401 is printed, exit 1", async () => {
    expect(await pgherd(["pause", "--api", api.url])).toMatchObject({ code: 1, out: expect.stringContaining("this action needs the API token") });
  });
});

describe("read-only commands", () => {
  // The agent refuses a config others may read (test/config/schema.test.ts); the commands that
  // only look up api.listen keep working with it, as before.
  test("status reads api.listen from a 0644 config", async () => {
    const cfg = file("shared.toml", `cluster = "test"\nsecret = "${SECRET}"\n[api]\nlisten = "${new URL(api.url).host}"\n`, 0o644);
    const r = await pgherd(["status", "--json", "--config", cfg]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ cluster: "test" });
  });
});

describe("signed requests: the token never leaves the CLI", () => {
  test("a server on the API's address that is not the agent (a local user bound the port while the agent was down) learns nothing it can use: no token, and what it saw is refused by the agent", async () => {
    const tokenFile = file("tok-squat", TOKEN, 0o600);
    const seen: { method: string; url: string; headers: [string, string][]; body: string }[] = [];
    const squatter = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch: async (req) => {
        seen.push({ method: req.method, url: req.url, headers: [...(req.headers as unknown as Iterable<[string, string]>)], body: await req.text() });
        if (new URL(req.url).pathname === "/auth/nonce") return Response.json({ nonce: "0123456789abcdef0123456789abcdef" });
        return Response.json({ message: "ok" });
      },
    });
    try {
      expect((await pgherd(["pause", "--token-file", tokenFile, "--api", `http://127.0.0.1:${squatter.port}`])).code).toBe(0);
      expect(seen.map((s) => `${s.method} ${new URL(s.url).pathname}`)).toEqual(["GET /auth/nonce", "POST /pause"]);
      expect(JSON.stringify(seen)).not.toContain(TOKEN);
      // Replayed to the real agent: its nonce is not one the agent issued.
      const action = seen[1]!;
      const replay = await fetch(`${api.url}/pause`, { method: "POST", headers: action.headers.filter(([k]) => k !== "host"), body: action.body });
      expect(replay.status).toBe(401);
      expect(await replay.text()).toContain("nonce is not one this agent issued");
      expect(source.requests).toEqual([]);
    } finally {
      void squatter.stop(true);
    }
  });

  test("a signed request of the CLI is carried out once: the same request again is refused, and a signature does not carry over to another body or path", async () => {
    const { signRequest } = await import("../../src/api/request-signing.ts");
    const nonce = async () => ((await (await fetch(`${api.url}/auth/nonce`)).json()) as { nonce: string }).nonce;
    const body = JSON.stringify({});
    const n1 = await nonce();
    const headers = { authorization: signRequest(TOKEN, "POST", "/pause", n1, body), "content-type": "application/json" };
    expect((await fetch(`${api.url}/pause`, { method: "POST", headers, body })).status).toBe(200);
    expect((await fetch(`${api.url}/pause`, { method: "POST", headers, body })).status).toBe(401);
    const n2 = await nonce();
    const other = { authorization: signRequest(TOKEN, "POST", "/pause", n2, body), "content-type": "application/json" };
    expect((await fetch(`${api.url}/resume`, { method: "POST", headers: other, body })).status).toBe(403);
    const n3 = await nonce();
    const tampered = { authorization: signRequest(TOKEN, "POST", "/switchover", n3, JSON.stringify({ to: "a" })), "content-type": "application/json" };
    expect((await fetch(`${api.url}/switchover`, { method: "POST", headers: tampered, body: JSON.stringify({ to: "b" }) })).status).toBe(403);
    const n4 = await nonce();
    const wrongKey = { authorization: signRequest("x".repeat(40), "POST", "/pause", n4, body), "content-type": "application/json" };
    expect((await fetch(`${api.url}/pause`, { method: "POST", headers: wrongKey, body })).status).toBe(403);
    expect(source.requests).toEqual([{ kind: "pause" }]);
  });

  test("GET /config with a signed request is the full document, as with the bearer token", async () => {
    const tokenFile = file("tok-config", TOKEN, 0o600);
    const r = await pgherd(["config", "show", "--json", "--token-file", tokenFile, "--api", api.url]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('"redacted": false');
  });
});
