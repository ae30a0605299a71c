// Pure functions of the PostgreSQL layer: config/hba rendering and merging, LSN arithmetic,
// passfile escaping, and parsers for pg_controldata, postmaster.pid and pg_basebackup -P.
import { describe, expect, test } from "bun:test";
import { parseProgress, tablespaceHint } from "../../src/postgres/basebackup.ts";
import { parseControlData, parsePostmasterPid } from "../../src/postgres/datadir.ts";
import { BEGIN_MARK, END_MARK, HbaError, mergeManagedBlock, renderHbaBlock, renderIdentBlock } from "../../src/postgres/hba.ts";
import { bigIntToLsn, lsnCompare, lsnDiff, lsnToBigInt } from "../../src/postgres/lsn.ts";
import { stripKeys } from "../../src/postgres/managed-config.ts";
import { passfileLine } from "../../src/postgres/passwords.ts";
import { buildConninfo, ConfError, INCLUDE_LINE, renderPgherdConf, withIncludeLine, type PgherdConfParams } from "../../src/postgres/pgconf.ts";
import { quoteLiteral } from "../../src/postgres/sql.ts";
import { slotNameFor } from "../../src/postgres/slots.ts";

const baseConf: PgherdConfParams = {
  listenAddresses: ["10.0.0.1", "127.0.0.1"], port: 5432, maxWalSenders: 10, maxReplicationSlots: 10,
  hotStandby: true, walLogHints: true, unixSocketDir: "/run/postgresql",
};

describe("renderPgherdConf", () => {
  test("managed header, quoting and defaults", () => {
    const text = renderPgherdConf({
      ...baseConf,
      primaryConninfo: buildConninfo({ host: "10.0.0.2", port: 5432, user: "repl", passfile: "/var/lib/pgherd/pass", applicationName: "n1" }),
      primarySlotName: "n1",
      parameters: { shared_buffers: "256MB", log_line_prefix: "it's \\ %m ", fsync: false, work_mem: 4096 },
    });
    expect(text.split("\n")[0]).toContain("Managed by pgherd: do not edit");
    expect(text).toContain("listen_addresses = '10.0.0.1,127.0.0.1'\n");
    expect(text).toContain("port = 5432\n");
    expect(text).toContain("wal_retrieve_retry_interval = '200ms'\n");
    expect(text).toContain("hot_standby = on\n");
    expect(text).toContain("primary_slot_name = 'n1'\n");
    expect(text).toContain("primary_conninfo = 'host=10.0.0.2 port=5432 user=repl passfile=/var/lib/pgherd/pass application_name=n1 connect_timeout=2 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=5000'\n");
    expect(text).toContain("log_line_prefix = 'it''s \\\\ %m '\n");
    expect(text).toContain("fsync = off\n");
    expect(text).toContain("work_mem = 4096\n");
  });

  test("replication timeouts default to 5 s; [postgres.parameters] replaces them, it is never written twice", () => {
    const text = renderPgherdConf(baseConf);
    expect(text).toContain("wal_sender_timeout = '5s'\n");
    expect(text).toContain("wal_receiver_timeout = '5s'\n");
    const own = renderPgherdConf({ ...baseConf, parameters: { WAL_SENDER_TIMEOUT: "30s" } });
    expect(own.match(/^wal_sender_timeout = .*$/gm)).toEqual(["wal_sender_timeout = '30s'"]);
    expect(own).toContain("wal_receiver_timeout = '5s'\n");
  });

  test("a former primary started to be promoted recovers on its own timeline; otherwise PostgreSQL's default (latest) stays", () => {
    expect(renderPgherdConf({ ...baseConf, recoveryTargetTimeline: 7 })).toContain("recovery_target_timeline = '7'\n");
    expect(renderPgherdConf(baseConf)).not.toContain("recovery_target_timeline");
  });

  test("a primary clears conninfo and slot (they may have been copied by pg_rewind)", () => {
    const text = renderPgherdConf(baseConf);
    expect(text).toContain("primary_conninfo = ''\n");
    expect(text).toContain("primary_slot_name = ''\n");
  });

  test("refuses managed keys, bad names, newlines, bad ports", () => {
    expect(() => renderPgherdConf({ ...baseConf, parameters: { Port: 1 } })).toThrow(/Port is managed by pgherd/);
    expect(() => renderPgherdConf({ ...baseConf, parameters: { "x = 1\nport": 1 } })).toThrow(ConfError);
    expect(() => renderPgherdConf({ ...baseConf, parameters: { search_path: "a\nport = 1" } })).toThrow(/control character/);
    expect(() => renderPgherdConf({ ...baseConf, port: 70000 })).toThrow(/port 70000/);
    expect(() => renderPgherdConf({ ...baseConf, primarySlotName: "Bad-Slot" })).toThrow(/slot name/);
  });
});

