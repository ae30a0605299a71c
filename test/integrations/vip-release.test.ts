// The fencing watchdog's record of [vip] (src/fence/vip-release.ts): written by the agent before
// the first add, validated at read like config [vip]; the watchdog keeps the address when the agent
// armed a newer lease meanwhile. (The removal itself: vip.e2e.test.ts, the frozen agent.)
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import type { Lease } from "../../src/fence/lease-file.ts";
import { parseVipSpec, releaseVip, VIP_FILE, writeVipSpec } from "../../src/fence/vip-release.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-vip-release-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const lines: string[] = [];
const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(`error: ${m}`) };
const lease = (deadline: number, term = 4): Lease => ({ deadline, term, dataDir: "/nonexistent", writtenAt: 0, agentPid: process.pid });

test("the record is validated at read like config [vip]", () => {
  expect(parseVipSpec({ address: "10.0.0.50/24", interface: "eth0" })).toEqual({ address: "10.0.0.50/24", interface: "eth0" });
  for (const bad of [{ address: "10.0.0.50", interface: "eth0" }, { address: "10.0.0.256/24", interface: "eth0" }, { address: "10.0.0.5/33", interface: "eth0" },
    { address: "10.0.0.50/24", interface: "eth0; reboot" }, { address: "10.0.0.50/24", interface: "a-very-long-name0" }, { address: "10.0.0.50/24" }, null, []]) {
    expect(() => parseVipSpec(bad)).toThrow();
  }
});

test("written 0600 by the agent, removed when [vip] is gone; nothing recorded: the watchdog removes nothing", async () => {
  expect(await releaseVip(dir, lease(hostMonotonicMs() - 10), log)).toBe("none");
  writeVipSpec(dir, { address: "10.9.9.9/24", interface: "pgh-none0" });
  expect(JSON.parse(readFileSync(join(dir, VIP_FILE), "utf8"))).toEqual({ address: "10.9.9.9/24", interface: "pgh-none0" });
  expect(statSync(join(dir, VIP_FILE)).mode & 0o777).toBe(0o600);
  writeVipSpec(dir, null);
  expect(existsSync(join(dir, VIP_FILE))).toBe(false);
  writeVipSpec(dir, null); // already gone: fine
});

test("an unreadable record is said, not acted on", async () => {
  writeFileSync(join(dir, VIP_FILE), JSON.stringify({ address: "0.0.0.0/0", interface: "eth0" }));
  lines.length = 0;
  expect(await releaseVip(dir, lease(hostMonotonicMs() - 10), log)).toBe("failed");
  expect(lines.join("\n")).toMatch(/error: .*vip is unreadable \(address: /);
});

test("the agent armed a newer lease since the deadline: the address stays", async () => {
  writeVipSpec(dir, { address: "10.9.9.9/24", interface: "pgh-none0" });
  const now = hostMonotonicMs();
  writeFileSync(join(dir, "lease"), JSON.stringify({ ...lease(now + 5000, 5) }));
  expect(await releaseVip(dir, lease(now - 10, 4), log)).toBe("kept");
});

test("a lease file that holds no lease (damaged) counts as not renewed: the address is removed, not kept", async () => {
  writeVipSpec(dir, { address: "10.9.9.9/24", interface: "pgh-none0" });
  writeFileSync(join(dir, "lease"), "");
  lines.length = 0;
  expect(await releaseVip(dir, lease(hostMonotonicMs() - 10, 4), log)).not.toBe("kept");
  expect(lines.join("\n")).toContain(`${join(dir, "lease")} holds no lease`);
  expect(lines.join("\n")).toContain("taken as not renewed");
});
