// Day-2 on compiled agents (real PostgreSQL, loopback): `pgherd status --json` is the agent's
// /node, PostgreSQL's server log goes to the collector directory, SIGHUP applies live settings,
// reports restart-only ones and keeps running on a broken file; --log-format json from the start.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import { freeUdpPort } from "../../src/demo/ports.ts";
import { http, startLoopCluster, until, type LoopCluster, type LoopNode } from "../api/loopback.ts";
import { freePort, pgSkipReason } from "../helpers/pg.ts";
import { Proc } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("day-2 e2e", pgSkipReason);

let c: LoopCluster;
let n: LoopNode;

const pgherd = (args: string[]) => {
  const r = spawnSync(BINARY, args, { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** Key structure of a JSON document (values of live counters differ between two reads). */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).sort().map(([k, x]) => [k, shape(x)]));
  return typeof v;
}

describe("day-2 operations on one agent", () => {
  beforeAll(async () => {
    c = await startLoopCluster({ test: "day2", size: 1 });
    n = c.nodes[0]!;
    await until(async () => (await http(`${n.api}/primary`)).status === 200, "a leading primary", 60_000);
  }, 120_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`day2 e2e logs: ${c.dir}`);
  }, 60_000);

  test("status --json is the agent's /node; the text shows the local PostgreSQL", async () => {
    const r = pgherd(["status", "--json", "--api", n.api]);
    expect(r.code).toBe(0);
    const cli = JSON.parse(r.stdout) as { node: unknown; cluster: string; postgres: { inRecovery: boolean; position: { timeline: number } } };
    const api = (await http(`${n.api}/node`)).json() as typeof cli;
    expect(shape(cli)).toEqual(shape(api));
    expect({ node: cli.node, cluster: cli.cluster, tl: cli.postgres.position.timeline }).toEqual({ node: api.node, cluster: api.cluster, tl: api.postgres.position.timeline });
    const text = pgherd(["status", "--api", n.api]).stdout;
    expect(text).toContain(`postgres  primary, running, timeline ${api.postgres.position.timeline}, LSN `);
    expect(text).toContain("restart   not pending");
  });

  test("PostgreSQL's server log is in <data_dir>.log, written by the collector", async () => {
    const dir = `${n.agent.dataDir}.log`;
    await n.query("SELECT pg_catalog.pg_log_backend_memory_contexts(pg_backend_pid())");
    await until(async () => existsSync(dir) && readdirSync(dir).some((f) => /^postgresql-\w{3}\.log$/.test(f) && readFileSync(join(dir, f), "utf8").includes("logging memory contexts")), "the server log line in the collector's file", 10_000);
  });

  test("SIGHUP: live keys applied (level, format, token), restart keys reported, a broken file keeps the old config", async () => {
    const path = n.agent.configPath;
    const original = readFileSync(path, "utf8");
    const newToken = "n".repeat(40);
    const pause = (token: string) => http(`${n.api}/pause`, { method: "POST", body: "{}", headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
    writeFileSync(path, `priority = 7\n${original.replace(`token = "${c.token}"`, `token = "${newToken}"`)}\n[log]\nlevel = "warn"\nformat = "json"\n`, { mode: 0o600 });
    const before = n.agent.proc.lines.length;
    n.agent.proc.kill("SIGHUP");
    const applied = await n.agent.proc.waitForLine(/SIGHUP: applied/, 10_000);
    const j = JSON.parse(applied) as { level: string; message: string; time: string; fields: Record<string, unknown> };
    expect(j.level).toBe("warn");
    expect(j.message).toBe("SIGHUP: applied api.token, log.format, log.level; priority changed: it takes effect when the agent restarts");
    // The new token works, the old one no longer does (the API was restarted with the new [api]).
    expect((await until(async () => { const r = await pause(newToken); return r.status === 200 ? r : undefined; }, "pause with the new token", 10_000)).status).toBe(200);
    expect((await pause(c.token)).status).toBe(403);
    await http(`${n.api}/resume`, { method: "POST", body: "{}", headers: { "content-type": "application/json", authorization: `Bearer ${newToken}` } });
    // At level warn the pause's warning comes through, its info lines no longer; every line since the reload is JSON.
    await n.agent.proc.waitForLine(/maintenance mode ended/, 10_000);
    expect(n.agent.proc.lines.slice(before).filter((l) => l.includes("action pause"))).toEqual([]);
    const after = n.agent.proc.lines.slice(n.agent.proc.lines.indexOf(applied));
    for (const l of after) {
      const o = JSON.parse(l) as Record<string, unknown>;
      expect(Object.keys(o).sort()).toEqual(["fields", "level", "message", "time"]);
    }

    writeFileSync(path, `${original}\n[election]\nlease_ms = "soon"\n`, { mode: 0o600 });
    n.agent.proc.kill("SIGHUP");
    const refused = JSON.parse(await n.agent.proc.waitForLine(/not reloaded/, 10_000)) as { level: string; message: string };
    expect(refused.level).toBe("error");
    expect(refused.message).toContain("election.lease_ms must be a number");
    expect(refused.message).toContain("keeps its running configuration");
    expect((await http(`${n.api}/primary`)).status).toBe(200);
    expect((await pause(newToken)).status).toBe(200); // still the reloaded token
    await http(`${n.api}/resume`, { method: "POST", body: "{}", headers: { "content-type": "application/json", authorization: `Bearer ${newToken}` } });
    writeFileSync(path, original, { mode: 0o600 });
  }, 60_000);
});

test("--log-format json: every line the agent writes from its start is JSON", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-jsonlog-"));
  const cfg = join(dir, "w.toml");
  const api = await freePort();
  const mesh = await freePort([api]);
  writeFileSync(cfg, [
    `cluster = "jsonlog"`, `secret = "${"j".repeat(40)}"`, `node_name = "w1"`, `role = "witness"`, `state_dir = "${join(dir, "state")}"`,
    `[discovery]`, `port = ${await freeUdpPort()}`, `broadcast = []`, `[mesh]`, `listen = "127.0.0.1:${mesh}"`, `[api]`, `listen = "127.0.0.1:${api}"`,
  ].join("\n"), { mode: 0o600 });
  const p = new Proc([BINARY, "agent", "--log-format", "json", "--config", cfg]);
  try {
    await p.waitForLine(/"message":"api listening on /, 20_000);
    p.kill("SIGTERM");
    await p.waitExit(10_000);
    expect(p.lines.length).toBeGreaterThan(2);
    for (const l of p.lines) {
      const o = JSON.parse(l) as { level: string; time: string; message: string; fields: { tag?: string } };
      expect(typeof o.message).toBe("string");
      expect(Number.isNaN(Date.parse(o.time))).toBe(false);
      expect(["debug", "info", "warn", "error"]).toContain(o.level);
      expect(o.fields.tag).toMatch(/^w1/);
    }
  } finally {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