describe("replication TLS in pgherd.conf and conninfo", () => {
  const ssl = { certFile: "/var/lib/pg/d.tls/server.crt", keyFile: "/var/lib/pg/d.tls/server.key", caFile: "/var/lib/pg/d.tls/ca.crt" };

  test("ssl = on with the managed files; absent without TLS files", () => {
    const text = renderPgherdConf({ ...baseConf, ssl });
    expect(text).toContain("ssl = on\n");
    expect(text).toContain("ssl_cert_file = '/var/lib/pg/d.tls/server.crt'\n");
    expect(text).toContain("ssl_key_file = '/var/lib/pg/d.tls/server.key'\n");
    expect(text).toContain("ssl_ca_file = '/var/lib/pg/d.tls/ca.crt'\n");
    expect(renderPgherdConf(baseConf)).not.toMatch(/^ssl/m);
  });

  test("the ssl settings are pgherd's: [postgres.parameters] cannot turn ssl off or swap the files", () => {
    expect(() => renderPgherdConf({ ...baseConf, ssl, parameters: { ssl: false } })).toThrow(/ssl is managed by pgherd/);
    expect(() => renderPgherdConf({ ...baseConf, ssl, parameters: { SSL_CERT_FILE: "/tmp/x" } })).toThrow(/managed by pgherd/);
  });

  test("primary_conninfo verifies the server against the cluster CA and requires channel binding", () => {
    const tls = { sslmode: "verify-full", sslrootcert: "/var/lib/pg/d.tls/ca.crt", channel_binding: "require" };
    expect(renderPgherdConf({ ...baseConf, primaryConninfo: buildConninfo({ host: "10.0.0.2", port: 5432, user: "repl", passfile: "/p", extra: tls }) }))
      .toContain("primary_conninfo = 'host=10.0.0.2 port=5432 user=repl passfile=/p connect_timeout=2 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=5000 sslmode=verify-full sslrootcert=/var/lib/pg/d.tls/ca.crt channel_binding=require'\n");
  });
});

describe("conninfo and include line", () => {
  test("conninfo quotes values with spaces, quotes or backslashes", () => {
    expect(buildConninfo({ host: "h", port: 1, user: "o'k\\x", passfile: "/a b", connectTimeoutSec: 3 })).toBe(
      "host=h port=1 user='o\\'k\\\\x' passfile='/a b' connect_timeout=3 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=5000",
    );
    // Inside pgherd.conf the libpq quotes are doubled by the conf-level quoting.
    expect(renderPgherdConf({ ...baseConf, primaryConninfo: buildConninfo({ host: "h", port: 1, user: "u", passfile: "/a b" }) }))
      .toContain("primary_conninfo = 'host=h port=1 user=u passfile=''/a b'' connect_timeout=2 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=5000'\n");
  });

  test("include line appended once, kept last, idempotent", () => {
    const once = withIncludeLine("shared_buffers = 1GB\n");
    expect(once).toBe(`shared_buffers = 1GB\n${INCLUDE_LINE}\n`);
    expect(withIncludeLine(once)).toBe(once);
    const after = `${once}work_mem = 1MB\n`; // operator appended after us: our line moves to the end
    expect(withIncludeLine(after)).toBe(`shared_buffers = 1GB\nwork_mem = 1MB\n${INCLUDE_LINE}\n`);
    expect(withIncludeLine(`${once}# trailing comment\n`)).toBe(`${once}# trailing comment\n`);
  });

  test("stripKeys removes managed keys from postgresql.auto.conf only", () => {
    const r = stripKeys("# Do not edit\nport = '6000'\nwork_mem = '1MB'\nprimary_conninfo = 'x'\n", ["port", "primary_conninfo"]);
    expect(r.removed).toEqual(["port", "primary_conninfo"]);
    expect(r.text).toBe("# Do not edit\nwork_mem = '1MB'\n");
  });
});

