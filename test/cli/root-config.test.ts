// A root CLI command (`pgherd backup`) uses a config only when root owns it or its owner is its own
// postgres.os_user: whoever can write it chooses the programs and files pgherd runs and reads
// (a postgres-owned config naming os_user = "root" made `pgherd backup ls` run pgBackRest, and
// with it a pgbackrest.conf the postgres user wrote, as root).
import { afterAll, expect, test } from "bun:test";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigAsCaller } from "../../src/cli/root-config.ts";
import { parseConfig } from "../../src/config/load.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-rootcfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const text = (osUser: string) => `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\n[postgres]\nos_user = "${osUser}"\n`;
const write = (name: string, osUser: string, uid: number, gid: number) => {
  const p = join(dir, name);
  writeFileSync(p, text(osUser), { mode: 0o600 });
  chownSync(p, uid, gid);
  return p;
};

test("postgres.os_user is never root", () => {
  expect(() => parseConfig(text("root"), "pgherd.toml")).toThrow("postgres.os_user must not be root");
});

test.skipIf(process.getuid?.() !== 0)("as root: a config of root, or of its own os_user, is used; one another user owns is refused, naming owner and fix", async () => {
  const pg = await lookupOsUser("postgres");
  expect((await loadConfigAsCaller(write("root.toml", "postgres", 0, 0))).postgres.os_user).toBe("postgres");
  expect((await loadConfigAsCaller(write("pg.toml", "postgres", pg.uid, pg.gid))).postgres.os_user).toBe("postgres");
  const theirs = write("nobody.toml", "postgres", 65534, 65534);
  await expect(loadConfigAsCaller(theirs)).rejects.toThrow(`${theirs} is owned by uid 65534, which is neither root nor postgres.os_user "postgres" (uid ${pg.uid})`);
  // A postgres-owned config naming another user: not that user's to choose.
  const other = write("other.toml", "nobody", pg.uid, pg.gid);
  await expect(loadConfigAsCaller(other)).rejects.toThrow(`is owned by uid ${pg.uid}, which is neither root nor postgres.os_user "nobody"`);
  // Not root: nothing extra (the command runs as that user anyway).
  expect((await loadConfigAsCaller(theirs, 1000)).cluster).toBe("c");
});
