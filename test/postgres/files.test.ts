// File plumbing under the managed config: atomic writes with owner/mode, standby.signal,
// data-dir swap after a clone, passfiles, and refusal to treat a random dir as a data dir.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { cloneDirFor, notCopied, removeOldCopies, removeUnfinishedClone, swapDataDir, swapProblem } from "../../src/postgres/basebackup.ts";
import { oldCopiesBeyond } from "../../src/postgres/old-copies.ts";
import { STOP_EVERY, treeBytes, writeFileAtomic } from "../../src/postgres/fsutil.ts";
import { fsRoom, fsRoomFor } from "../../src/postgres/liveness-obs.ts";
import { setStandbySignal, writeManagedConfig } from "../../src/postgres/managed-config.ts";
import { writePassfile } from "../../src/postgres/passwords.ts";
import { INCLUDE_LINE } from "../../src/postgres/pgconf.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { requireReal } from "../helpers/require.ts";

let dir: string;
beforeEach(() => { dir = mkdtempSync("/tmp/pgherd-files-"); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("writeFileAtomic", () => {
  test("writes with the mode regardless of umask, reports unchanged content, leaves no temp files", async () => {
    const p = join(dir, "f.conf");
    expect(await writeFileAtomic(p, "a\n", { mode: 0o600 })).toBe(true);
    expect((await stat(p)).mode & 0o777).toBe(0o600);
    expect(await writeFileAtomic(p, "a\n", { mode: 0o640 })).toBe(false);
    expect((await stat(p)).mode & 0o777).toBe(0o640); // mode enforced even when content is equal
    expect(await writeFileAtomic(p, "b\n", { mode: 0o600 })).toBe(true);
    expect(await readFile(p, "utf8")).toBe("b\n");
    expect(readdirSync(dir)).toEqual(["f.conf"]);
  });

  test("chowns to the given owner when root", async () => {
    requireReal("chown to another owner", isRoot() ? null : "needs root");
    const pg = await lookupOsUser("postgres");
    const p = join(dir, "pass");
    await writePassfile(p, [{ host: "*", port: 5432, database: "*", user: "repl", password: "s:e\\cret" }], pg);
    const st = await stat(p);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([pg.uid, pg.gid, 0o600]);
    expect(await readFile(p, "utf8")).toBe("*:5432:*:repl:s\\:e\\\\cret\n");
  });
});

describe("data dir files", () => {
  test("standby.signal is created and removed idempotently", async () => {
    expect(await setStandbySignal(dir, true)).toBe(true);
    expect(await setStandbySignal(dir, true)).toBe(false);
    expect(readdirSync(dir)).toContain("standby.signal");
    expect(await setStandbySignal(dir, false)).toBe(true);
    expect(await setStandbySignal(dir, false)).toBe(false);
  });

  test("swapDataDir moves the old dir aside (never deletes it) and the clone into place", async () => {
    const data = join(dir, "data");
    const fresh = cloneDirFor(data);
    expect(fresh).toBe(join(dir, "data.pgherd-clone"));
    await mkdir(data);
    await writeFile(join(data, "old"), "x");
    await mkdir(fresh);
    await writeFile(join(fresh, "new"), "y");
    const aside = await swapDataDir(fresh, data, new Date("2026-01-02T03:04:05.678Z"));
    expect(aside).toBe(`${data}.pgherd-old-2026-01-02T03-04-05-678Z`);
    expect(readdirSync(data)).toEqual(["new"]);
    expect(readdirSync(aside!)).toEqual(["old"]);
    await mkdir(fresh);
    rmSync(data, { recursive: true });
    expect(await swapDataDir(fresh, data)).toBeNull(); // nothing to move aside
  });

  test("oldCopiesBeyond: the copies moved aside for this data directory beyond the newest `keep`, by their time", () => {
    const at = (t: string) => `data.pgherd-old-${t}`;
    const dirs = (...names: string[]) => names.map((name) => ({ name, dir: true }));
    const entries = dirs("data", "data.pgherd-clone", at("2026-01-02T03-04-05-678Z"), at("2025-12-31T23-59-59-999Z"), at("2026-03-01T00-00-00-000Z"),
      "data.pgherd-old-mine", "data2.pgherd-old-2020-01-01T00-00-00-000Z", `x${at("2020-01-01T00-00-00-000Z")}`);
    expect(oldCopiesBeyond(entries, "data", 1, null)).toEqual([at("2026-01-02T03-04-05-678Z"), at("2025-12-31T23-59-59-999Z")]);
    expect(oldCopiesBeyond(entries, "data", 0, null)).toEqual([at("2026-03-01T00-00-00-000Z"), at("2026-01-02T03-04-05-678Z"), at("2025-12-31T23-59-59-999Z")]);
    expect(oldCopiesBeyond(entries, "data", 3, null)).toEqual([]);
    // The copy this swap made is kept first, even when the clock stepped back before it.
    expect(oldCopiesBeyond(entries, "data", 1, at("2025-12-31T23-59-59-999Z"))).toEqual([at("2026-03-01T00-00-00-000Z"), at("2026-01-02T03-04-05-678Z")]);
    // A link or a file named like a copy is no copy: it does not count toward `keep`, and it goes.
    const withLink = [...entries.filter((e) => e.name !== at("2026-03-01T00-00-00-000Z")), { name: at("2026-03-01T00-00-00-000Z"), dir: false }];
    expect(oldCopiesBeyond(withLink, "data", 1, null)).toEqual([at("2025-12-31T23-59-59-999Z"), at("2026-03-01T00-00-00-000Z")]);
    // sparePrimaries: a former primary's copy stays (before a clone); a copy left half removed always goes.
    const mixed = [{ name: at("2026-01-02T03-04-05-678Z"), dir: true, primary: true }, { name: at("2025-12-31T23-59-59-999Z"), dir: true, primary: false },
      { name: "data.pgherd-removing-2024-01-01T00-00-00-000Z", dir: true }];
    expect(oldCopiesBeyond(mixed, "data", 0, null, { sparePrimaries: true })).toEqual([at("2025-12-31T23-59-59-999Z"), "data.pgherd-removing-2024-01-01T00-00-00-000Z"]);
    expect(oldCopiesBeyond(mixed, "data", 0, null)).toEqual([at("2026-01-02T03-04-05-678Z"), at("2025-12-31T23-59-59-999Z"), "data.pgherd-removing-2024-01-01T00-00-00-000Z"]);
  });

  test("removeOldCopies removes whole trees beyond the newest `keep`, a link named like a copy but not what it points to", async () => {
    const data = join(dir, "data");
    await mkdir(data);
    const copies: string[] = [];
    for (const t of ["2026-01-01T00-00-00-000Z", "2026-02-01T00-00-00-000Z", "2026-03-01T00-00-00-000Z"]) {
      const c = `${data}.pgherd-old-${t}`;
      await mkdir(join(c, "base", "1"), { recursive: true });
      await writeFile(join(c, "base", "1", "123"), "x");
      copies.push(c);
    }
    const outside = join(dir, "outside");
    await mkdir(outside);
    await writeFile(join(outside, "keep"), "not ours");
    symlinkSync(outside, `${data}.pgherd-old-2025-01-01T00-00-00-000Z`);
    const log = memoryLogger();
    expect(await removeOldCopies(data, 1, log)).toEqual([copies[1]!, copies[0]!, `${data}.pgherd-old-2025-01-01T00-00-00-000Z`]);
    expect(readdirSync(dir).sort()).toEqual(["data", "data.pgherd-old-2026-03-01T00-00-00-000Z", "outside"]);
    expect(readFileSync(join(outside, "keep"), "utf8")).toBe("not ours");
    expect(log.lines.filter((l) => l.includes("removed previous data directory"))).toHaveLength(3);
    expect(await removeOldCopies(data, 1, log)).toEqual([]);
    expect(await removeOldCopies(join(dir, "no", "such", "data"), 0, log)).toEqual([]); // a first clone's parent may not exist yet
  });

  test("removeOldCopies before a clone spares a former primary's copy (no standby.signal) and finishes one left half removed; an unfinished clone goes", async () => {
    const data = join(dir, "data");
    const primaryCopy = `${data}.pgherd-old-2026-01-01T00-00-00-000Z`;
    const standbyCopy = `${data}.pgherd-old-2026-02-01T00-00-00-000Z`;
    const half = `${data}.pgherd-removing-2025-01-01T00-00-00-000Z`;
    for (const d of [data, primaryCopy, standbyCopy, join(half, "base")]) await mkdir(d, { recursive: true });
    await writeFile(join(standbyCopy, "standby.signal"), "");
    await writeFile(join(half, "base", "1"), "x");
    const log = memoryLogger();
    expect(await removeOldCopies(data, 0, log, { sparePrimaries: true })).toEqual([standbyCopy, half]);
    expect(readdirSync(dir).sort()).toEqual(["data", "data.pgherd-old-2026-01-01T00-00-00-000Z"]);
    const clone = cloneDirFor(data);
    await mkdir(join(clone, "base"), { recursive: true });
    await writeFile(join(clone, "base", "2"), "y");
    await removeUnfinishedClone(clone, log);
    expect(readdirSync(dir).sort()).toEqual(["data", "data.pgherd-old-2026-01-01T00-00-00-000Z"]);
    expect(log.lines.some((l) => l.includes("an unfinished clone of an earlier attempt"))).toBe(true);
    await removeUnfinishedClone(clone, log); // none: nothing to do
  });

  test("writeManagedConfig refuses a directory without PG_VERSION and strips managed keys from auto.conf", async () => {
    const log = memoryLogger();
    const cfg = {
      dataDir: dir, osUser: isRoot() ? "postgres" : (process.env.USER ?? "root"), standby: false, log,
      conf: { listenAddresses: ["127.0.0.1"], port: 5432, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true as const, walLogHints: true as const, unixSocketDir: dir },
      hba: { superuser: "postgres", replUser: "repl", monitorUser: "mon", peers: ["10.0.0.2"] },
    };
    await expect(writeManagedConfig(cfg)).rejects.toThrow(/not a PostgreSQL data directory/);
    await writeFile(join(dir, "PG_VERSION"), "15\n");
    await writeFile(join(dir, "postgresql.conf"), "max_connections = 50\n");
    await writeFile(join(dir, "postgresql.auto.conf"), "# Do not edit this file manually!\nport = '6543'\nwork_mem = '8MB'\nhba_file = '/tmp/elsewhere'\n");
    const r = await writeManagedConfig(cfg);
    expect(r.changed.sort()).toEqual(["pg_hba.conf", "pg_ident.conf", "pgherd.conf", "postgresql.auto.conf", "postgresql.conf"]);
    expect(await readFile(join(dir, "postgresql.auto.conf"), "utf8")).toBe("# Do not edit this file manually!\nwork_mem = '8MB'\n");
    expect(await readFile(join(dir, "postgresql.conf"), "utf8")).toBe(`max_connections = 50\n${INCLUDE_LINE}\n`);
    expect(log.lines.some((l) => l.startsWith("warn") && l.includes("port, hba_file (managed by pgherd): removed"))).toBe(true);
    // Recovery targets (a restore cut short left them; every clone copies them): kept for a primary's
    // start (the restore's own recovery), removed for a standby's, which would end its recovery
    // there and promote itself with recovery_target_action = 'promote' (review).
    const targets = "recovery_target_time = '2026-12-01 00:00:00+00'\nrecovery_target_action = 'promote'\n";
    await writeFile(join(dir, "postgresql.auto.conf"), `work_mem = '8MB'\n${targets}`);
    await writeManagedConfig(cfg);
    expect(await readFile(join(dir, "postgresql.auto.conf"), "utf8")).toBe(`work_mem = '8MB'\n${targets}`);
    await writeManagedConfig({ ...cfg, standby: true });
    expect(await readFile(join(dir, "postgresql.auto.conf"), "utf8")).toBe("work_mem = '8MB'\n");
    expect(log.lines.some((l) => l.includes("recovery_target_time, recovery_target_action (managed by pgherd): removed"))).toBe(true);
    // Unless that restore is still under way here (store/restore-marker.ts): a standby's files written
    // over it (a promotion, a reload) dropped its target, and the next start replayed past it (review).
    await writeFile(join(dir, "postgresql.auto.conf"), `work_mem = '8MB'\n${targets}`);
    await writeManagedConfig({ ...cfg, standby: true, keepRecoveryTargets: true });
    expect(await readFile(join(dir, "postgresql.auto.conf"), "utf8")).toBe(`work_mem = '8MB'\n${targets}`);
    await rm(join(dir, "standby.signal"), { force: true });
    // A bad peer fails before anything is written.
    const before = await readFile(join(dir, "pg_hba.conf"), "utf8");
    await expect(writeManagedConfig({ ...cfg, hba: { ...cfg.hba, peers: ["10.0.0.0/8"] } })).rejects.toThrow(/not an IPv4/);
    expect(await readFile(join(dir, "pg_hba.conf"), "utf8")).toBe(before);
  });
});

describe("a data directory a clone can be swapped in for (found by review)", () => {
  test("a plain directory, or none yet, is fine; a symbolic link and a mount point are refused, naming the key", async () => {
    const data = join(dir, "my data");
    const noMounts = join(dir, "mountinfo-none");
    await writeFile(noMounts, "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n");
    expect(await swapProblem(data, noMounts)).toBeNull(); // not there yet: a first clone
    await mkdir(data);
    expect(await swapProblem(data, noMounts)).toBeNull();
    // The swap renames: a link would be replaced and its directory left behind, never pruned.
    const link = join(dir, "linked");
    symlinkSync(data, link);
    expect(await swapProblem(link, noMounts)).toMatch(/^postgres\.data_dir .*linked is a symbolic link: .*set data_dir to that directory itself$/);
    // A mount point (here on the same device, as a bind mount: mountinfo says it; octal escapes as the kernel writes them).
    const mounted = join(dir, "mountinfo-data");
    await writeFile(mounted, `22 1 8:1 / / rw - ext4 /dev/sda1 rw\n97 22 8:17 / ${data.replace(" ", "\\040")} rw,noatime shared:50 - xfs /dev/sdb1 rw\n`);
    expect(await swapProblem(data, mounted)).toMatch(/is a mount point: .*cannot be renamed; set data_dir to a directory inside the mount/);
  });
});

describe("treeBytes and notCopied (a clone's size from this node's own data directory)", () => {
  test("sums the regular files below, leaves out what the filter names, never goes through a link; absent is null", async () => {
    const data = join(dir, "pgdata");
    await mkdir(join(data, "base", "1"), { recursive: true });
    await mkdir(join(data, "pg_wal"), { recursive: true });
    await writeFile(join(data, "PG_VERSION"), "16\n");
    await writeFile(join(data, "base", "1", "1259"), Buffer.alloc(8192));
    await writeFile(join(data, "pg_wal", "000000010000000000000001"), Buffer.alloc(16384));
    // A link to a large file and one to a directory elsewhere: neither is followed nor counted.
    await writeFile(join(dir, "elsewhere"), Buffer.alloc(100_000));
    symlinkSync(join(dir, "elsewhere"), join(data, "base", "link"));
    symlinkSync(dir, join(data, "pg_tblspc_link"));
    expect(await treeBytes(data, (name, _s, depth) => depth === 0 && name === "pg_wal")).toBe(3 + 8192);
    expect(await treeBytes(data)).toBe(3 + 8192 + 16384);
    expect(await treeBytes(join(dir, "absent"))).toBeNull();
    expect(await treeBytes(join(dir, "elsewhere"))).toBeNull();
    symlinkSync(data, join(dir, "data-link"));
    expect(await treeBytes(join(dir, "data-link"))).toBeNull();
  });

  test("the walk asks `stop` before it begins and every STOP_EVERY entries: what it throws ends the walk", async () => {
    const data = join(dir, "pgdata");
    await mkdir(join(data, "base"), { recursive: true });
    for (let i = 0; i < 2 * STOP_EVERY + 10; i++) await writeFile(join(data, "base", String(i)), "x");
    let asked = 0;
    expect(await treeBytes(data, undefined, () => void asked++)).toBe(2 * STOP_EVERY + 10);
    expect(asked).toBe(3); // before the first entry, then at entries 256 and 512 of 523 (data's own "base" is the first)
    const stop = () => {
      if (++asked > 4) throw new Error("a vote needs the executor");
    };
    await expect(treeBytes(data, undefined, stop)).rejects.toThrow("a vote needs the executor");
  });

  test("what a base backup leaves out: pg_wal and the runtime directories at the top, temporary files, an unlogged relation's forks but its init fork", async () => {
    const data = join(dir, "pgdata");
    const db = join(data, "base", "5");
    await mkdir(join(db, "pgsql_tmp"), { recursive: true });
    await mkdir(join(data, "pg_wal"), { recursive: true });
    await mkdir(join(data, "pg_replslot", "pgherd_x"), { recursive: true });
    const file = (path: string, bytes: number) => writeFile(path, Buffer.alloc(bytes));
    await file(join(data, "pg_wal", "000000010000000000000001"), 16384);
    await file(join(data, "pg_replslot", "pgherd_x", "state"), 200);
    await file(join(data, "postmaster.pid"), 100);
    await file(join(db, "pgsql_tmp", "pgsql_tmp123.0"), 50_000);
    await file(join(db, "pg_internal.init"), 1000);
    // 16384: logged, all its forks copied; 16390: unlogged (an init fork beside), only that fork copied.
    for (const f of ["16384", "16384.1", "16384_fsm", "16384_vm"]) await file(join(db, f), 8192);
    for (const f of ["16390", "16390.1", "16390_fsm", "16390_vm"]) await file(join(db, f), 8192);
    await file(join(db, "16390_init"), 10);
    expect(await treeBytes(data, notCopied)).toBe(4 * 8192 + 10);
  });

  test("the room a clone will have is measured where its directory will be: the nearest existing ancestor", async () => {
    const deep = join(dir, "not", "yet", "made");
    expect(fsRoomFor(deep).sizeBytes).toBe(fsRoom(dir).sizeBytes);
    expect(fsRoomFor(dir).sizeBytes).toBe(fsRoom(dir).sizeBytes);
  });
});
