// `pgherd install --root DIR` / `uninstall` (compiled binary) in a scratch root: exactly the
// expected files with their modes and owner, the unit identical to deploy/pgherd.service and
// accepted by systemd-analyze verify, the config valid and kept on a second install and on
// uninstall (removed with --purge), nothing else touched.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { BINARY, ensureBuilt, ROOT } from "../../scripts/build.ts";
import { parseConfig } from "../../src/config/load.ts";
import { serviceUser } from "../../src/ops/install-plan.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { requireReal } from "../helpers/require.ts";

const unit = readFileSync(join(ROOT, "deploy", "pgherd.service"), "utf8");
let root: string;

function pgherd(args: string[]) {
  const r = spawnSync(BINARY, args, { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file (not directory) under root: path → "mode uid". */
function files(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out[`/${relative(dir, p)}`] = `${(st.mode & 0o7777).toString(8).padStart(4, "0")} ${st.uid}`;
    }
  };
  walk(dir);
  return out;
}

beforeAll(() => {
  requireReal("install test", isRoot() ? null : "needs root (the config belongs to the service user)");
  ensureBuilt();
  root = mkdtempSync("/tmp/pgherd-install-");
}, 120_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("install: the binary, a fresh 0600 config owned by the unit's user, the unit; then the next step", async () => {
  const user = await lookupOsUser(serviceUser(unit));
  const r = pgherd(["install", "--root", root]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(files(root)).toEqual({
    "/usr/local/bin/pgherd": "0755 0",
    "/etc/pgherd/pgherd.toml": `0600 ${user.uid}`,
    "/etc/systemd/system/pgherd.service": "0644 0",
  });
  expect(readFileSync(join(root, "etc/systemd/system/pgherd.service"), "utf8")).toBe(unit);
  expect(readFileSync(join(root, "usr/local/bin/pgherd")).equals(readFileSync(BINARY))).toBe(true);
  const cfg = parseConfig(readFileSync(join(root, "etc/pgherd/pgherd.toml"), "utf8"), "pgherd.toml");
  expect(cfg.secret).toMatch(/^[A-Za-z0-9_-]{64}$/);
  expect(r.stdout).toContain("next:");
  expect(r.stdout).toContain("systemctl enable --now pgherd");
  expect(pgherd(["config", "check", join(root, "etc/pgherd/pgherd.toml")]).code).toBe(0);
}, 60_000);

test("systemd-analyze verify accepts the installed unit", async () => {
  const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find(existsSync);
  requireReal("systemd-analyze verify", analyze ? null : "systemd-analyze is not installed (Debian package systemd)");
  // verify checks that ExecStart exists on this host: point it at the installed binary.
  const copy = join(root, "verify.service");
  writeFileSync(copy, readFileSync(join(root, "etc/systemd/system/pgherd.service"), "utf8").replace(/^ExecStart=\/usr\/local\/bin\/pgherd /m, `ExecStart=${join(root, "usr/local/bin/pgherd")} `));
  try {
    const r = spawnSync(analyze!, ["verify", copy], { encoding: "utf8" });
    // Only lines about this unit count: other packages' units on this host may draw warnings of their own.
    const others = /^\/(lib|usr\/lib|etc)\/systemd\/system\/[^:]+\.service:/;
    expect(r.stderr.trim().split("\n").filter((l) => l && !others.test(l))).toEqual([]);
    expect(r.status).toBe(0);
  } finally {
    rmSync(copy);
  }
});

test("a second install keeps the config; uninstall removes binary and unit, keeps the config; --purge removes it", () => {
  const path = join(root, "etc/pgherd/pgherd.toml");
  const before = readFileSync(path, "utf8");
  expect(pgherd(["install", "--root", root]).stdout).toContain(`kept ${path}`);
  expect(readFileSync(path, "utf8")).toBe(before);
  const u = pgherd(["uninstall", "--root", root]);
  expect(u.code).toBe(0);
  expect(Object.keys(files(root))).toEqual(["/etc/pgherd/pgherd.toml"]);
  expect(u.stdout).toContain("untouched");
  expect(pgherd(["uninstall", "--root", root, "--purge"]).code).toBe(0);
  expect(files(root)).toEqual({});
  expect(existsSync(join(root, "etc/pgherd"))).toBe(false);
});

test("a --root whose etc is a link to another directory is refused, and nothing is written there (review: mkdir and the rename went through it)", () => {
  const other = mkdtempSync("/tmp/pgherd-install-other-");
  const linked = mkdtempSync("/tmp/pgherd-install-linked-");
  try {
    symlinkSync(other, join(linked, "etc"));
    const r = pgherd(["install", "--root", linked]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${join(linked, "etc")} is a link`);
    expect(readdirSync(other)).toEqual([]);
  } finally {
    rmSync(other, { recursive: true, force: true });
    rmSync(linked, { recursive: true, force: true });
  }
});

test("uninstall --root removes nothing through a link on the way down (review: root/etc pointing at another tree lost its unit and cluster secret)", () => {
  const other = mkdtempSync("/tmp/pgherd-install-other-");
  const linked = mkdtempSync("/tmp/pgherd-install-linked-");
  try {
    expect(pgherd(["install", "--root", other]).code).toBe(0); // a real tree: what a link could point at
    const before = files(other);
    expect(Object.keys(before).length).toBeGreaterThan(0);
    symlinkSync(join(other, "etc"), join(linked, "etc"));
    const r = pgherd(["uninstall", "--root", linked, "--purge"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${join(linked, "etc")} is a link: not removing through it`);
    expect(files(other)).toEqual(before);
  } finally {
    rmSync(other, { recursive: true, force: true });
    rmSync(linked, { recursive: true, force: true });
  }
});