describe("pg_hba managed block", () => {
  const p = { superuser: "postgres", replUser: "pgherd_repl", monitorUser: "pgherd_mon", peers: ["10.0.0.2", "fd00::2", "10.0.0.2"] };

  test("per-peer host rules with /32 and /128, local peer map; the replication role rejected from everywhere else, before any client rule", () => {
    const b = renderHbaBlock(p);
    const lines = b.trim().split("\n");
    expect(lines[0]).toBe(BEGIN_MARK);
    expect(lines.at(-1)).toBe(END_MARK);
    const rules = lines.filter((l) => !l.startsWith("#")).map((l) => l.split(/\s+/).join(" "));
    expect(rules).toEqual([
      "local all postgres peer map=pgherd",
      "host replication pgherd_repl 10.0.0.2/32 scram-sha-256",
      "host postgres pgherd_repl 10.0.0.2/32 scram-sha-256",
      "host all pgherd_mon 10.0.0.2/32 scram-sha-256",
      "host replication pgherd_repl fd00::2/128 scram-sha-256",
      "host postgres pgherd_repl fd00::2/128 scram-sha-256",
      "host all pgherd_mon fd00::2/128 scram-sha-256",
      "host replication pgherd_repl 0.0.0.0/0 reject",
      "host all pgherd_repl 0.0.0.0/0 reject",
      "host replication pgherd_repl ::/0 reject",
      "host all pgherd_repl ::/0 reject",
    ]);
    // No network is admitted: /0 only in reject rows.
    expect(lines.filter((l) => l.includes("/0") && !l.trim().endsWith("reject"))).toEqual([]);
    // A client rule for every user (review: user = "all" from 10.0.0.0/8 let pgherd_repl in over plain TCP) comes after the rejection.
    const withAccess = renderHbaBlock({ ...p, accessRows: ["host all all 10.0.0.0/8 scram-sha-256"] }).split("\n");
    expect(withAccess.findIndex((l) => l.includes("0.0.0.0/0") && l.includes("reject"))).toBeLessThan(withAccess.findIndex((l) => l.includes("10.0.0.0/8")));
  });

  test("with replication TLS every network row of pgherd's roles is hostssl; the local row stays", () => {
    const rules = renderHbaBlock({ ...p, tls: true }).split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(/\s+/).join(" "));
    expect(rules[0]).toBe("local all postgres peer map=pgherd");
    expect(rules.slice(1, 7)).toHaveLength(6);
    for (const r of rules.slice(1, 7)) expect(r).toMatch(/^hostssl (replication|postgres|all) pgherd_(repl|mon) \S+ scram-sha-256$/);
    // Then the replication role's every other TCP connection, TLS or not (a peer without TLS
    // included), and the monitor role's without TLS, are rejected.
    expect(rules.slice(7)).toEqual(["0.0.0.0/0", "::/0"].flatMap((n) => [`host replication pgherd_repl ${n} reject`, `host all pgherd_repl ${n} reject`, `hostnossl all pgherd_mon ${n} reject`]));
  });

  test("rejects networks, names and keywords that are not plain roles", () => {
    expect(() => renderHbaBlock({ ...p, peers: ["10.0.0.0/8"] })).toThrow(/not an IPv4\/IPv6 address/);
    expect(() => renderHbaBlock({ ...p, peers: ["example.com"] })).toThrow(HbaError);
    expect(() => renderHbaBlock({ ...p, replUser: "all" })).toThrow(/pg_hba keyword/);
    expect(() => renderHbaBlock({ ...p, monitorUser: "a b" })).toThrow(HbaError);
  });

  test("merge puts the block first, keeps operator rules byte for byte, is idempotent", () => {
    const user = "# my rules\nhost all app 10.1.0.0/16 scram-sha-256\n";
    const b1 = renderHbaBlock(p);
    const m1 = mergeManagedBlock(user, b1);
    expect(m1.startsWith(b1)).toBe(true);
    expect(m1.endsWith(user)).toBe(true);
    expect(mergeManagedBlock(m1, b1)).toBe(m1);
    const b2 = renderHbaBlock({ ...p, peers: ["10.0.0.3"] });
    const m2 = mergeManagedBlock(m1, b2);
    expect(m2).toBe(`${b2}\n${user}`);
    // A block an operator moved below their rules goes back to the top.
    expect(mergeManagedBlock(`${user}${b1}`, b2)).toBe(`${b2}\n${user}`);
    expect(mergeManagedBlock("", b1)).toBe(b1);
  });

  test("half a block is an error, not a guess", () => {
    expect(() => mergeManagedBlock(`${BEGIN_MARK}\nlocal all all trust\n`, "x")).toThrow(/without/);
    expect(() => mergeManagedBlock(`local all all trust\n${END_MARK}\n`, "x")).toThrow(/without/);
  });

  test("ident block maps each OS user once to the superuser", () => {
    const rows = renderIdentBlock("postgres", ["postgres", "root", "postgres"]).split("\n").filter((l) => l && !l.startsWith("#"));
    expect(rows.map((r) => r.split(/\s+/).join(" "))).toEqual(["pgherd postgres postgres", "pgherd root postgres"]);
  });
});

