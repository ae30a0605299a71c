// `pgherd agent` refusing to start writes its refusal in the log format asked for: with JSON,
// a shipper sees one more JSON line, not a plain-text one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, ensureBuilt } from "../../scripts/build.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-logfmt-"));
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function agent(args: string[]) {
  const { PGHERD_LOG_FORMAT: _f, ...env } = process.env;
  const r = spawnSync(BINARY, ["agent", ...args], { encoding: "utf8", timeout: 20_000, env });
  return { code: r.status, lines: r.stderr.trim().split("\n") };
}

test("a start error ([log] format = json) and a config error (--log-format json) are JSON lines, exit 2", () => {
  const cfg = join(dir, "p.toml");
  writeFileSync(cfg, `cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${dir}/state"\n[postgres]\nbin_dir = "/nonexistent"\n[log]\nformat = "json"\n`, { mode: 0o600 });
  const start = agent(["--config", cfg]);
  expect(start.code).toBe(2);
  const last = JSON.parse(start.lines.at(-1)!) as { level: string; message: string };
  expect(last).toMatchObject({ level: "error", message: expect.stringContaining("postgres.bin_dir") });
  for (const l of start.lines) expect(() => JSON.parse(l)).not.toThrow();

  const missing = agent(["--log-format", "json", "--config", join(dir, "none.toml")]);
  expect(missing.code).toBe(2);
  expect(missing.lines.map((l) => JSON.parse(l) as { message: string })).toEqual([expect.objectContaining({ level: "error", message: expect.stringContaining("none.toml: cannot read config file") })]);
});

test("text stays the default: the same refusal is one plain line", () => {
  const r = agent(["--config", join(dir, "none.toml")]);
  expect(r.code).toBe(2);
  expect(r.lines).toEqual([expect.stringMatching(/^none\.toml: cannot read config file /)]);
});
