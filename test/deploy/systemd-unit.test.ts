// deploy/pgherd.service: the keys the install guide relies on, `systemd-analyze verify` with no
// warning at all, and the unit's capability bounding set + NoNewPrivileges applied (with setpriv)
// to a real cluster: agents, initdb, pg_basebackup, pg_ctl and PostgreSQL must all still work.
import { requireReal } from "../helpers/require.ts";
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, ensureBuilt, ROOT } from "../../scripts/build.ts";
import { findBinDir } from "../../src/postgres/binaries.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
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
  expect(get("Service", "User") ?? "root").toBe("root");
  expect(get("Install", "WantedBy")).toBe("multi-user.target");
  // Settings that would break PostgreSQL, which inherits the sandbox.
  expect(get("Service", "PrivateTmp") ?? "no").toBe("no");
  expect(get("Service", "MemoryDenyWriteExecute") ?? "no").toBe("no");
  for (const cap of ["CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"]) {
    expect(get("Service", "CapabilityBoundingSet")?.split(/\s+/)).toContain(cap);
  }
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
    expect(r.stderr.trim()).toBe(""); // unknown keys and unparsable values are only warnings
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
test("a cluster works under the unit's capability bounding set and NoNewPrivileges", async () => {
  requireReal("the unit's capability test", sandboxSkip);
  ensureBuilt();
  const caps = (get("Service", "CapabilityBoundingSet") ?? "").split(/\s+/).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
  expect(get("Service", "NoNewPrivileges")).toBe("yes");
  // setpriv limits the bounding set of everything below it, as systemd would for the service.
  const demo = new Proc(["setpriv", "--no-new-privs", "--bounding-set", ["-all", ...caps].join(","), "--", BINARY, "demo"], { cwd: ROOT });
  try {
    await demo.waitForLine(/^ready: 1 primary and 2 streaming standbys/, 150_000);
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
