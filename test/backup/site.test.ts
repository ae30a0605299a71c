// Where a backup runs (src/backup/choose.ts), the pgbackrest arguments of a backup from a standby
// (src/backup/backups.ts) and of the TLS server every agent runs (src/backup/tls-server.ts).
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { backupArgs, parseInfo } from "../../src/backup/backups.ts";
import { backupUnderWay, chooseBackupSite } from "../../src/backup/choose.ts";
import { doneMessage, fromMessage } from "../../src/backup/backup-action.ts";
import { backrestSans, backrestTlsFiles, CLIENT_CN, serverArgs } from "../../src/backup/tls-server.ts";
import { backrestPaths } from "../../src/backup/pgbackrest.ts";
import type { Candidate } from "../../src/core/switchover.ts";
import type { PgReport } from "../../src/core/report.ts";
import { createCa, issueNodeCert } from "../../src/tls/x509.ts";

const rep = (over: Partial<PgReport> = {}): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true,
  position: { timeline: 1, lsn: "0/3000000" }, receiveLsn: null, replayLsn: "0/3000000", upstream: "10.0.0.1:5432",
  streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
} as PgReport);
const cand = (id: string, name: string, r: PgReport | null, over: Partial<Candidate> = {}): Candidate => ({ id, name, voter: true, witness: false, neverPromoted: false, report: r, ...over });

test("a backup a member reports taking refuses another (a leader elected during it sees it too); none reported: none", () => {
  const since = "2026-12-06T05:00:00.000Z";
  const primary = rep({ inRecovery: false, upstream: null });
  expect(backupUnderWay({ name: "n1", report: primary }, [cand("b", "n2", rep()), cand("c", "n3", null)])).toBeNull();
  expect(backupUnderWay({ name: "n1", report: primary }, [cand("b", "n2", rep({ backup: { type: "full", since } })), cand("c", "n3", null)]))
    .toBe(`a full backup is already under way on n2 (since ${since}, as its agent reports): one backup at a time`);
  expect(backupUnderWay({ name: "n1", report: rep({ inRecovery: false, backup: { type: "incr", since } }) }, [])).toContain("incr backup is already under way on n1");
});

describe("chooseBackupSite", () => {
  const primary = rep({ inRecovery: false, position: { timeline: 1, lsn: "0/5000000" }, upstream: null });
  const base = { primary, primaryId: "p", maxLagBytes: 1 << 20, fromStandby: true };

  test("the streaming standby with the least replay lag (ties by name); never the primary's own entry", () => {
    const s = chooseBackupSite({ ...base, candidates: [cand("p", "n1", primary), cand("b", "n3", rep({ replayLsn: "0/4FFF000" })), cand("c", "n2", rep({ replayLsn: "0/4FFF000" })), cand("d", "n4", rep({ replayLsn: "0/4F00000" }))] });
    expect(s).toEqual({ on: "standby", id: "c", name: "n2", lagBytes: 0x1000 });
  });

  test("a standby that does not stream, lags beyond failover.max_lag_bytes, is down or unknown is never chosen: the primary, saying why", () => {
    const s = chooseBackupSite({ ...base, candidates: [
      cand("p", "n1", primary),
      cand("b", "n2", rep({ streaming: false })),
      cand("c", "n3", rep({ replayLsn: "0/3000000" })),
      cand("d", "n4", rep({ up: false })),
      cand("e", "n5", null),
      cand("w", "wit", null, { witness: true }),
    ] });
    expect(s.on).toBe("primary");
    if (s.on !== "primary") return;
    expect(s.reason).toBe("no healthy standby (n2: not streaming; n3: lags 33554432 bytes (failover.max_lag_bytes 1048576); n4: not reachable or its PostgreSQL is down; n5: not reachable or its PostgreSQL is down)");
  });

  test("a member that runs a primary (or is not in recovery) is no standby; a lone primary backs up itself", () => {
    expect(chooseBackupSite({ ...base, candidates: [cand("p", "n1", primary), cand("b", "n2", rep({ inRecovery: false }))] }))
      .toEqual({ on: "primary", reason: "no healthy standby (n2: not a standby)" });
    expect(chooseBackupSite({ ...base, candidates: [cand("p", "n1", primary)] })).toEqual({ on: "primary", reason: "no standby" });
  });

  test("backup.from_standby = false: always the primary", () => {
    expect(chooseBackupSite({ ...base, fromStandby: false, candidates: [cand("b", "n2", rep())] })).toEqual({ on: "primary", reason: "backup.from_standby = false" });
  });
});

