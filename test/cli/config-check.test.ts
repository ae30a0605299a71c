// `pgherd config check [FILE]`: the agent's own validation, without starting anything.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/run.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-check-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const good = `cluster = "main"\nsecret = "${"s".repeat(40)}"\nnode_name = "db1"\n`;

async function check(args: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runCli(["config", "check", ...args], { env, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}
function file(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode });
  return p;
}

test("a valid file: exit 0 and a one-line summary", async () => {
  const p = file("ok.toml", good);
  expect(await check([p])).toEqual({ code: 0, out: `${p}: valid (cluster main, node db1, database)\n`, err: "" });
  // Without FILE: $PGHERD_CONFIG, as the agent.
  expect((await check([], { PGHERD_CONFIG: p })).code).toBe(0);
});

test("a bad value, an unknown key and a syntax error: exit 2 naming file and key", async () => {
  expect(await check([file("bad.toml", `${good}[election]\nlease_ms = "soon"\n[mesh]\nlisen = "x"\n`)])).toEqual({
    code: 2, out: "",
    err: "bad.toml: unknown key mesh.lisen\nbad.toml: election.lease_ms must be a number (got string)\n",
  });
  const syntax = await check([file("syntax.toml", `${good}[api\n`)]);
  expect(syntax.code).toBe(2);
  expect(syntax.err).toStartWith("syntax.toml: TOML syntax error at line 4");
});

test("a file others may read is refused like the agent refuses it; a missing file is named", async () => {
  const r = await check([file("open.toml", good, 0o644)]);
  expect(r.code).toBe(2);
  expect(r.err).toContain("open.toml: ");
  expect(r.err).toContain("has mode 0644");
  const missing = await check([join(dir, "none.toml")]);
  expect(missing).toMatchObject({ code: 2, err: expect.stringContaining("none.toml: cannot read config file") });
});

test("the secret files it names are checked as the agent reads them: a key others may read, a link, a missing password file", async () => {
  const key = file("api.key", "KEY", 0o640);
  symlinkSync(file("real.key", "KEY"), join(dir, "link.key"));
  const cert = file("api.pem", "CERT", 0o644);
  const r = await check([file("secrets.toml", `${good}[api]\ntls_cert = "${cert}"\ntls_key = "${key}"\n[consensus]\ntls_ca = "${cert}"\ntls_cert = "${cert}"\ntls_key = "${join(dir, "link.key")}"\nendpoints = ["https://10.0.0.1:2379"]\nusername = "u"\npassword_file = "${join(dir, "none")}"\n`)]);
  expect(r.code).toBe(2);
  expect(r.err.split("\n").filter(Boolean)).toEqual([
    `secrets.toml: api.tls_key: ${key} has mode 0640: it holds a secret, so group and others must have no access (chmod 600 ${key})`,
    `secrets.toml: consensus.tls_key: ${join(dir, "link.key")} is a symbolic link (the agent opens it without following links)`,
    `secrets.toml: consensus.password_file: ${join(dir, "none")}: no such file`,
  ]);
  chmodSync(key, 0o600);
  expect((await check([file("secrets-ok.toml", `${good}[api]\ntls_cert = "${cert}"\ntls_key = "${key}"\n`)])).code).toBe(0);
});