describe("LSN arithmetic", () => {
  test("round trip and differences", () => {
    expect(lsnToBigInt("0/0")).toBe(0n);
    expect(lsnToBigInt("16/B374D848")).toBe((0x16n << 32n) | 0xb374d848n);
    expect(bigIntToLsn(lsnToBigInt("16/B374D848"))).toBe("16/B374D848");
    expect(bigIntToLsn(0x1_0000_0000n)).toBe("1/0");
    expect(lsnDiff("1/0", "0/FFFFFFFF")).toBe(1n);
    expect(lsnDiff("0/10", "0/20")).toBe(-16n);
    expect(lsnCompare("A/0", "9/FFFFFFFF")).toBe(1);
    expect(() => lsnToBigInt("12345")).toThrow(/invalid LSN/);
    expect(() => lsnToBigInt("0/123456789")).toThrow(/invalid LSN/);
  });
});

describe("small parsers and escapes", () => {
  test("passfile line escapes ':' and '\\'", () => {
    expect(passfileLine({ host: "10.0.0.1", port: 5432, database: "*", user: "repl", password: "a:b\\c" })).toBe(
      "10.0.0.1:5432:*:repl:a\\:b\\\\c",
    );
    expect(passfileLine({ host: "fd00::1", port: "*", database: "replication", user: "r", password: "p" })).toBe(
      "fd00\\:\\:1:*:replication:r:p",
    );
    expect(() => passfileLine({ host: "h", port: 1, database: "d", user: "u", password: "a\nb" })).toThrow(/newlines/);
  });

  test("pg_controldata output", () => {
    const c = parseControlData([
      "pg_control version number:            1300",
      "Database system identifier:           7312345678901234567",
      "Database cluster state:               in archive recovery",
      "pg_control last modified:             Thu Nov 26 22:33:50 2026",
      "Latest checkpoint location:           0/17414D0",
      "Latest checkpoint's TimeLineID:       3",
      "Latest checkpoint's oldestCommitTsXid:0",
      "Minimum recovery ending location:     0/3000060",
      "wal_level setting:                    replica",
      "Data page checksum version:           1",
    ].join("\n"));
    if (typeof c === "string") throw new Error(c);
    expect(c).toMatchObject({
      systemIdentifier: "7312345678901234567", state: "in archive recovery", timeline: 3,
      checkpointLsn: "0/17414D0", minRecoveryEndLsn: "0/3000060", checksums: true, walLevel: "replica",
    });
    expect(c.raw["pg_control last modified"]).toBe("Thu Nov 26 22:33:50 2026");
    expect(parseControlData("garbage")).toMatch(/lacks system identifier/);
  });

  test("postmaster.pid", () => {
    expect(parsePostmasterPid("5755\n/tmp/d\n1795732433\n5999\n/tmp/s\n127.0.0.1\n  2146433         4\nready   \n")).toEqual({
      pid: 5755, dataDir: "/tmp/d", port: 5999, socketDir: "/tmp/s", listenAddresses: "127.0.0.1", status: "ready",
    });
    expect(parsePostmasterPid("5755\n/tmp/d\n")).toMatchObject({ pid: 5755, port: null, status: null });
    expect(parsePostmasterPid("\n")).toBeNull();
  });

  test("pg_basebackup -P lines", () => {
    expect(parseProgress("  25762/25762 kB (100%), 1/1 tablespace")).toEqual({ doneKb: 25762, totalKb: 25762, percent: 100 });
    expect(parseProgress("   1234/25762 kB (4%), 0/1 tablespace (/data/base/1/1259)")).toEqual({ doneKb: 1234, totalKb: 25762, percent: 4 });
    expect(parseProgress("pg_basebackup: base backup completed")).toBeNull();
  });

  test("a clone that fails on a tablespace's location says so (review: every clone failed the same way, unexplained)", () => {
    const target = "/var/lib/postgresql/pgherd.clone";
    expect(tablespaceHint('pg_basebackup: error: directory "/srv/ts1" exists but is not empty', target)).toContain('/srv/ts1 is a tablespace\'s location on the source: pgherd does not support tablespaces');
    expect(tablespaceHint(`pg_basebackup: error: directory "${target}" exists but is not empty`, target)).toBe("");
    expect(tablespaceHint("pg_basebackup: error: could not connect to server", target)).toBe("");
    expect(tablespaceHint('pg_basebackup: error: could not create directory "/srv/ts1": Permission denied', target)).toContain("/srv/ts1 is a tablespace's location");
    expect(tablespaceHint('pg_basebackup: error: could not access directory "/srv/ts1": Permission denied', target)).toContain("/srv/ts1 is a tablespace's location");
    expect(tablespaceHint(`pg_basebackup: error: could not create directory "${target}/pg_wal": No space left on device`, target)).toBe("");
  });

  test("slot names and literals", () => {
    expect(slotNameFor("Node-1.example")).toBe("node_1_example");
    expect(() => slotNameFor("")).toThrow(/slot name/);
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral("a\\b'")).toBe("E'a\\\\b'''");
  });
});
