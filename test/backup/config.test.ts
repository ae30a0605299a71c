// [backup] and [[slots.permanent]] at load, and what pgherd renders from them (pgbackrest.conf,
// archive/restore commands, the pgherd.conf lines).
import { describe, expect, test } from "bun:test";
import { archiveSettings, backrestPaths, renderBackrestConf } from "../../src/backup/pgbackrest.ts";
import { parseInfo } from "../../src/backup/backups.ts";
import { bootstrapFromBackup, type BootstrapHost } from "../../src/backup/bootstrap.ts";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { renderPgherdConf } from "../../src/postgres/pgconf.ts";

const BASE = `cluster = "main"\nsecret = "${"s".repeat(40)}"\n`;

function errors(text: string): readonly string[] {
  try {
    parseConfig(BASE + text, "pgherd.toml");
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).lines;
  }
  throw new Error("expected a ConfigError");
}

describe("config", () => {
  test("a logical slot needs plugin, database and wal_level logical; names are unique and not pgherd_*", () => {
    expect(errors(`[[slots.permanent]]\nname = "cdc"\ntype = "logical"\n`)).toEqual([
      "pgherd.toml: slots.permanent.0.plugin is required for a logical slot",
      "pgherd.toml: slots.permanent.0.database is required for a logical slot",
    ]);
    expect(errors(`[[slots.permanent]]\nname = "cdc"\ntype = "logical"\nplugin = "pgoutput"\ndatabase = "app"\n`).join("\n")).toContain('needs postgres.wal_level = "logical"');
    expect(errors(`[[slots.permanent]]\nname = "pgherd_x"\ntype = "physical"\n`).join("\n")).toContain("must not start with pgherd_");
    expect(errors(`[[slots.permanent]]\nname = "a"\ntype = "physical"\n[[slots.permanent]]\nname = "a"\ntype = "physical"\n`).join("\n")).toContain("a is listed twice");
    expect(errors(`[[slots.permanent]]\nname = "a"\ntype = "physical"\nplugin = "x"\n`).join("\n")).toContain("is only for a logical slot");
    const many = Array.from({ length: 65 }, (_, i) => `[[slots.permanent]]\nname = "s${i}"\ntype = "physical"\n`).join("");
    expect(errors(many).join("\n")).toContain("pgherd.toml: slots.permanent may list at most 64 slots");
    const ok = parseConfig(BASE + `[postgres]\nwal_level = "logical"\n[[slots.permanent]]\nname = "cdc"\ntype = "logical"\nplugin = "pgoutput"\ndatabase = "app"\n`, "x");
    expect(ok.slots.permanent).toEqual([{ name: "cdc", type: "logical", plugin: "pgoutput", database: "app" }]);
  });

  test("backup: a relative repo_path, an unknown tool, the operator's own archive_command with tool set are refused", () => {
    expect(errors(`[backup]\nrepo_path = "repo"\n`).join("\n")).toContain("backup.repo_path must be an absolute path");
    expect(errors(`[backup]\ntool = "barman"\n`).join("\n")).toContain('backup.tool must be "none" or "pgbackrest"');
    expect(errors(`[backup]\ntool = "pgbackrest"\n[postgres.parameters]\narchive_command = "cp %p /x"\n`).join("\n")).toContain("sets archive_command, which backup.tool");
    // Without a tool the operator archives as before.
    expect(parseConfig(BASE + `[postgres.parameters]\narchive_command = "cp %p /x"\n`, "x").postgres.parameters).toEqual({ archive_command: "cp %p /x" });
  });
});

