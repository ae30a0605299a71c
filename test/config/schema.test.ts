import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ConfigError, loadConfig, parseConfig, privacyProblem, readPrivateFile } from "../../src/config/load.ts";
import { redactConfig } from "../../src/config/redact.ts";
import { configSchema } from "../../src/config/schema.ts";

const SECRET = "0123456789abcdefghijklmnopqrstuvwxyz";
const BASE = `cluster = "main"\nsecret = "${SECRET}"\n`;

/** The ConfigError lines parseConfig throws for `text` (fails the test if it does not throw one). */
function errorLines(text: string): readonly string[] {
  try {
    parseConfig(text, "pgherd.toml");
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).message).toBe((e as ConfigError).lines.join("\n"));
    return (e as ConfigError).lines;
  }
  throw new Error("expected a ConfigError");
}

describe("defaults", () => {
  test("only cluster and secret are required; everything else has the documented default", () => {
    expect(parseConfig(BASE, "pgherd.toml")).toEqual({
      cluster: "main",
      secret: SECRET,
      node_name: hostname(),
      role: "database",
      state_dir: "/var/lib/pgherd",
      bootstrap_expect: 3,
      priority: 100,
      durability: "quorum",
      discovery: { port: 7400, broadcast: ["auto"], peers: [], interval_ms: 1000, max_age_ms: 30000 },
      mesh: {
        listen: "0.0.0.0:7401", advertise: "", max_frame_bytes: 1048576, ping_ms: 500, dead_ms: 3000,
        handshake_ms: 3000, max_buffered_bytes: 8388608,
      },
      election: { heartbeat_ms: 150, lease_ms: 1000, timeout_ms: 1500, jitter_ms: 300, max_drift: 0.02, fence_ms: 400, auto_join: false },
      api: { listen: "127.0.0.1:7402", token: "", tls_cert: "", tls_key: "" },
      postgres: {
        data_dir: "/var/lib/postgresql/pgherd", bin_dir: "", port: 5432, listen_addresses: "*", socket_dir: "",
        os_user: "postgres", superuser: "postgres", repl_user: "pgherd_repl", monitor_user: "pgherd_monitor",
        loop_ms: 500, start_timeout_s: 120, max_wal_senders: 10, max_replication_slots: 10, wal_level: "replica", parameters: {}, replication_tls: true,
      },
      bootstrap: { from_existing: false, from_backup: false, target_time: "", target_lsn: "" },
      rejoin: { auto: true, keep_old: 1, clone_max_rate_kb: 0 },
      failover: { max_lag_bytes: 1048576 },
      liveness: { stuck_ms: 3000, cannot_write_ms: 1000, disk_full_ms: 1000 },
      slots: { retain_minutes: 30, max_slot_wal_keep_size: "", permanent: [] },
      tags: { nofailover: false, noloadbalance: false },
      watchdog: { mode: "off", device: "/dev/watchdog" },
      log: { level: "info", format: "text", postgres_dir: "", postgres_filename: "postgresql-%a.log", postgres_rotation_age: "1d" },
      shutdown: { handover: true },
      hooks: { on_role_change: "", on_start: "", on_stop: "", pre_promote: "", timeout_ms: 10000 },
      sentry: { dsn: "", environment: "production" },
      pgpool: { pcp_host: "", pcp_port: 9898, pcp_user: "pgpool", pcp_password_file: "", bin_dir: "", interval_ms: 1000 },
      vip: { address: "", interface: "" },
      access: [],
      consensus: { backend: "builtin", endpoints: [], prefix: "/pgherd", tls_ca: "", tls_cert: "", tls_key: "", username: "", password_file: "", ttl_s: 5, poll_ms: 250, request_timeout_ms: 1000, failsafe: false, allow_migration: true },
      backup: { tool: "none", repo_path: "/var/lib/pgbackrest", repo_host: "", repo_host_port: 8432, stanza: "", clone_from: "backup", archive_failing_s: 60, retention_full: 2, full_every_hours: 0, incr_every_hours: 0, from_standby: false, tls_port: 8432, tls_address: "" },
    });
  });

  test("missing required keys are each named", () => {
    expect(errorLines("")).toEqual(["pgherd.toml: cluster is required", "pgherd.toml: secret is required"]);
  });

  test("the config is deeply frozen", () => {
    const cfg = parseConfig(`${BASE}[discovery]\npeers = ["10.0.0.2"]\n`, "pgherd.toml");
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.election)).toBe(true);
    expect(Object.isFrozen(cfg.discovery.peers)).toBe(true);
    expect(() => {
      (cfg.election as { lease_ms: number }).lease_ms = 1;
    }).toThrow();
    expect(() => (cfg.discovery.peers as string[]).push("x")).toThrow();
    expect(cfg.election.lease_ms).toBe(1000);
  });

  test("explicit values override defaults", () => {
    const cfg = parseConfig(
      `${BASE}role = "witness"\n[discovery]\nbroadcast = ["127.255.255.255"]\npeers = ["db2", "10.0.0.3:7500", "[::1]:7400"]\n[mesh]\nadvertise = "10.0.0.1:7401"\n`,
      "pgherd.toml",
    );
    expect(cfg.role).toBe("witness");
    expect(cfg.discovery.broadcast).toEqual(["127.255.255.255"]);
    expect(cfg.discovery.peers).toEqual(["db2", "10.0.0.3:7500", "[::1]:7400"]);
    expect(cfg.mesh.advertise).toBe("10.0.0.1:7401");
  });
});

