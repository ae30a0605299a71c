import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { accessRows } from "../../src/ops/access.ts";
import { renderHbaBlock } from "../../src/postgres/hba.ts";

const base = `cluster = "c"\nsecret = "${"s".repeat(40)}"\n`;
const cfg = (rules: string) => parseConfig(`${base}${rules}`, "pgherd.toml");
const errors = (rules: string) => {
  try {
    cfg(rules);
    return [];
  } catch (e) {
    return (e as Error).message.split("\n");
  }
};

test("rules become pg_hba rows after pgherd's own, inside the managed block", () => {
  const c = cfg(`[[access]]\ndatabase = "app,reports"\nuser = "app"\naddress = "10.0.1.0/24"\n[[access]]\ntype = "hostssl"\nuser = "+admins"\naddress = "fd00::5"\nmethod = "cert"\n[[access]]\ntype = "local"\nuser = "all"\nmethod = "reject"\n`);
  const rows = accessRows(c.access);
  expect(rows).toEqual([
    "host     app,reports      app              10.0.1.0/24              scram-sha-256",
    "hostssl  all              +admins          fd00::5/128              cert",
    "local    all              all              reject",
  ]);
  const block = renderHbaBlock({ superuser: "postgres", replUser: "r", monitorUser: "m", peers: ["10.0.0.2"], accessRows: rows }).split("\n");
  const at = (s: string) => block.findIndex((l) => l.includes(s));
  expect(at("10.0.0.2/32")).toBeLessThan(at("10.0.1.0/24"));
  expect(at("reject")).toBeLessThan(at("# END pgherd managed block"));
});

test("no rules: the block is as before", () => {
  const p = { superuser: "postgres", replUser: "r", monitorUser: "m", peers: ["10.0.0.2"] };
  expect(renderHbaBlock({ ...p, accessRows: accessRows(cfg("").access) })).toBe(renderHbaBlock(p));
});

test("bad rules are refused naming file, rule and key", () => {
  expect(errors(`[[access]]\nuser = "app"\n`)).toEqual(["pgherd.toml: access.0.address is required (a network in CIDR notation)"]);
  expect(errors(`[[access]]\nuser = "app"\naddress = "10.0.0.0/33"\n`)).toEqual(["pgherd.toml: access.0.address has a prefix length out of range (0..32)"]);
  expect(errors(`[[access]]\nuser = "app"\naddress = "0.0.0.0/0\\nhost all all 0.0.0.0/0 trust"\n`)[0]).toContain("access.0.address must be an IPv4 or IPv6 address");
  expect(errors(`[[access]]\nuser = "app"\naddress = "10.0.0.1"\nmethod = "trust"\n`)).toEqual(['pgherd.toml: access.0.method must be "scram-sha-256", "cert" or "reject"']);
  expect(errors(`[[access]]\nuser = "replication"\naddress = "10.0.0.1"\n`)[0]).toContain("access.0.user must be");
  expect(errors(`[[access]]\nuser = "a"\ndatabase = "replication"\naddress = "10.0.0.1"\n`)[0]).toContain("access.0.database must be");
  expect(errors(`[[access]]\ntype = "local"\nuser = "a"\naddress = "10.0.0.1"\n`)).toEqual(['pgherd.toml: access.0.address must be absent for type "local"']);
  expect(errors(`[[access]]\nuser = "a"\naddress = "10.0.0.1"\nmethod = "cert"\n`)).toEqual(['pgherd.toml: access.0.method cert needs type "hostssl"']);
  // A rule naming pgherd's replication role over TCP never admits it (the block rejects that role
  // from all but the peers first: review, it was taken and did nothing); local and reject rules may.
  expect(errors(`[[access]]\nuser = "app"\naddress = "10.0.0.1"\n[[access]]\ntype = "hostssl"\nuser = "app,pgherd_repl"\naddress = "10.0.0.0/8"\n`)).toEqual([
    "pgherd.toml: access.1.user names pgherd_repl, pgherd's replication role (postgres.repl_user), which pgherd's pg_hba block rejects over TCP from every address but the peers' before any client rule: this rule would never admit it; give that client a role of its own",
  ]);
  expect(errors(`[postgres]\nrepl_user = "repl"\n[[access]]\nuser = "repl"\naddress = "10.0.0.1"\n`)[0]).toContain("access.0.user names repl, ");
  expect(errors(`[postgres]\nrepl_user = "repl"\n[[access]]\nuser = "pgherd_repl"\naddress = "10.0.0.1"\n`)).toEqual([]);
  expect(errors(`[[access]]\ntype = "local"\nuser = "pgherd_repl"\n[[access]]\nuser = "pgherd_repl"\naddress = "10.0.0.1"\nmethod = "reject"\n`)).toEqual([]);
});