describe("rendering", () => {
  const cfg = parseConfig(BASE + `[postgres]\ndata_dir = "/srv/pg it's%"\n[backup]\ntool = "pgbackrest"\nrepo_path = "/mnt/repo"\n`, "x");
  const p = backrestPaths(cfg, "/usr/bin/pgbackrest");

  test("pgbackrest.conf: shared repository, this node's lock/log/spool beside the data directory", () => {
    expect(p.conf).toBe("/srv/pg it's%.pgbackrest/pgbackrest.conf");
    const text = renderBackrestConf(cfg, "/srv/sock", p);
    expect(text).toContain("repo1-path=/mnt/repo\n");
    expect(text).toContain("lock-path=/srv/pg it's%.pgbackrest/lock\n");
    expect(text).toContain("[main]\npg1-path=/srv/pg it's%\npg1-port=5432\npg1-socket-path=/srv/sock\npg1-user=postgres\n");
  });

  test("archive and restore commands quote paths for the shell and escape % for PostgreSQL; pgherd.conf carries them", () => {
    const a = archiveSettings(p, ["/opt/100%/pgherd"], { host: false, path: "/mnt/re po" });
    expect(a.archiveCommand).toBe(`'/opt/100%%/pgherd' backup wal-push --direct '--lock=/mnt/re po/pgherd-archive-push-main.lock' '--pgbackrest=/usr/bin/pgbackrest' '--pgbackrest-config=/srv/pg it'\\''s%%.pgbackrest/pgbackrest.conf' '--stanza=main' "%p"`);
    expect(a.restoreCommand).toEndWith(`'--stanza=main' archive-get %f "%p"`);
    const conf = renderPgherdConf({ listenAddresses: ["*"], port: 5432, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: "/s", walLevel: "logical", archive: a, hotStandbyFeedback: true });
    expect(conf).toContain("wal_level = 'logical'\n");
    expect(conf).toContain("archive_mode = 'always'\n");
    expect(conf).toContain("hot_standby_feedback = on\n");
    expect(() => renderPgherdConf({ listenAddresses: ["*"], port: 5432, maxWalSenders: 5, maxReplicationSlots: 5, hotStandby: true, walLogHints: true, unixSocketDir: "/s", archive: a, parameters: { Restore_Command: "x" } })).toThrow(/managed by pgherd/);
  });

  test("pgbackrest info JSON", () => {
    const info = parseInfo(JSON.stringify([{ name: "main", status: { code: 0, message: "ok" }, archive: [{ id: "15-1", min: "000000010000000000000001", max: "000000020000000000000005" }], backup: [{ label: "L", type: "full", timestamp: { start: 1, stop: 2 }, archive: { start: "000000010000000000000002", stop: "000000010000000000000002" }, lsn: { start: "0/2000028", stop: "0/2000100" }, info: { size: 10, repository: { size: 3, delta: 3 }, delta: 10 }, error: false }] }]));
    expect(info).toEqual({ status: "ok", archiveMin: "000000010000000000000001", archiveMax: "000000020000000000000005", backups: [{ label: "L", type: "full", start: 1, stop: 2, walStart: "000000010000000000000002", walStop: "000000010000000000000002", lsnStart: "0/2000028", lsnStop: "0/2000100", sizeBytes: 10, repoBytes: 3 }] });
  });

  test("pgbackrest info output that is not JSON, or not its shape, is named as such", () => {
    expect(() => parseInfo('"timestamp":{"start":1}}]}]')).toThrow("pgbackrest info --output=json printed no JSON");
    expect(() => parseInfo(JSON.stringify([{ status: { code: 0 }, archive: [], backup: [] }]))).toThrow("pgbackrest info --output=json: unexpected shape: 0.status.message");
  });
});

describe("permanent slot state file", () => {
  test("restart_lsn is read from a PostgreSQL slot state file; anything else gives null", async () => {
    const { stateRestartLsn } = await import("../../src/slots/permanent.ts");
    const b = Buffer.alloc(200);
    b.writeUInt32LE(0x1051ca1, 0);
    b.writeBigUInt64LE(0x3020478n, 96);
    expect(stateRestartLsn(b)).toBe("0/3020478");
    b.writeBigUInt64LE((0x1an << 32n) | 0xabcn, 96);
    expect(stateRestartLsn(b)).toBe("1A/ABC");
    expect(stateRestartLsn(Buffer.alloc(50))).toBeNull();
    b.writeUInt32LE(0, 0);
    expect(stateRestartLsn(b)).toBeNull();
  });
});

test("bootstrap.from_backup onto a data_dir that is a link is refused before any restore (review)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-fb-"));
  try {
    mkdirSync(join(dir, "real"));
    symlinkSync(join(dir, "real"), join(dir, "pgdata"));
    const cfg = parseConfig(`${BASE}state_dir = "${dir}/state"\n[postgres]\ndata_dir = "${dir}/pgdata"\n[backup]\ntool = "pgbackrest"\nrepo_path = "${dir}/repo"\n[bootstrap]\nfrom_backup = true\n`, "pgherd.toml");
    const did: string[] = [];
    const h = {
      cfg, socketDir: dir, node: { dataDir: cfg.postgres.data_dir, osUser: "postgres" }, log: { info: (m: string) => did.push(m), warn: (m: string) => did.push(m) },
      localDb: () => { throw new Error("no server"); }, writeConfig: async () => (did.push("writeConfig"), []), startServer: async () => void did.push("start"), sleep: async () => {},
    } as unknown as BootstrapHost;
    await expect(bootstrapFromBackup(h)).rejects.toThrow(/is a symbolic link.*not restoring the backup/);
    expect(did).toEqual([]); // nothing restored, written or started
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
