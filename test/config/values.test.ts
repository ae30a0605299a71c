// Values that go into PostgreSQL's files, and the API token, are checked when the config loads
// (the agent exits 2), not when pgherd.conf or pg_hba.conf is rendered (every round would fail
// while the agent keeps running). Each bad value below passed validation on commit 0e501cd.
import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { renderHbaBlock } from "../../src/postgres/hba.ts";
import { pgBoolOff } from "../../src/config/pg-values.ts";
import { confValue, renderPgherdConf } from "../../src/postgres/pgconf.ts";

const BASE = `cluster = "main"\nsecret = "${"0123456789abcdefghijklmnopqrstuvwxyz"}"\n`;

function errors(text: string): readonly string[] {
  try {
    parseConfig(text, "pgherd.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.lines;
    throw e;
  }
  return [];
}

const pg = (lines: string) => `${BASE}[postgres]\n${lines}\n`;

/** What the agent renders from a loaded config (as src/agent/pg/host.ts does); throws what the renderers throw. */
function render(cfg: Config): string {
  const p = cfg.postgres;
  return (
    renderPgherdConf({
      listenAddresses: [p.listen_addresses], port: p.port, unixSocketDir: p.socket_dir || `${p.data_dir}.sock`,
      maxWalSenders: p.max_wal_senders, maxReplicationSlots: p.max_replication_slots, hotStandby: true, walLogHints: true,
      clusterName: cfg.cluster,
      parameters: cfg.slots.max_slot_wal_keep_size ? { max_slot_wal_keep_size: cfg.slots.max_slot_wal_keep_size, ...p.parameters } : p.parameters,
    }) + renderHbaBlock({ superuser: p.superuser, replUser: p.repl_user, monitorUser: p.monitor_user, peers: ["10.0.0.2"] })
  );
}

describe("every accepted value renders", () => {
  test.each([
    ["defaults", BASE],
    ["a list of addresses", pg(`listen_addresses = "127.0.0.1, ::1,db1.example.com"`)],
    ["quotes and backslashes in a value (escaped by the renderer)", `${BASE}[postgres.parameters]\napplication_name = "it's \\\\ fine"\n`],
    ["mixed-case and qualified names", `${BASE}[postgres.parameters]\nWork_Mem = "64MB"\n"auto_explain.log_min_duration" = 250\njit = false\n`],
    ["a size with a space", `${BASE}[slots]\nmax_slot_wal_keep_size = "8 GB"\n`],
  ])("%s", (_what, text) => {
    expect(errors(text)).toEqual([]);
    expect(() => render(parseConfig(text, "pgherd.toml"))).not.toThrow();
  });

  test("a quote in a value stays inside the literal", () => {
    expect(confValue("application_name", "x'; port = '1")).toBe("'x''; port = ''1'");
  });
});

describe("a value the renderer or PostgreSQL would refuse is refused at load", () => {
  test("listen_addresses: a newline, a space-separated list, an empty entry", () => {
    expect(() => confValue("listen_addresses", "127.0.0.1\nport = 1")).toThrow("control character");
    for (const v of ["127.0.0.1\\nport = 1", "10.0.0.1 10.0.0.2", "10.0.0.1,", "'*'"]) {
      expect(errors(pg(`listen_addresses = "${v}"`))).toEqual([
        'pgherd.toml: postgres.listen_addresses must be "*" or a comma-separated list of host names and IP addresses',
      ]);
    }
  });

  test("parameter names: not a setting name, an include directive, a managed setting, the same name twice", () => {
    expect(errors(`${BASE}[postgres.parameters]\n"work mem" = "64MB"\n"a.b.c" = 1\n"1x" = 1\n"bad\\nname" = 1\n`)).toEqual([
      'pgherd.toml: postgres.parameters "work mem" is not a valid PostgreSQL setting name (letters, digits, _ and at most one dot)',
      'pgherd.toml: postgres.parameters "a.b.c" is not a valid PostgreSQL setting name (letters, digits, _ and at most one dot)',
      'pgherd.toml: postgres.parameters "1x" is not a valid PostgreSQL setting name (letters, digits, _ and at most one dot)',
      'pgherd.toml: postgres.parameters "bad\\nname" is not a valid PostgreSQL setting name (letters, digits, _ and at most one dot)',
    ]);
    expect(errors(`${BASE}[postgres.parameters]\ninclude = "/etc/shadow"\nPort = 6000\nwork_mem = "1MB"\nWORK_MEM = "2MB"\n`)).toEqual([
      'pgherd.toml: postgres.parameters "include" is an include directive, not a setting',
      'pgherd.toml: postgres.parameters "Port" is managed by pgherd: set it through pgherd\'s own keys',
      'pgherd.toml: postgres.parameters "WORK_MEM" is the same setting as "work_mem" (names are case-insensitive)',
    ]);
    // Found by review: these were accepted, and won over pgherd's own lines (or broke every standby's render).
    expect(errors(`${BASE}[postgres.parameters]\nrecovery_target_timeline = "1"\nsync_replication_slots = true\nrecovery_target_lsn = "0/5000000"\nRecovery_Target_Action = "promote"\npromote_trigger_file = "/tmp/x"\n`)).toEqual([
      'pgherd.toml: postgres.parameters "recovery_target_timeline" is managed by pgherd: set it through pgherd\'s own keys',
      'pgherd.toml: postgres.parameters "sync_replication_slots" is managed by pgherd: set it through pgherd\'s own keys',
      'pgherd.toml: postgres.parameters "recovery_target_lsn" would end a standby\'s recovery (and may promote it): pgherd decides promotion',
      'pgherd.toml: postgres.parameters "Recovery_Target_Action" would end a standby\'s recovery (and may promote it): pgherd decides promotion',
      'pgherd.toml: postgres.parameters "promote_trigger_file" would end a standby\'s recovery (and may promote it): pgherd decides promotion',
    ]);
  });

  test("settings that move pgherd's files, archive_library beside pgBackRest, full_page_writes off", () => {
    // Found by review: accepted, they moved the server to another data directory or dropped pgherd's
    // hba rules at the next start, stopped archiving (archive_library with archive_command is an
    // error on PostgreSQL 15+), or made every rejoin a full clone (pg_rewind needs full_page_writes).
    expect(errors(`${BASE}[postgres.parameters]
data_directory = "/srv/other"
HBA_File = "/etc/hba"
ident_file = "/etc/ident"
config_file = "/etc/pg.conf"
full_page_writes = "of"
`)).toEqual([
      'pgherd.toml: postgres.parameters "data_directory" moves a file pgherd manages (the data directory, pg_hba.conf, pg_ident.conf) away from it',
      'pgherd.toml: postgres.parameters "HBA_File" moves a file pgherd manages (the data directory, pg_hba.conf, pg_ident.conf) away from it',
      'pgherd.toml: postgres.parameters "ident_file" moves a file pgherd manages (the data directory, pg_hba.conf, pg_ident.conf) away from it',
      'pgherd.toml: postgres.parameters "config_file" moves a file pgherd manages (the data directory, pg_hba.conf, pg_ident.conf) away from it',
      'pgherd.toml: postgres.parameters "full_page_writes" off would make pg_rewind refuse every rejoin (and risk torn pages after a crash): a former primary could only be cloned again',
    ]);
    for (const off of [false, 0, "off", "OFF", "false", "f", "no", "n", "0", " of "]) expect(pgBoolOff(off)).toBe(true);
    for (const on of [true, 1, "on", "o", "true", "yes", "1", "", "maybe"]) expect(pgBoolOff(on)).toBe(false);
    expect(errors(`${BASE}[postgres.parameters]
full_page_writes = true
`)).toEqual([]);
    expect(errors(`${BASE}[backup]
tool = "pgbackrest"
[postgres.parameters]
archive_library = "basic_archive"
`)).toEqual([
      'pgherd.toml: postgres.parameters sets archive_library, which backup.tool = "pgbackrest" manages: remove them',
    ]);
    expect(() => renderPgherdConf({ listenAddresses: ["*"], port: 5432, unixSocketDir: "/run/pg", maxWalSenders: 1, maxReplicationSlots: 1, hotStandby: true, walLogHints: true, parameters: { data_directory: "/x" } }))
      .toThrow("would move a file pgherd manages");
  });

  test("the renderer refused those names only when it ran", () => {
    const conf = (parameters: Record<string, string | number>) => () =>
      renderPgherdConf({ listenAddresses: ["*"], port: 5432, unixSocketDir: "/run/pg", maxWalSenders: 1, maxReplicationSlots: 1, hotStandby: true, walLogHints: true, parameters });
    expect(conf({ "work mem": "64MB" })).toThrow("is not a valid PostgreSQL setting name");
    expect(conf({ Port: 6000 })).toThrow("is managed by pgherd");
    expect(conf({ recovery_target_timeline: "1" })).toThrow("is managed by pgherd");
    expect(conf({ recovery_target_xid: "1234" })).toThrow("would end a standby's recovery");
  });

  test("parameter values: control characters, infinity and nan", () => {
    expect(errors(`${BASE}[postgres.parameters]\napplication_name = "x\\nport = 6000"\nwork_mem = inf\nrandom_page_cost = nan\n`)).toEqual([
      "pgherd.toml: postgres.parameters.application_name must not contain control characters (newline, tab …)",
      "pgherd.toml: postgres.parameters.work_mem must be a string, a number or true/false",
      "pgherd.toml: postgres.parameters.random_page_cost must be a string, a number or true/false",
    ]);
  });

  test("max_slot_wal_keep_size: no newline inside the size; set in one place only", () => {
    expect(errors(`${BASE}[slots]\nmax_slot_wal_keep_size = "8\\nGB"\n`)).toEqual([
      'pgherd.toml: slots.max_slot_wal_keep_size must be a size like "8GB", "-1" or ""',
    ]);
    expect(errors(`${BASE}[slots]\nmax_slot_wal_keep_size = "8GB"\n[postgres.parameters]\nmax_slot_wal_keep_size = "4GB"\n`)).toEqual([
      "pgherd.toml: postgres.parameters sets max_slot_wal_keep_size, and so does slots.max_slot_wal_keep_size: keep one",
    ]);
  });

  test("roles: a pg_hba keyword matches everyone; the replication role must not be the superuser", () => {
    expect(errors(pg(`superuser = "all"\nmonitor_user = "replication"`))).toEqual([
      "pgherd.toml: postgres.superuser must not be a pg_hba.conf keyword (all, sameuser, samerole, samegroup, replication)",
      "pgherd.toml: postgres.monitor_user must not be a pg_hba.conf keyword (all, sameuser, samerole, samegroup, replication)",
    ]);
    expect(() => renderHbaBlock({ superuser: "all", replUser: "r", monitorUser: "m", peers: [] })).toThrow("not a pg_hba keyword");
    expect(errors(pg(`repl_user = "postgres"\nmonitor_user = "pgherd_repl"`))).toEqual([
      "pgherd.toml: postgres.repl_user must differ from postgres.superuser: each role has its own password and pg_hba rows",
    ]);
    expect(errors(pg(`monitor_user = "pgherd_repl"`))).toEqual([
      "pgherd.toml: postgres.monitor_user must differ from postgres.repl_user: each role has its own password and pg_hba rows",
    ]);
  });

  test("socket directory: no list syntax, and the socket path fits in sun_path", () => {
    expect(errors(pg(`socket_dir = "/run/a,/run/b"`))).toEqual([
      "pgherd.toml: postgres.socket_dir must not contain commas or double quotes, nor start or end with a space",
    ]);
    const long = `/${"d".repeat(93)}`;
    expect(errors(pg(`socket_dir = "${long}"`))).toEqual([
      `pgherd.toml: postgres.socket_dir gives the socket path ${long}/.s.PGSQL.5432 of 108 bytes: the limit is 107`,
    ]);
    expect(errors(pg(`socket_dir = "${long.slice(0, -1)}"`))).toEqual([]);
    expect(errors(pg(`data_dir = "${long}"`))).toEqual([
      `pgherd.toml: postgres.data_dir (with socket_dir empty, the socket directory is <data_dir>.sock) gives the socket path ${long}.sock/.s.PGSQL.5432 of 113 bytes: the limit is 107`,
    ]);
  });

  test("paths: no control characters (they end up in conninfo and command lines)", () => {
    expect(errors(`${BASE}state_dir = "/var/lib/pg\\nherd"\n[postgres]\ndata_dir = "/data\\t1"\nsocket_dir = "/run/\\u0000x"\n`)).toEqual([
      "pgherd.toml: state_dir must not contain control characters (newline, tab …)",
      "pgherd.toml: postgres.data_dir must not contain control characters (newline, tab …)",
      "pgherd.toml: postgres.socket_dir must not contain control characters (newline, tab …)",
    ]);
    expect(errors(`${BASE}[api]\ntls_cert = "cert.pem"\ntls_key = "/etc/k\\n"\n`)).toEqual([
      'pgherd.toml: api.tls_cert must be an absolute path or ""',
      "pgherd.toml: api.tls_key must not contain control characters (newline, tab …)",
    ]);
  });
});

describe("api.token", () => {
  const token = (t: string) => errors(`${BASE}[api]\ntoken = "${t}"\n`);

  test('"" (actions off) or at least 32 characters', () => {
    expect(token("")).toEqual([]);
    expect(token("x".repeat(32))).toEqual([]);
    expect(token("x".repeat(31))).toEqual(['pgherd.toml: api.token must be at least 32 characters (e.g. `openssl rand -base64 32`), or "" to disable actions']);
  });

  test("no whitespace or non-ASCII: a Bearer header could never carry it", () => {
    for (const t of [`${"x".repeat(20)} ${"y".repeat(20)}`, `${"x".repeat(40)}\\n`, `${"é".repeat(40)}`]) {
      expect(token(t)).toEqual(['pgherd.toml: api.token must be printable ASCII without spaces (it is sent in an HTTP header), or "" to disable actions']);
    }
  });

  test("the token is never in the message", () => {
    expect(token("short-secret-token").join("\n")).not.toContain("short-secret-token");
  });
});
