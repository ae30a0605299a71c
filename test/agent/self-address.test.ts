// The address a node shows for itself (cluster ls, /cluster, its own pg_hba line): defect 5 showed
// 0.0.0.0 with the default mesh.listen = "0.0.0.0:7401" and no advertise.
import { describe, expect, test } from "bun:test";
import { hbaAddresses, SelfAddress, selfHost } from "../../src/agent/self-address.ts";

describe("own address", () => {
  test("advertise wins, then a named listen host, then the address learnt from an authenticated connection", () => {
    expect(selfHost({ advertise: "10.0.0.5:7401", listen: "0.0.0.0", learnt: "10.0.0.9" })).toBe("10.0.0.5");
    expect(selfHost({ advertise: "[fd00::5]:7401", listen: "0.0.0.0", learnt: "" })).toBe("fd00::5");
    expect(selfHost({ advertise: "", listen: "10.0.0.7", learnt: "10.0.0.9" })).toBe("10.0.0.7");
    expect(selfHost({ advertise: "", listen: "0.0.0.0", learnt: "10.0.0.9" })).toBe("10.0.0.9");
    expect(selfHost({ advertise: "0.0.0.0:7401", listen: "::", learnt: "fd00::9" })).toBe("fd00::9");
  });
  test("never a wildcard: unknown stays empty", () => {
    expect(selfHost({ advertise: "", listen: "0.0.0.0", learnt: "" })).toBe("");
    expect(selfHost({ advertise: "", listen: "::", learnt: "::" })).toBe("");
  });
  test("pg_hba addresses: IPs only, never a wildcard or an unknown one, each once, sorted", () => {
    expect(hbaAddresses(["10.0.0.3", "", "10.0.0.2", "10.0.0.3", "host.example"], "0.0.0.0")).toEqual(["10.0.0.2", "10.0.0.3"]);
    expect(hbaAddresses(["fd00::2"], "10.0.0.1")).toEqual(["10.0.0.1", "fd00::2"]);
  });
  test("the agent's SelfAddress keeps the first learnt address and tells peers host:port", () => {
    const listening = { host: "0.0.0.0", port: 7401 };
    const a = new SelfAddress("", () => listening);
    expect(a.mesh()).toBe("0.0.0.0:7401"); // nothing known yet: the listening address as it is
    a.learn("");
    a.learn("fd00::9");
    a.learn("10.0.0.9"); // a later connection's local address does not replace the first
    expect(a.host()).toBe("fd00::9");
    expect(a.mesh()).toBe("[fd00::9]:7401");
    expect(a.hba(["10.0.0.2"])).toEqual(["10.0.0.2", "fd00::9"]);
    expect(new SelfAddress("10.0.0.5:7500", () => listening).mesh()).toBe("10.0.0.5:7500");
  });
});
