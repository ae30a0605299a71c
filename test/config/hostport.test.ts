import { expect, test } from "bun:test";
import { formatHostPort, parseHostPort } from "../../src/config/hostport.ts";

test("accepted forms", () => {
  expect(parseHostPort("db1.example.com:7401")).toEqual({ host: "db1.example.com", port: 7401 });
  expect(parseHostPort("10.0.0.1:1")).toEqual({ host: "10.0.0.1", port: 1 });
  expect(parseHostPort("[::1]:65535")).toEqual({ host: "::1", port: 65535 });
  expect(parseHostPort("db2", 7400)).toEqual({ host: "db2", port: 7400 });
  expect(parseHostPort("fe80::1", 7400)).toEqual({ host: "fe80::1", port: 7400 });
  expect(parseHostPort("[::]", 7400)).toEqual({ host: "::", port: 7400 });
});

test("rejected forms say why", () => {
  expect(parseHostPort("db1")).toBe('"db1" needs a port (host:port)');
  expect(parseHostPort("db1:0")).toBe('"db1:0": port must be 1..65535');
  expect(parseHostPort("db1:65536")).toBe('"db1:65536": port must be 1..65535');
  expect(parseHostPort("db1:http")).toBe('"db1:http": port must be 1..65535');
  expect(parseHostPort(":7401")).toBe('":7401": "" is not a valid host name or IP address');
  expect(parseHostPort("under_score:1")).toBe('"under_score:1": "under_score" is not a valid host name or IP address');
  expect(parseHostPort("[db1]:1")).toBe('"[db1]:1": "db1" is not an IPv6 address');
  expect(parseHostPort("-bad:1")).toBe('"-bad:1": "-bad" is not a valid host name or IP address');
});

test("format round-trips", () => {
  for (const s of ["db1:7401", "10.0.0.1:80", "[::1]:7401"]) {
    const hp = parseHostPort(s);
    if (typeof hp === "string") throw new Error(hp);
    expect(formatHostPort(hp)).toBe(s);
  }
});