describe("cross-field rules", () => {
  test("heartbeat_ms < lease_ms", () => {
    expect(errorLines(`${BASE}[election]\nheartbeat_ms = 1500\n`)).toEqual([
      "pgherd.toml: election.heartbeat_ms must be less than election.lease_ms",
    ]);
  });

  test("lease_ms < timeout_ms", () => {
    expect(errorLines(`${BASE}[election]\nlease_ms = 2500\n`)).toEqual([
      "pgherd.toml: election.lease_ms must be less than election.timeout_ms",
    ]);
  });

  test("lease + fence margin under clock drift, at the exact boundary", () => {
    // (1000 + 400) / 0.98 * 1.02 = 1457.14 → 1458 is the smallest safe timeout.
    expect(errorLines(`${BASE}[election]\ntimeout_ms = 1457\n`)).toEqual([
      "pgherd.toml: election.timeout_ms 1457 is too small: with max_drift 0.02 a lease of 1000 ms plus fence_ms 400 needs timeout_ms >= 1458",
    ]);
    expect(parseConfig(`${BASE}[election]\ntimeout_ms = 1458\n`, "pgherd.toml").election.timeout_ms).toBe(1458);
  });

  test("the margin uses every key it names", () => {
    expect(errorLines(`${BASE}[election]\nfence_ms = 1000\nmax_drift = 0.1\n`)).toEqual([
      "pgherd.toml: election.timeout_ms 1500 is too small: with max_drift 0.1 a lease of 1000 ms plus fence_ms 1000 needs timeout_ms >= 2445",
    ]);
  });

  test("mesh and discovery timing rules", () => {
    expect(errorLines(`${BASE}[mesh]\nping_ms = 3000\n[discovery]\ninterval_ms = 30000\n`)).toEqual([
      "pgherd.toml: discovery.interval_ms must be less than discovery.max_age_ms",
      "pgherd.toml: mesh.ping_ms must be less than mesh.dead_ms",
    ]);
    expect(errorLines(`${BASE}[mesh]\nmax_buffered_bytes = 2048\n`)).toEqual([
      "pgherd.toml: mesh.max_buffered_bytes must be at least mesh.max_frame_bytes",
    ]);
  });

  test("a kernel watchdog needs a whole second inside lease + fence - 2 heartbeats", () => {
    // 1000 + 300 - 2 * 200 = 900 ms: no 1 s kernel timeout fits; 1000 + 400 - 400 is exactly 1 s.
    expect(errorLines(`${BASE}[election]\nheartbeat_ms = 200\nlease_ms = 1000\nfence_ms = 300\ntimeout_ms = 2000\n[watchdog]\nmode = "auto"\n`)).toEqual([
      "pgherd.toml: watchdog.mode needs election.lease_ms + election.fence_ms - 2 * election.heartbeat_ms >= 1000 (the kernel watchdog counts whole seconds; now 900 ms)",
    ]);
    expect(parseConfig(`${BASE}[election]\nheartbeat_ms = 200\nlease_ms = 1000\nfence_ms = 300\ntimeout_ms = 2000\n`, "pgherd.toml").watchdog.mode).toBe("off");
    expect(parseConfig(`${BASE}[election]\nheartbeat_ms = 200\nlease_ms = 1000\nfence_ms = 400\ntimeout_ms = 2000\n[watchdog]\nmode = "auto"\n`, "pgherd.toml").watchdog.mode).toBe("auto");
    // The user-space fence needs time before the kernel's reset.
    expect(errorLines(`${BASE}[election]\nlease_ms = 1800\nfence_ms = 100\ntimeout_ms = 3000\n[watchdog]\nmode = "auto"\n`)).toEqual([
      "pgherd.toml: watchdog.mode needs election.fence_ms >= 300 (now 100): the kernel resets the host fence_ms after the lease end, and the watchdog process must have stopped PostgreSQL before that",
    ]);
    expect(errorLines(`${BASE}[watchdog]\nmode = "on"\ndevice = "dev/watchdog"\n`)).toEqual([
      'pgherd.toml: watchdog.mode must be "off" or "auto"',
      "pgherd.toml: watchdog.device must be an absolute path",
    ]);
  });

  test("a cross-field rule is not reported on top of an invalid field", () => {
    expect(errorLines(`${BASE}[election]\nmax_drift = 0.9\n`)).toEqual(["pgherd.toml: election.max_drift must be at most 0.5"]);
  });
});