describe("pgbackrest arguments", () => {
  const p = backrestPaths({ cluster: "main", postgres: { data_dir: "/var/lib/pg/data" }, backup: { stanza: "" } } as never, "/usr/bin/pgbackrest");
  const f = backrestTlsFiles(p);

  test("on the primary: the type, pgherd's archive check, the node annotation", () => {
    expect(backupArgs("full")).toEqual(["--type=full", "--no-archive-check", "--no-expire-auto"]);
    expect(backupArgs("incr", { node: "n1" })).toEqual(["--type=incr", "--no-archive-check", "--no-expire-auto", "--annotation=pgherd-node=n1", "--annotation=pgherd-from-standby=n"]);
  });

  test("from a standby: backup-standby, the primary as pg2 through its pgBackRest TLS server, with this node's certificate files", () => {
    const a = backupArgs("full", { node: "n2", primary: { remote: { host: "10.0.0.1", tlsPort: 8432, path: "/data/n1", port: 5433, socketPath: "/data/n1.sock", user: "postgres" }, ...f } });
    expect(a).toEqual([
      "--type=full", "--no-archive-check", "--no-expire-auto", "--annotation=pgherd-node=n2", "--annotation=pgherd-from-standby=y", "--backup-standby",
      "--pg2-host=10.0.0.1", "--pg2-host-type=tls", "--pg2-host-port=8432",
      "--pg2-host-ca-file=/var/lib/pg/data.pgbackrest/tls/ca.crt", "--pg2-host-cert-file=/var/lib/pg/data.pgbackrest/tls/pgbackrest.crt", "--pg2-host-key-file=/var/lib/pg/data.pgbackrest/tls/pgbackrest.key",
      "--pg2-path=/data/n1", "--pg2-port=5433", "--pg2-socket-path=/data/n1.sock", "--pg2-user=postgres",
    ]);
    expect(a.join(" ")).not.toMatch(/BEGIN|PRIVATE/);
  });

  test("the TLS server admits only the pgherd-pgbackrest common name, for this stanza; files by path", () => {
    const a = serverArgs({ backup: { tls_address: "", tls_port: 8432 } } as never, p, f);
    expect(a).toContain(`--tls-server-auth=${CLIENT_CN}=main`);
    expect(a).toContain("--tls-server-address=0.0.0.0");
    expect(a).toContain("--tls-server-ca-file=/var/lib/pg/data.pgbackrest/tls/ca.crt");
    expect(a).toContain("--config=/var/lib/pg/data.pgbackrest/pgbackrest.conf");
  });

  test("the certificate names every IP address also as a DNS name (pgBackRest 2.45 matches the dialled host against DNS names only)", () => {
    const sans = backrestSans(["10.0.0.1", "::1", "db1.example", "0.0.0.0", "*"]);
    expect(sans).toEqual([{ ip: "0:0:0:0:0:0:0:1" }, { ip: "10.0.0.1" }, { dns: "db1.example" }, { dns: "0:0:0:0:0:0:0:1" }, { dns: "10.0.0.1" }]);
    const ca = createCa("main", Date.now());
    const c = new X509Certificate(issueNodeCert(ca, CLIENT_CN, sans, Date.now()).cert);
    expect(c.subject).toBe(`CN=${CLIENT_CN}`);
    expect(c.subjectAltName).toContain("DNS:10.0.0.1");
    expect(c.subjectAltName).toContain("IP Address:10.0.0.1");
  });

  test("backup ls: where a backup ran, from pgherd's annotation in pgbackrest info", () => {
    const b = (label: string, annotation?: Record<string, string>) => ({
      label, type: "full", timestamp: { start: 1, stop: 2 }, archive: { start: "A", stop: "B" }, info: { size: 1, repository: { size: 1 } }, ...(annotation ? { annotation } : {}),
    });
    const info = parseInfo(JSON.stringify([{ status: { code: 0, message: "ok" }, archive: [], backup: [b("old"), b("s", { "pgherd-node": "n2", "pgherd-from-standby": "y" }), b("p", { "pgherd-node": "n1", "pgherd-from-standby": "n" })] }]));
    expect(info.backups.map((x) => [x.label, x.node, x.fromStandby])).toEqual([["old", undefined, undefined], ["s", "n2", true], ["p", "n1", false]]);
  });
});

describe("a member's backup answer over the mesh (status and message only)", () => {
  test("the leader reads the backup back from the message", () => {
    const b = { label: "20261202-010738F", type: "full" as const, start: 0, stop: 0, walStart: "000000030000000000000012", walStop: "000000030000000000000013", lsnStart: "0/12000028", lsnStop: "0/13000100", sizeBytes: 0, repoBytes: 3071716 };
    for (const fromStandby of [true, false]) {
      const m = doneMessage({ ...b, node: "h4", fromStandby });
      expect(fromMessage(m)).toEqual({ ...b, node: "h4", fromStandby });
    }
    expect(fromMessage("backup failed")).toBeUndefined();
  });
});
