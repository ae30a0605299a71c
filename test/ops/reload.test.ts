// ConfigReloader with a real file and recorded hooks: what a SIGHUP applies, keeps and logs.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../../src/config/schema.ts";
import { loadConfig } from "../../src/config/load.ts";
import { LOG_FORMAT_ENV, memoryLogger, type LogLevel } from "../../src/log.ts";
import { accessRowsInForce } from "../../src/ops/access.ts";
import { ConfigReloader } from "../../src/ops/reload.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const path = join(dir, "pgherd.toml");
const base = `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "db1"\n`;
const write = (extra: string) => writeFileSync(path, `${base}${extra}`, { mode: 0o600 });

function setup(o: { formatFromConfig?: boolean; failApi?: (c: Config) => boolean } = {}) {
  write("");
  const log = memoryLogger();
  const levels: LogLevel[] = [];
  const apis: string[] = [];
  const r = new ConfigReloader(loadConfig(path, { ownerOnly: true }), {
    path, log, setLevel: (l) => levels.push(l), formatFromConfig: o.formatFromConfig ?? true,
    restartApi: async (c) => {
      apis.push(c.api.listen);
      if (o.failApi?.(c)) throw new Error("address in use");
    },
  });
  return { r, log, levels, apis };
}

test("live keys are applied, restart keys reported and kept at their running value", async () => {
  const { r, log, levels, apis } = setup();
  write(`priority = 3\n[log]\nlevel = "debug"\n[api]\nlisten = "127.0.0.1:9999"\n[[access]]\nuser = "app"\naddress = "10.0.0.0/8"\n`);
  const plan = await r.reload();
  expect(plan?.live).toEqual(["access", "api.listen", "log.level"]);
  expect(levels).toEqual(["debug"]);
  expect(apis).toEqual(["127.0.0.1:9999"]);
  expect(accessRowsInForce()).toHaveLength(1);
  expect(r.current().priority).toBe(100);
  expect(log.lines.at(-1)).toBe("warn SIGHUP: applied access, api.listen, log.level; priority changed: it takes effect when the agent restarts");
});

test("only an [api] change restarts the API (a restart would cut the `pgherd reload` asking); other live keys apply without it", async () => {
  const { r, apis } = setup();
  await r.reload();
  expect(apis).toEqual([]);
  write(`[log]\nlevel = "warn"\n`);
  await r.reload();
  expect(r.current().log.level).toBe("warn"); // in force, and what GET /config shows (currentConfig)
  expect(apis).toEqual([]);
  write(`[log]\nlevel = "warn"\n[api]\nlisten = "127.0.0.1:7403"\n`);
  await r.reload();
  expect(apis).toEqual(["127.0.0.1:7403"]);
});

test("a broken file changes nothing and says why", async () => {
  const { r, log } = setup();
  write(`[log]\nlevel = "loud"\n`);
  expect(await r.reload()).toBeNull();
  expect(r.current().log.level).toBe("info");
  expect(log.lines.at(-1)).toContain('keeps its running configuration: pgherd.toml: log.level must be one of "debug"');
});

test("an [api] the API cannot serve: the old [api] is served again and stays in force", async () => {
  const { r, apis, log } = setup({ failApi: (c) => c.api.listen.endsWith(":9999") });
  write(`[api]\nlisten = "127.0.0.1:9999"\n`);
  await r.reload();
  expect(apis).toEqual(["127.0.0.1:9999", "127.0.0.1:7402"]);
  expect(r.current().api.listen).toBe("127.0.0.1:7402");
  expect(log.lines.some((l) => l.startsWith("error SIGHUP: the API cannot serve the new [api] settings (address in use)"))).toBe(true);
});

test("--log-format given: [log] format in the file is neither applied nor reported as applied", async () => {
  const before = process.env[LOG_FORMAT_ENV];
  const { r, log } = setup({ formatFromConfig: false });
  write(`[log]\nformat = "json"\n`);
  await r.reload();
  expect(process.env[LOG_FORMAT_ENV]).toBe(before);
  expect(log.lines.at(-1)).toBe("info SIGHUP: no setting changed");
});
