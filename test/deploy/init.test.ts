// `pgherd init` as root writes a config the unit's user (postgres.os_user) owns: the agent runs
// as that user (deploy/pgherd.service) and refuses a config file owned by anyone else but root,
// which it could not read at mode 0600 anyway.
import { afterAll, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../scripts/build.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { run } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const pg = await lookupOsUser("postgres").catch(() => null);
requireReal("init as root", !isRoot() ? "needs root" : !pg ? "no OS user postgres" : null);

const dir = mkdtempSync("/tmp/pgherd-init-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const init = (path: string, ...more: string[]) => run([process.execPath, join(ROOT, "src/main.ts"), "init", "--config", path, ...more], { cwd: dir, timeoutMs: 30_000 });

test("as root, the new config belongs to postgres.os_user, mode 0600", async () => {
  const path = join(dir, "etc", "pgherd.toml");
  const r = await init(path);
  expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
  expect(r.stdout).toContain("owned by postgres, the agent's OS user");
  const st = statSync(path);
  expect({ uid: st.uid, gid: st.gid, mode: (st.mode & 0o777).toString(8) }).toEqual({ uid: pg!.uid, gid: pg!.gid, mode: "600" });
  // --force replaces it with a new file: handed over again.
  expect((await init(path, "--force")).code).toBe(0);
  expect(statSync(path).uid).toBe(pg!.uid);
});

test("a link put in the config's place is replaced, never followed to chown its target", async () => {
  const target = join(dir, "root-only");
  writeFileSync(target, "x", { mode: 0o600 });
  const path = join(dir, "linked.toml");
  symlinkSync(target, path);
  expect((await init(path, "--force")).code).toBe(0);
  expect(lstatSync(path).isSymbolicLink()).toBe(false);
  expect(statSync(target).uid).toBe(0);
  expect(existsSync(target)).toBe(true);
});
