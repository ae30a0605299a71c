// The fencing watchdog of an agent run as root through docs/install.md's drop-in: root, limited to
// the drop-in's capability bounding set, fencing a server that runs as the PostgreSQL user. Before
// it signals the pid in postmaster.pid the watchdog reads that process's /proc links (its working
// directory and executable: orphans.ts isServerOf), and root may read another user's only with
// CAP_SYS_PTRACE: without it the watchdog took the server for some other process, did not signal
// it, and counted the lease as fenced (found by review; reproduced here before the drop-in got it).
// The "postmaster" is `sleep` copied to a file named postgres, as in watchdog.test.ts.
import { afterAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const kids: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "pgherd-wd-root-"));
afterAll(() => {
  for (const k of kids) k.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** The drop-in's CapabilityBoundingSet, as docs/install.md gives it (the one naming CAP_SETUID). */
function dropInCaps(): string[] {
  const doc = readFileSync(join(import.meta.dir, "../../docs/install.md"), "utf8");
  const line = /`CapabilityBoundingSet=((?:CAP_[A-Z_]+ ?)+)`/g;
  for (const m of doc.matchAll(line)) if (m[1]!.includes("CAP_SETUID")) return m[1]!.trim().split(/\s+/);
  throw new Error("docs/install.md: no root drop-in CapabilityBoundingSet naming CAP_SETUID");
}

/** A server run as postgres and a root watchdog under `caps`, its lease ending 500 ms on: what the watchdog said, and the server's end. */
async function fenceUnder(caps: string[], name: string): Promise<{ said: string[]; start: string; signal: NodeJS.Signals | null }> {
  requireReal("the root drop-in's watchdog test", !isRoot() ? "needs root" : !["/usr/bin/setpriv", "/bin/setpriv"].some(existsSync) ? "setpriv not installed" : null);
  const pg = await lookupOsUser(PG_OS_USER);
  const base = join(dir, name);
  const [state, data, bin] = ["state", "data", "bin"].map((d) => join(base, d)) as [string, string, string];
  for (const d of [state, data, bin]) mkdirSync(d, { recursive: true });
  for (const d of [dir, base]) chmodSync(d, 0o755);
  chownSync(data, pg.uid, pg.gid);
  chmodSync(data, 0o700);
  copyFileSync(Bun.which("sleep")!, join(bin, "postgres"));
  chmodSync(join(bin, "postgres"), 0o755);
  const server = spawn(join(bin, "postgres"), ["600"], { cwd: data, uid: pg.uid, gid: pg.gid, stdio: "ignore" });
  kids.push(server);
  writeFileSync(join(data, "postmaster.pid"), `${server.pid}\n`);
  let out = "";
  const bounding = ["-all", ...caps.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
  const wd = spawn("setpriv", ["--bounding-set", bounding, "--no-new-privs", "--", process.execPath, "src/main.ts", "watchdog", "--state-dir", state], { stdio: ["ignore", "pipe", "pipe"] });
  kids.push(wd);
  wd.stderr!.on("data", (d) => (out += d));
  await waitFor(() => out.includes("watching"), { timeoutMs: 15_000, what: "the watchdog to start" });
  const start = out;
  const deadline = hostMonotonicMs() + 500;
  writeFileSync(join(state, "lease"), JSON.stringify({ deadline, term: 3, dataDir: data, writtenAt: hostMonotonicMs(), agentPid: process.pid }));
  await waitFor(() => server.exitCode !== null || server.signalCode !== null || /not signalled/.test(out), { timeoutMs: 5000, intervalMs: 10, what: "the fence" });
  const said = out.split("\n").filter((l) => /fencing PostgreSQL|fenced|not signalled/.test(l));
  console.log(`root watchdog under ${caps.join(" ")}: ${said.join(" | ")}`);
  wd.kill("SIGKILL");
  return { said, start, signal: server.signalCode };
}

test("a root watchdog limited to the drop-in's capabilities fences a server that runs as the PostgreSQL user", async () => {
  const r = await fenceUnder(dropInCaps(), "dropin");
  expect(r.start).not.toContain("without CAP_SYS_PTRACE");
  expect(r.said.filter((l) => /not signalled/.test(l))).toEqual([]);
  expect(r.signal).toBe("SIGQUIT");
}, 30_000);

test("without CAP_SYS_PTRACE it says at its start that it cannot fence (and it does not)", async () => {
  const r = await fenceUnder(dropInCaps().filter((c) => c !== "CAP_SYS_PTRACE"), "noptrace");
  expect(r.start).toContain("running as root without CAP_SYS_PTRACE");
  expect(r.said.some((l) => /not signalled/.test(l))).toBe(true);
  expect(r.signal).toBeNull();
}, 30_000);
