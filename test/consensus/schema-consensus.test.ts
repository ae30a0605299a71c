import { expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

const BASE = `cluster = "main"\nsecret = "${"k".repeat(40)}"\n`;
const lines = (extra: string): readonly string[] => {
  try {
    parseConfig(BASE + extra, "pgherd.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.lines;
    throw e;
  }
  return [];
};

test("builtin is the default; etcd needs endpoints", () => {
  expect(parseConfig(BASE, "pgherd.toml").consensus.backend).toBe("builtin");
  expect(lines(`[consensus]\nbackend = "etcd"\n`)).toEqual(['pgherd.toml: consensus.endpoints needs at least one etcd URL with backend = "etcd"']);
  expect(lines(`[consensus]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\n`)).toEqual([]);
});

test("endpoints are scheme://host:port; credentials never in the URL", () => {
  expect(lines(`[consensus]\nendpoints = ["127.0.0.1:2379"]\n`)[0]).toContain("consensus.endpoints.0");
  expect(lines(`[consensus]\nendpoints = ["http://u:p@127.0.0.1:2379"]\n`)[0]).toContain("credentials go in username/password_file");
  expect(lines(`[consensus]\nendpoints = ["ftp://127.0.0.1:2379"]\n`)[0]).toContain("http:// or https://");
});

test("username goes with a password file; TLS files with https; cert with key", () => {
  expect(lines(`[consensus]\nusername = "pgherd"\n`)).toEqual(["pgherd.toml: consensus.password_file consensus.username and consensus.password_file go together"]);
  expect(lines(`[consensus]\npassword = "x"\n`)[0]).toContain("consensus");
  expect(lines(`[consensus]\ntls_ca = "/etc/ca.pem"\nendpoints = ["http://127.0.0.1:2379"]\n`)[0]).toContain("must all be https://");
  expect(lines(`[consensus]\ntls_cert = "/etc/c.pem"\n`)[0]).toContain("go together");
});

test("a username (its password, then etcd's token, in every request) needs https, except to a loopback address", () => {
  const auth = `username = "pgherd"\npassword_file = "/etc/pgherd/etcd-password"\n`;
  expect(lines(`[consensus]\n${auth}endpoints = ["https://10.0.0.11:2379", "http://10.0.0.12:2379"]\n`)).toEqual([
    "pgherd.toml: consensus.endpoints http://10.0.0.12:2379: must be https:// with consensus.username (the password and etcd's token would cross the network in clear; plain http only to a loopback address)",
  ]);
  expect(lines(`[consensus]\n${auth}endpoints = ["http://127.0.0.1:2379", "http://localhost:2379", "http://[::1]:2379", "https://10.0.0.11:2379"]\n`)).toEqual([]);
  expect(lines(`[consensus]\nendpoints = ["http://10.0.0.12:2379"]\n`)).toEqual([]); // no password to protect
});

test("a TTL too short for two renewal rounds is refused, naming the smallest that fits", () => {
  const l = lines(`[consensus]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\nttl_s = 2\n`);
  expect(l).toHaveLength(1);
  expect(l[0]).toContain("pgherd.toml: consensus.ttl_s 2 is too small");
  expect(l[0]).toContain("raise ttl_s to at least 4");
});