describe("bad input names the key", () => {
  test("unknown keys, top level and in a section", () => {
    expect(errorLines(`${BASE}colour = 1\n[discovery]\nbrodcast = ["auto"]\n`)).toEqual([
      "pgherd.toml: unknown key discovery.brodcast",
      "pgherd.toml: unknown key colour",
    ]);
  });

  test("unknown section", () => {
    expect(errorLines(`${BASE}[postgress]\nport = 5432\n`)).toEqual(["pgherd.toml: unknown key postgress"]);
  });

  test("wrong types", () => {
    expect(errorLines(`${BASE}bootstrap_expect = 1.5\n[discovery]\nport = "7400"\npeers = "db2"\n[log]\nlevel = "trace"\n`)).toEqual([
      "pgherd.toml: bootstrap_expect must be an integer (got 1.5)",
      "pgherd.toml: discovery.port must be a number (got string)",
      "pgherd.toml: discovery.peers must be an array (got string)",
      'pgherd.toml: log.level must be one of "debug", "info", "warn", "error"',
    ]);
    expect(errorLines(`${BASE}mesh = 5\n`)).toEqual(["pgherd.toml: mesh must be a table (got number)"]);
  });

  test("out-of-range and malformed values", () => {
    expect(
      errorLines(
        `cluster = "Main Cluster"\nsecret = "${SECRET}"\nstate_dir = "var/lib"\npriority = 1001\n` +
          `[discovery]\nport = 0\nbroadcast = ["eth0"]\npeers = ["db_2", "db3:70000"]\n[mesh]\nlisten = "0.0.0.0"\n`,
      ),
    ).toEqual([
      "pgherd.toml: cluster must be 1-63 characters of a-z, 0-9, _ and -",
      "pgherd.toml: state_dir must be an absolute path",
      "pgherd.toml: priority must be at most 1000",
      "pgherd.toml: discovery.port must be at least 1",
      'pgherd.toml: discovery.broadcast.0 must be "auto" or an IPv4 broadcast address',
      'pgherd.toml: discovery.peers.0 is invalid: "db_2": "db_2" is not a valid host name or IP address',
      'pgherd.toml: discovery.peers.1 is invalid: "db3:70000": port must be 1..65535',
      'pgherd.toml: mesh.listen is invalid: "0.0.0.0" needs a port (host:port)',
    ]);
  });

  test("node_name is what hello and beacon frames carry: host-name-like, at most 64 characters", () => {
    expect(errorLines(`${BASE}node_name = "${"a".repeat(32)}.${"b".repeat(32)}"\n`)).toEqual(["pgherd.toml: node_name must be at most 64 characters"]);
    expect(errorLines(`${BASE}node_name = ""\n`)).toEqual(["pgherd.toml: node_name must not be empty"]);
    expect(errorLines(`${BASE}node_name = "db 1"\n`)).toEqual(["pgherd.toml: node_name must be a host-name-like string (letters, digits, '-', '.'; unset, it is this host's name)"]);
    // Unset: this host's name, checked the same way (a default is not taken unchecked).
    const byDefault = configSchema(() => "db_1").safeParse({ cluster: "c", secret: SECRET });
    expect(byDefault.success ? null : byDefault.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`)).toEqual(["node_name: must be a host-name-like string (letters, digits, '-', '.'; unset, it is this host's name)"]);
    expect(configSchema(() => "db-1").parse({ cluster: "c", secret: SECRET }).node_name).toBe("db-1");
    expect(parseConfig(`${BASE}node_name = "${"a".repeat(31)}.${"b".repeat(32)}"\n`, "pgherd.toml").node_name).toHaveLength(64);
  });

  test("a clone's rate limit is 0 (none) or within pg_basebackup's range", () => {
    expect(errorLines(`${BASE}[rejoin]\nclone_max_rate_kb = 16\n`)).toEqual(["pgherd.toml: rejoin.clone_max_rate_kb must be 0 (no limit) or at least 32 (pg_basebackup's least rate, kB/s)"]);
    expect(errorLines(`${BASE}[rejoin]\nclone_max_rate_kb = 2000000\n`)).toEqual(["pgherd.toml: rejoin.clone_max_rate_kb must be at most 1048576"]);
    expect(parseConfig(`${BASE}[rejoin]\nclone_max_rate_kb = 51200\n`, "pgherd.toml").rejoin.clone_max_rate_kb).toBe(51200);
  });

  test("secrets never appear in error messages", () => {
    const short = errorLines(`cluster = "main"\nsecret = "tooShortXYZ"\n`);
    expect(short).toEqual(["pgherd.toml: secret must be at least 32 characters (generate one with `pgherd init`)"]);
    const numeric = errorLines(`cluster = "main"\nsecret = 918273645\n`);
    expect(numeric).toEqual(["pgherd.toml: secret must be a string (got number)"]);
  });

  test("the example file's placeholder secret is refused", () => {
    expect(errorLines(`cluster = "main"\nsecret = "CHANGE-ME-generate-with-pgherd-init-at-least-32"\n`)).toEqual([
      "pgherd.toml: secret is still the placeholder from pgherd.toml.example: generate one with `pgherd init`",
    ]);
  });

  test("TOML syntax error gives line and column", () => {
    const lines = errorLines(`${BASE}[election]\nlease_ms = \n`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^pgherd\.toml: TOML syntax error at line 4 column \d+: \S/);
    expect(lines[0]).not.toContain("\n");
  });

  test("the file label is used as given", () => {
    expect(() => parseConfig("", "node1.toml")).toThrow("node1.toml: cluster is required");
  });
});

describe("loadConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("reads and prefixes errors with the file's base name", () => {
    const path = join(dir, "site.toml");
    writeFileSync(path, `${BASE}[api]\nlisten = "127.0.0.1:9000"\n`);
    expect(loadConfig(path).api.listen).toBe("127.0.0.1:9000");
    writeFileSync(path, `${BASE}[api]\nlisten = 9000\n`);
    expect(() => loadConfig(path)).toThrow(new ConfigError(["site.toml: api.listen must be a string (got number)"]));
  });

  test("a missing file names the full path", () => {
    const path = join(dir, "nope", "pgherd.toml");
    expect(() => loadConfig(path)).toThrow(new ConfigError([`pgherd.toml: cannot read config file ${path}: file not found`]));
  });

  test("a directory is not a config file", () => {
    expect(() => loadConfig(dir)).toThrow(`cannot read config file ${dir}: is a directory`);
    expect(() => loadConfig(dir, { ownerOnly: true })).toThrow(new ConfigError([`${basename(dir)}: ${dir} is not a regular file`]));
  });
});

// The agent's config holds the cluster secret (and the API token): anyone who can read it can
// join the cluster; anyone who can write it chooses the binaries the agent runs.
describe("loadConfig for the agent (ownerOnly)", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-config-mode-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, mode: number) => {
    const path = join(dir, name);
    writeFileSync(path, BASE);
    chmodSync(path, mode); // after writing: the umask must not decide the mode
    return path;
  };

  test("refuses a file group or others may read or write, naming file and mode", () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o660]) {
      const path = write(`m${mode.toString(8)}.toml`, mode);
      const m = `0${mode.toString(8)}`;
      expect(() => loadConfig(path, { ownerOnly: true })).toThrow(
        new ConfigError([`m${mode.toString(8)}.toml: ${path} has mode ${m}: it holds the cluster secret, so group and others must have no access (chmod 600 ${path})`]),
      );
    }
  });

  test("accepts 0600 and 0400", () => {
    for (const mode of [0o600, 0o400]) expect(loadConfig(write(`ok${mode.toString(8)}.toml`, mode), { ownerOnly: true }).cluster).toBe("main");
  });

  test("without ownerOnly (the CLI looking up api.listen) a shared file still loads", () => {
    expect(loadConfig(write("shared.toml", 0o644)).cluster).toBe("main");
  });

  test("the owner must be root or the agent's own user", () => {
    const st = { isFile: () => true, mode: 0o100600 };
    expect(privacyProblem({ ...st, uid: 0 }, "/etc/p.toml", 999)).toBe("");
    expect(privacyProblem({ ...st, uid: 999 }, "/etc/p.toml", 999)).toBe("");
    expect(privacyProblem({ ...st, uid: 1001 }, "/etc/p.toml", 0)).toBe(
      "/etc/p.toml is owned by uid 1001: whoever can write it controls this agent, so it must belong to root or to the agent's own user (uid 0)",
    );
  });

  test("readPrivateFile never opens what is not a regular file (a FIFO would block, a device can act: /dev/watchdog arms the host's watchdog)", () => {
    const fifo = join(dir, "key.fifo");
    expect(Bun.spawnSync(["mkfifo", "-m", "600", fifo]).exitCode).toBe(0);
    expect(() => readPrivateFile(fifo, "api.tls_key")).toThrow(`api.tls_key: ${fifo} is not a regular file`);
    expect(() => readPrivateFile("/dev/null", "consensus.password_file")).toThrow("consensus.password_file: /dev/null is not a regular file");
  });

  test("readPrivateFile (TLS keys, password files): a key others may read, or a link, is refused and named", () => {
    const key = write("api.key", 0o644);
    expect(() => readPrivateFile(key, "api.tls_key")).toThrow(`api.tls_key: ${key} has mode 0644`);
    chmodSync(key, 0o600);
    expect(readPrivateFile(key, "api.tls_key")).toBe(BASE);
    symlinkSync(key, join(dir, "link.key"));
    expect(() => readPrivateFile(join(dir, "link.key"), "api.tls_key")).toThrow(`api.tls_key: ${join(dir, "link.key")} is a symbolic link`);
  });

  test.skipIf(process.getuid?.() !== 0)("a root agent refuses a file another user owns (on disk)", () => {
    const path = write("theirs.toml", 0o600);
    chownSync(path, 65534, 65534);
    expect(() => loadConfig(path, { ownerOnly: true })).toThrow(`${path} is owned by uid 65534`);
  });
});

test("redactConfig hides the secret and a set token", () => {
  const token = "tok-123456-abcdefghijklmnopqrstuvwxyz";
  const cfg = parseConfig(`${BASE}[api]\ntoken = "${token}"\n`, "pgherd.toml");
  const shown = JSON.stringify(redactConfig(cfg));
  expect(shown).not.toContain(SECRET);
  expect(shown).not.toContain(token);
  expect(redactConfig(cfg).election).toEqual(cfg.election);
});
