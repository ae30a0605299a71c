// deploy/pgherd.service: the keys the install guide relies on, `systemd-analyze verify` with no
// warning at all, and the unit's user, empty capability bounding set and NoNewPrivileges applied
// (with setpriv) to a real cluster: agents, initdb, pg_basebackup, pg_ctl and PostgreSQL must all
// still work as the postgres OS user without any privilege.
import { requireReal } from "../helpers/require.ts";
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, ensureBuilt, ROOT } from "../../scripts/build.ts";
import { parseConfig } from "../../src/config/load.ts";
import { handoverBoundMs } from "../../src/core/handover.ts";
import { findBinDir } from "../../src/postgres/binaries.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { agentBinary } from "../helpers/agents.ts";
import { Proc, run } from "../helpers/proc.ts";

const UNIT = join(ROOT, "deploy", "pgherd.service");

type Unit = Map<string, Map<string, string[]>>;

/** systemd's INI dialect, as far as this unit uses it: sections, Key=Value, repeated keys, comments. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[([A-Za-z]+)\]$/.exec(line);
    if (head) {
      section = new Map();
      unit.set(head[1]!, section);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`pgherd.service line ${i + 1}: not a Key=Value inside a section: ${raw}`);
    section.set(kv[1]!, [...(section.get(kv[1]!) ?? []), kv[2]!]);
  }
  return unit;
}

const unit = parseUnit(readFileSync(UNIT, "utf8"));
const get = (section: string, key: string) => unit.get(section)?.get(key)?.at(-1);

test("the unit has the keys docs/install.md relies on", () => {
  expect([...unit.keys()]).toEqual(["Unit", "Service", "Install"]);
  expect(get("Unit", "After")?.split(/\s+/)).toContain("network-online.target");
  expect(get("Unit", "Wants")?.split(/\s+/)).toContain("network-online.target");
  expect(get("Service", "ExecStart")).toBe("/usr/local/bin/pgherd agent --config /etc/pgherd/pgherd.toml");
  expect(get("Service", "Restart")).toBe("on-failure");
  expect(get("Service", "RestartPreventExitStatus")).toBe("2"); // config errors exit 2: no restart loop
  expect(get("Service", "KillMode")).toBe("process"); // restarting the agent leaves PostgreSQL running
  expect(get("Service", "TimeoutStopSec")).toMatch(/^\d+s?$/);
  // Least privilege (issue 10): the PostgreSQL OS user, no capability at all, no way to gain one.
  expect(get("Service", "User")).toBe("postgres");
  expect(get("Service", "Group")).toBe("postgres");
  expect(get("Service", "CapabilityBoundingSet")).toBe("");
  expect(get("Service", "AmbientCapabilities") ?? "").toBe("");
  expect(get("Service", "NoNewPrivileges")).toBe("yes");
  // systemd creates state_dir's default for that user.
  const defaults = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(32)}"\n`, "pgherd.toml");
  // A leader's shutdown handover (src/core/handover.ts) fits with the default timers, with room for the checkpoint.
  expect(Number.parseInt(get("Service", "TimeoutStopSec")!, 10) * 1000).toBeGreaterThanOrEqual(2 * handoverBoundMs({ ...defaults.election, loop_ms: defaults.postgres.loop_ms }));
  expect(`/var/lib/${get("Service", "StateDirectory")}`).toBe(defaults.state_dir);
  expect(get("Service", "StateDirectoryMode")).toBe("0700");
  expect(get("Install", "WantedBy")).toBe("multi-user.target");
  // Settings that would break PostgreSQL, which inherits the sandbox.
  expect(get("Service", "PrivateTmp") ?? "no").toBe("no");
  expect(get("Service", "MemoryDenyWriteExecute") ?? "no").toBe("no");
});

test("the virtual IP's drop-in (docs/vip.md) with the unit allows what ip and arping need: the two capabilities and AF_PACKET (review: arping's packet socket was refused by the unit's RestrictAddressFamilies)", () => {
  const doc = readFileSync(join(ROOT, "docs", "vip.md"), "utf8");
  const block = /```\n(\[Service\][^`]*)```/.exec(doc)?.[1];
  expect(block).toBeDefined();
  const dropIn = parseUnit(block!).get("Service")!;
  const families = [...(unit.get("Service")?.get("RestrictAddressFamilies") ?? []), ...(dropIn.get("RestrictAddressFamilies") ?? [])].flatMap((v) => v.split(/\s+/));
  expect(families).toContain("AF_PACKET"); // arping -U: socket(AF_PACKET, SOCK_DGRAM)
  expect(families).toContain("AF_NETLINK"); // ip addr
  expect(dropIn.get("AmbientCapabilities")?.at(-1)?.split(/\s+/).sort()).toEqual(["CAP_NET_ADMIN", "CAP_NET_RAW"]);
  expect(dropIn.get("CapabilityBoundingSet")?.at(-1)?.split(/\s+/).sort()).toEqual(["CAP_NET_ADMIN", "CAP_NET_RAW"]);
});

const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find(existsSync);

test("systemd-analyze verify: no errors, no warnings", async () => {
  requireReal("systemd-analyze verify", analyze ? null : "systemd-analyze is not installed (Debian package systemd)");
  // verify also checks that ExecStart exists: point it at a real executable for the check.
  const dir = mkdtempSync("/tmp/pgherd-unit-");
  try {
    const exe = existsSync(BINARY) ? BINARY : process.execPath;
    const copy = join(dir, "pgherd.service");
    writeFileSync(copy, readFileSync(UNIT, "utf8").replace(/^ExecStart=\/usr\/local\/bin\/pgherd /m, `ExecStart=${exe} `));
    const r = await run([analyze!, "verify", copy], { timeoutMs: 30_000 });
    // Unknown keys and unparsable values are only warnings. Warnings about other installed units
    // (verify loads the system's units too, e.g. a package's obsolete StandardOutput=syslog) are not ours.
    const others = /^(\/\S+):\d+: /;
    expect(r.stderr.split("\n").filter((l) => l.trim() && (others.exec(l)?.[1] ?? copy) === copy)).toEqual([]);
    expect(r.code).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const sandboxSkip = !isRoot()
  ? "needs root"
  : !["/usr/bin/setpriv", "/bin/setpriv"].some(existsSync)
    ? "setpriv not installed"
    : !(await findBinDir().then(() => true, () => false))
      ? "no PostgreSQL binaries"
      : !(await lookupOsUser("postgres").then(() => true, () => false)) ? "no OS user postgres" : null;
test("a cluster works as the unit's user, under its capability bounding set and NoNewPrivileges", async () => {
  requireReal("the unit's sandbox test", sandboxSkip);
  ensureBuilt();
  const user = get("Service", "User")!;
  const u = await lookupOsUser(user);
  const caps = (get("Service", "CapabilityBoundingSet") ?? "").split(/\s+/).filter(Boolean).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
  expect(get("Service", "NoNewPrivileges")).toBe("yes");
  // setpriv switches to the unit's user and limits the bounding set of everything below it, as
  // systemd would for the service; `pgherd demo` then runs agents and PostgreSQL as that user.
  const demo = new Proc([
    "setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--no-new-privs", "--bounding-set", ["-all", ...caps].join(","),
    "--", agentBinary(), "demo",
  ], { cwd: "/", env: { HOME: u.home, USER: user, LOGNAME: user } });
  try {
    await demo.waitForLine(/^ready: 1 primary and 2 streaming standbys/, 150_000);
    const header = demo.lines.find((l) => /^pgherd demo: /.test(l)) ?? "";
    const scratch = /under (\/tmp\/pgherd-demo-\S+)$/.exec(header)?.[1];
    expect(scratch).toBeDefined();
    // Every agent, watchdog and server of the demo: the unit's user, no capability.
    const procs = processesUnder(scratch!);
    expect(procs.length).toBeGreaterThanOrEqual(6);
    for (const p of procs) expect({ pid: p.pid, uid: p.uid, capBnd: p.capBnd }).toEqual({ pid: p.pid, uid: String(u.uid), capBnd: "0000000000000000" });
    demo.kill("SIGINT");
    expect(await demo.waitExit(60_000)).toBe(0);
    expect(demo.lines.filter((l) => /warning|EPERM|EACCES|not permitted/i.test(l))).toEqual([]);
  } finally {
    if (!demo.exited) {
      demo.kill("SIGINT");
      await demo.waitExit(60_000).catch(() => demo.stop(1_000));
    }
  }
}, 240_000);

/** Processes with an argument inside `dir`, with their effective uid and capability bounding set. */
function processesUnder(dir: string): { pid: number; uid: string; capBnd: string }[] {
  const out: { pid: number; uid: string; capBnd: string }[] = [];
  for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").some((a) => a.startsWith(`${dir}/`))) continue;
      const status = readFileSync(`/proc/${name}/status`, "utf8");
      const field = (k: string) => new RegExp(`^${k}:\\s+(.*)$`, "m").exec(status)?.[1] ?? "";
      out.push({ pid: Number(name), uid: field("Uid").split(/\s+/)[1] ?? "", capBnd: field("CapBnd") });
    } catch { /* exited meanwhile */ }
  }
  return out;
}
