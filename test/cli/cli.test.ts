// Runs the compiled binary, as an operator would.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { BINARY, ensureBuilt } from "../../scripts/build.ts";
import { parseConfig } from "../../src/config/load.ts";
import { requireReal } from "../helpers/require.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-cli-"));
beforeAll(() => {
  ensureBuilt(); // rebuilds only if src/ changed since the last build
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Run = { code: number | null; stdout: string; stderr: string };

function pgherd(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Run {
  // No CI/NO_COLOR: prove the binary itself strips colours when output is not a terminal.
  const { PGHERD_CONFIG: _c, CI: _ci, NO_COLOR: _nc, ...env } = process.env;
  const r = spawnSync(BINARY, args, {
    cwd: opts.cwd ?? dir, env: { ...env, ...opts.env }, encoding: "utf8", timeout: 20_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ESC = "\x1b[";

describe("help and version", () => {
  test("--help lists the commands, plain text, exit 0", () => {
    const r = pgherd(["--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["agent", "init", "cluster", "version"]) expect(r.stdout).toContain(cmd);
    expect(r.stdout).toContain("USAGE");
    expect(r.stdout).not.toContain(ESC);
  });

  test("a command's --help shows its options", () => {
    const r = pgherd(["init", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--cluster");
    expect(r.stdout).toContain("--force");
  });

  test("version prints package version, bun version and platform", () => {
    const r = pgherd(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`pgherd ${pkg.version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
    expect(pgherd(["--version"]).stdout).toBe(r.stdout);
  });

  test("usage errors exit 2 and say what was wrong", () => {
    const none = pgherd([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("No command specified");
    const unknown = pgherd(["bogus"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown command bogus");
    const typo = pgherd(["agent", "--confg", "x.toml"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown option --confg");
    const noValue = pgherd(["agent", "--config"]);
    expect(noValue.code).toBe(2);
    expect(noValue.stderr).toContain("option --config needs a value");
  });

  test("cluster ls without a reachable agent fails and names the agent it tried", () => {
    const r = pgherd(["cluster", "ls", "--api", "http://127.0.0.1:9"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot reach the pgherd agent at http://127.0.0.1:9");
  });

  test("actions without a reachable agent fail and name it", () => {
    const r = pgherd(["switchover", "--api", "http://127.0.0.1:9"], { env: { PGHERD_TOKEN: "x".repeat(32) } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot reach the pgherd agent at http://127.0.0.1:9");
  });

  test("--token is refused (ps shows it): exit 2, pointing to --token-file and $PGHERD_TOKEN", () => {
    const r = pgherd(["switchover", "--api", "http://127.0.0.1:9", "--token", "x".repeat(32)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("pgherd: --token is refused: every local user sees a command line (ps, /proc). Use --token-file PATH or $PGHERD_TOKEN\n");
  });
});

describe("init", () => {
  const secretOf = (text: string) => /^secret = "([^"]+)"$/m.exec(text)?.[1] ?? "";

  test("writes a 0600 config with a fresh secret that parses", () => {
    const path = join(dir, "etc", "a.toml");
    const r = pgherd(["init", "--config", path, "--cluster", "prod-1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const text = readFileSync(path, "utf8");
    const secret = secretOf(text);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{64}$/); // 48 bytes, base64url
    expect(r.stdout + r.stderr).not.toContain(secret);
    const cfg = parseConfig(text, "a.toml");
    expect(cfg.cluster).toBe("prod-1");
    expect(cfg.secret).toBe(secret);

    const other = join(dir, "b.toml");
    expect(pgherd(["init", "--config", other]).code).toBe(0);
    expect(secretOf(readFileSync(other, "utf8"))).not.toBe(secret);
    expect(parseConfig(readFileSync(other, "utf8"), "b.toml").cluster).toBe("main");
  });

  test("refuses to overwrite without --force, replaces with it", () => {
    const path = join(dir, "c.toml");
    expect(pgherd(["init", "--config", path]).code).toBe(0);
    const first = readFileSync(path, "utf8");
    const again = pgherd(["init", "--config", path]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${path} already exists`);
    expect(again.stderr).toContain("--force");
    expect(readFileSync(path, "utf8")).toBe(first);
    expect(pgherd(["init", "--config", path, "--force"]).code).toBe(0);
    expect(secretOf(readFileSync(path, "utf8"))).not.toBe(secretOf(first));
  });

  test("honours $PGHERD_CONFIG and rejects a bad cluster name without writing", () => {
    const path = join(dir, "env.toml");
    expect(pgherd(["init"], { env: { PGHERD_CONFIG: path } }).code).toBe(0);
    expect(existsSync(path)).toBe(true);
    const bad = join(dir, "bad-name.toml");
    const r = pgherd(["init", "--config", bad, "--cluster", "Prod 1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("bad-name.toml: cluster must be");
    expect(existsSync(bad)).toBe(false);
  });
});

describe("agent", () => {
  test("a bad config exits 2 naming the key", () => {
    const path = join(dir, "bad.toml");
    writeFileSync(path, `cluster = "main"\nsecret = "${"s".repeat(40)}"\n[discovery]\nbrodcast = ["auto"]\n`, { mode: 0o600 });
    const r = pgherd(["agent", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("bad.toml: unknown key discovery.brodcast\n");
  });

  test("a config group or others may read exits 2 naming the file and its mode", () => {
    const path = join(dir, "shared.toml");
    writeFileSync(path, `cluster = "main"\nsecret = "${"s".repeat(40)}"\n`);
    chmodSync(path, 0o644);
    const r = pgherd(["agent", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`shared.toml: ${path} has mode 0644: it holds the cluster secret, so group and others must have no access (chmod 600 ${path})\n`);
  });

  test("a value that only rendering would refuse exits 2 at start", () => {
    const path = join(dir, "render.toml");
    writeFileSync(path, `cluster = "main"\nsecret = "${"s".repeat(40)}"\n[postgres]\nlisten_addresses = "*\\nport = 1"\n`, { mode: 0o600 });
    const r = pgherd(["agent", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('render.toml: postgres.listen_addresses must be "*" or a comma-separated list of host names and IP addresses\n');
  });

  test("a postgres.bin_dir without PostgreSQL exits 2 (no restart can fix it) naming key and path", () => {
    const path = join(dir, "nobin.toml");
    writeFileSync(path, `cluster = "main"\nsecret = "${"s".repeat(40)}"\n[postgres]\nbin_dir = "/nonexistent/bin"\n`, { mode: 0o600 });
    const r = pgherd(["agent", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path}: postgres.bin_dir: postgres.bin_dir "/nonexistent/bin"`);
  });

  test("a missing config exits 2 naming the path", () => {
    const path = join(dir, "missing", "pgherd.toml");
    const r = pgherd(["agent", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`pgherd.toml: cannot read config file ${path}: file not found\n`);
  });

  test("$PGHERD_CONFIG is the default path; --config wins over it", () => {
    const fromEnv = join(dir, "from-env.toml");
    expect(pgherd(["agent"], { env: { PGHERD_CONFIG: fromEnv } }).stderr).toContain(fromEnv);
    const fromArg = join(dir, "from-arg.toml");
    expect(pgherd(["agent", "--config", fromArg], { env: { PGHERD_CONFIG: fromEnv } }).stderr).toContain(fromArg);
  });

  // The binary must not pick up .env or bunfig.toml from its working directory (see build.ts).
  test("ignores .env and bunfig.toml in the working directory", () => {
    // Without a config option the binary reads /etc/pgherd/pgherd.toml: here it must not exist.
    requireReal("the working-directory test", existsSync("/etc/pgherd/pgherd.toml") ? "/etc/pgherd/pgherd.toml exists (the binary would start an agent from it)" : null,
      "run it where pgherd is not installed");
    const cwd = mkdtempSync(join(dir, "cwd-"));
    writeFileSync(join(cwd, ".env"), `PGHERD_CONFIG=${join(cwd, "dotenv.toml")}\n`);
    writeFileSync(join(cwd, "bunfig.toml"), 'preload = ["./preload.ts"]\n');
    writeFileSync(join(cwd, "preload.ts"), `require("node:fs").writeFileSync(${JSON.stringify(join(cwd, "preloaded"))}, "x");\n`);
    const r = pgherd(["agent"], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("/etc/pgherd/pgherd.toml: file not found");
    expect(existsSync(join(cwd, "preloaded"))).toBe(false);
  });
});
