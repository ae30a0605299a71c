import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { serverLogDir, serverLogParameters } from "../../src/ops/pg-log.ts";
import { renderPgherdConf } from "../../src/postgres/pgconf.ts";

const cfg = (extra = "") => parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[postgres]\ndata_dir = "/srv/pg/data"\n${extra}`, "pgherd.toml");
const base = { listenAddresses: ["*"], port: 5432, maxWalSenders: 10, maxReplicationSlots: 10, hotStandby: true, walLogHints: true, unixSocketDir: "/tmp" } as const;

test("the server log goes to <data_dir>.log by default, rotated daily into one file per weekday", () => {
  const c = cfg();
  expect(serverLogDir(c)).toBe("/srv/pg/data.log");
  const conf = renderPgherdConf({ ...base, serverLog: serverLogParameters(c) });
  expect(conf).toContain("logging_collector = on\n");
  expect(conf).toContain("log_directory = '/srv/pg/data.log'\n");
  expect(conf).toContain("log_filename = 'postgresql-%a.log'\n");
  expect(conf).toContain("log_rotation_age = '1d'\n");
  expect(conf).toContain("log_truncate_on_rotation = on\n");
});

test("[log] keys move and reshape it; [postgres.parameters] still win", () => {
  const c = cfg(`parameters = { log_rotation_age = "1h" }\n[log]\npostgres_dir = "/var/log/pg"\npostgres_filename = "pg-%H.log"\n`);
  expect(serverLogDir(c)).toBe("/var/log/pg");
  const conf = renderPgherdConf({ ...base, serverLog: serverLogParameters(c), parameters: c.postgres.parameters });
  expect(conf).toContain("log_filename = 'pg-%H.log'\n");
  expect(conf.match(/^log_rotation_age = .*$/gm)).toEqual(["log_rotation_age = '1h'"]);
});

test("bad [log] values are refused with file and key", () => {
  expect(() => cfg(`[log]\npostgres_dir = "rel/dir"`)).toThrow("pgherd.toml: log.postgres_dir must be an absolute path or \"\"");
  expect(() => cfg(`[log]\npostgres_filename = "a/b.log"`)).toThrow("pgherd.toml: log.postgres_filename must be a file name");
  expect(() => cfg(`[log]\npostgres_rotation_age = "1 week"`)).toThrow("pgherd.toml: log.postgres_rotation_age must be a time");
  expect(() => cfg(`[log]\nformat = "xml"`)).toThrow('pgherd.toml: log.format must be "text" or "json"');
});
