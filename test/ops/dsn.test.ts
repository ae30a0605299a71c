import { expect, test } from "bun:test";
import { buildDsn } from "../../src/ops/dsn.ts";

const members = [
  { name: "db2", role: "standby" as const, host: "10.0.0.2", port: 5432 },
  { name: "w", role: "witness" as const, host: "10.0.0.9", port: null },
  { name: "db1", role: "primary" as const, host: "10.0.0.1", port: 5432 },
  { name: "db3", role: "unknown" as const, host: "fd00::3", port: 5433 },
];

test("every database member, in name order, with the session attribute of the target", () => {
  expect(buildDsn(members, { target: "primary", user: "app", dbname: "app" })).toBe("postgresql://app@10.0.0.1:5432,10.0.0.2:5432,[fd00::3]:5433/app?target_session_attrs=read-write&connect_timeout=3");
  expect(buildDsn(members, { target: "replica" })).toBe("postgresql://10.0.0.1:5432,10.0.0.2:5432,[fd00::3]:5433/?target_session_attrs=standby&connect_timeout=3");
  expect(buildDsn(members, { target: "any" })).toContain("target_session_attrs=any");
});

test("names are URI-encoded; no address at all is an error", () => {
  expect(buildDsn(members.slice(0, 1), { target: "primary", user: "a b@c", dbname: "x/y" })).toBe("postgresql://a%20b%40c@10.0.0.2:5432/x%2Fy?target_session_attrs=read-write&connect_timeout=3");
  expect(() => buildDsn([{ name: "w", role: "witness", host: "h", port: null }], { target: "any" })).toThrow("no database member");
});

test("with the CA's path: verify-full against it, the path URI-encoded", () => {
  expect(buildDsn(members.slice(0, 1), { target: "primary", caFile: "/etc/app/pg ca.crt" })).toBe("postgresql://10.0.0.2:5432/?target_session_attrs=read-write&connect_timeout=3&sslmode=verify-full&sslrootcert=%2Fetc%2Fapp%2Fpg%20ca.crt");
});
