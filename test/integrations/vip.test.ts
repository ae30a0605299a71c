// [vip] at load: an IPv4 address with its prefix, and the interface it goes on.
import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { missingCap } from "../../src/integrations/vip.ts";

const cfg = (vip: string) => parseConfig(`cluster = "main"\nsecret = "${"k".repeat(40)}"\n[vip]\n${vip}\n`, "pgherd.toml");

test("vip.address needs its prefix length and an interface", () => {
  expect(cfg(`address = "10.0.0.50/24"\ninterface = "eth0"`).vip).toEqual({ address: "10.0.0.50/24", interface: "eth0" });
  expect(() => cfg(`address = "10.0.0.50"\ninterface = "eth0"`)).toThrow(/vip\.address/);
  expect(() => cfg(`address = "10.0.0.300/24"\ninterface = "eth0"`)).toThrow(/vip\.address/);
  expect(() => cfg(`address = "10.0.0.50/24"`)).toThrow(/vip\.interface.*required/);
  expect(() => cfg(`address = "10.0.0.50/24"\ninterface = "eth0; rm -rf /"`)).toThrow(/vip\.interface/);
  expect(cfg("").vip.address).toBe("");
});

test("a refused ip or arping names the capability the agent lacks", () => {
  expect(missingCap("RTNETLINK answers: Operation not permitted", "CAP_NET_ADMIN")).toContain("the agent lacks CAP_NET_ADMIN");
  expect(missingCap("arping: socket: Operation not permitted", "CAP_NET_RAW")).toContain("the agent lacks CAP_NET_RAW");
  expect(missingCap("RTNETLINK answers: File exists", "CAP_NET_ADMIN")).toBe("");
});
