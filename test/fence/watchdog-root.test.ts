// The fencing watchdog of an agent run as root through docs/install.md's drop-in: root, limited to
// the drop-in's capability bounding set, fencing a server that runs as the PostgreSQL user. Before
// it signals the pid in postmaster.pid the watchdog reads that process's /proc links (its working
// directory and executable: orphans.ts isServerOf), and root may read another user's only with
// CAP_SYS_PTRACE: without it the watchdog took the server for some other process, did not signal
// it, and counted the lease as fenced (found by review; reproduced here before the drop-in got it).
// Without it now the watchdog says so at its start and does not count the lease as fenced, and
// the agent refuses to start. The "postmaster" is `sleep` copied to a file named postgres, as in
// watchdog.test.ts.
import { afterAll, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMonotonicMs } from "../../src/fence/clock.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { freePort, PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal, rootWithPtraceMissing } from "../helpers/require.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const kids: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "pgherd-wd-root-"));
afterAll(() => {
  for (const k of kids) k.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** `setpriv --bounding-set` for `caps` (CAP_X names). */
const boundingSet = (caps: string[]) => ["-all", ...caps.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`)].join(",");

/** The drop-in's CapabilityBoundingSet, as docs/install.md gives it (the one naming CAP_SETUID). */
function dropInCaps(): string[] {
  const doc = readFileSync(join(import.meta.dir, "../../docs/install.md"), "utf8");
  const line = /`CapabilityBoundingSet=((?:CAP_[A-Z_]+ ?)+)`/g;
  for (const m of doc.matchAll(line)) if (m[1]!.includes("CAP_SETUID")) return m[1]!.trim().split(/\s+/);
  throw new Error("docs/install.md: no root drop-in CapabilityBoundingSet naming CAP_SETUID");
}

/**
 * A server (run as postgres, or as nobody with `linkedToNobody`) and a root watchdog under `caps`,
 * its lease ending 500 ms on and naming `osUid` (none: an older agent's lease): what the watchdog
 * said, and the server's end.
 */
async function fenceUnder(caps: string[], name: string, o: { named?: number; asPostgres?: boolean; linkedToNobody?: boolean; osUid?: number } = {}): Promise<{ said: string[]; start: string; signal: NodeJS.Signals | null }> {
  requireReal("the root drop-in's watchdog test", rootWithPtraceMissing() ?? (!["/usr/bin/setpriv", "/bin/setpriv"].some(existsSync) ? "setpriv not installed" : null));
  const pg = await lookupOsUser(PG_OS_USER);
  const base = join(dir, name);
  const [state, real, bin] = ["state", "data", "bin"].map((d) => join(base, d)) as [string, string, string];
  for (const d of [state, real, bin]) mkdirSync(d, { recursive: true });
  for (const d of [dir, base]) chmodSync(d, 0o755);
  // linkedToNobody: the server is nobody's, in nobody's directory, and the data directory the lease
  // names is a link to it in a directory of the PostgreSQL user (who could have put it there).
  const owner = o.linkedToNobody ? { uid: 65534, gid: 65534 } : pg;
  chownSync(real, owner.uid, owner.gid);
  chmodSync(real, 0o700);
  let data = real;
  if (o.linkedToNobody) {
    const parent = join(base, "pg-parent");
    mkdirSync(parent);
    chownSync(parent, pg.uid, pg.gid);
    data = join(parent, "main");
    symlinkSync(real, data);
  }
  copyFileSync(Bun.which("sleep")!, join(bin, "postgres"));
  chmodSync(join(bin, "postgres"), 0o755);
  const server = spawn(join(bin, "postgres"), ["600"], { cwd: real, uid: owner.uid, gid: owner.gid, stdio: "ignore" });
  kids.push(server);
  writeFileSync(join(data, "postmaster.pid"), `${o.named ?? server.pid}\n`);
  if (o.asPostgres) chownSync(state, pg.uid, pg.gid);
  let out = "";
  const bounding = boundingSet(caps);
  const user = o.asPostgres ? [`--reuid=${pg.uid}`, `--regid=${pg.gid}`, "--init-groups"] : [];
  const wd = spawn("setpriv", [...user, "--bounding-set", bounding, "--no-new-privs", "--", process.execPath, MAIN, "watchdog", "--state-dir", state], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...(o.asPostgres ? { HOME: pg.home } : {}) } });
  kids.push(wd);
  wd.stderr!.on("data", (d) => (out += d));
  await waitFor(() => out.includes("watching"), { timeoutMs: 15_000, what: "the watchdog to start" }).catch((e: Error) => {
    throw new Error(`${e.message}; it wrote: ${out.slice(-600)}`);
  });
  const start = out;
  const deadline = hostMonotonicMs() + 500;
  writeFileSync(join(state, "lease"), JSON.stringify({ deadline, term: 3, dataDir: data, ...(o.osUid !== undefined ? { osUid: o.osUid } : {}), writtenAt: hostMonotonicMs(), agentPid: process.pid }));
  await waitFor(() => server.exitCode !== null || server.signalCode !== null || /not signalled/.test(out), { timeoutMs: 5000, intervalMs: 10, what: "the fence" }).catch((e: Error) => {
    throw new Error(`${e.message}; it wrote: ${out.slice(-600)}`);
  });
  const said = out.split("\n").filter((l) => /fencing PostgreSQL|fenced|not signalled/.test(l));
  console.log(`${o.asPostgres ? "postgres" : "root"} watchdog under ${caps.join(" ") || "no capability"}: ${said.join(" | ")}`);
  wd.kill("SIGKILL");
  return { said, start, signal: server.signalCode };
}

test("a root watchdog limited to the drop-in's capabilities fences a server that runs as the PostgreSQL user", async () => {
  const r = await fenceUnder(dropInCaps(), "dropin", { osUid: (await lookupOsUser(PG_OS_USER)).uid });
  expect(r.start).not.toContain("without CAP_SYS_PTRACE");
  expect(r.said.filter((l) => /not signalled/.test(l))).toEqual([]);
  expect(r.signal).toBe("SIGQUIT");
}, 30_000);

test("without CAP_SYS_PTRACE it says at its start that it cannot fence (and it does not)", async () => {
  const r = await fenceUnder(dropInCaps().filter((c) => c !== "CAP_SYS_PTRACE"), "noptrace");
  expect(r.start).toContain("running as root without CAP_SYS_PTRACE");
  expect(r.said.filter((l) => /not signalled/.test(l)).map((l) => l.replace(/^.*?\] /, ""))).toEqual([
    expect.stringMatching(/^lease of term 3 expired, but pid \d+ \(from .*postmaster\.pid\) cannot be checked \(EACCES on \/proc\/\d+\/cwd\): not signalled, not fenced$/),
  ]);
  expect(r.signal).toBeNull();
}, 30_000);

test("the default unit's watchdog (the PostgreSQL user, no capability), postmaster.pid naming root's process: not signalled, and not 'cannot be checked'", async () => {
  // Another user's links are unreadable to it: only the OS user's processes count as ones that
  // cannot be checked, else the leftover scan decides (here: the server still runs).
  const r = await fenceUnder([], "other-user", { named: process.pid, asPostgres: true });
  expect(r.said.map((l) => l.replace(/^.*?\] /, ""))).toEqual([expect.stringMatching(new RegExp(`names pid ${process.pid}, which is not a PostgreSQL server of that data directory: not signalled \\(PostgreSQL processes \\d+ still run there: not fenced\\)$`))]);
  expect(r.signal).toBeNull();
}, 30_000);

test("a lease naming the PostgreSQL user: another user's server, linked in place of the data directory, is not signalled", async () => {
  // The PostgreSQL user owns the data directory's parent on Debian (/var/lib/postgresql) and can
  // put a link to another user's cluster there: the lease's OS user, not the owner of whatever the
  // path leads to, says whose server the root watchdog may fence.
  const pg = await lookupOsUser(PG_OS_USER);
  const r = await fenceUnder(dropInCaps(), "linked", { linkedToNobody: true, osUid: pg.uid });
  expect(r.said.map((l) => l.replace(/^.*?\] /, ""))).toEqual([expect.stringMatching(/names pid \d+, which is not a PostgreSQL server of that data directory: not signalled$/)]);
  expect(r.signal).toBeNull();
  // An older agent's lease names no OS user: the target's owner is taken, as that agent's watchdog did.
  const legacy = await fenceUnder(dropInCaps(), "linked-legacy", { linkedToNobody: true });
  expect(legacy.signal).toBe("SIGQUIT");
}, 60_000);

test("a root agent without CAP_SYS_PTRACE refuses to start, naming the capability", async () => {
  requireReal("the root drop-in's agent test", rootWithPtraceMissing() ?? (!["/usr/bin/setpriv", "/bin/setpriv"].some(existsSync) ? "setpriv not installed" : null));
  const base = join(dir, "agent");
  mkdirSync(join(base, "state"), { recursive: true, mode: 0o700 });
  const config = join(base, "pgherd.toml");
  // Loopback only, should the refusal ever be missing and the agent run on.
  const [beacon, mesh, api] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(config, [
    `cluster = "main"`, `secret = "${"0123456789abcdef".repeat(3)}"`, `node_name = "db1"`, `state_dir = "${join(base, "state")}"`,
    `[discovery]`, `port = ${beacon}`, `broadcast = ["127.255.255.255"]`, `[mesh]`, `listen = "127.0.0.1:${mesh}"`, `[api]`, `listen = "127.0.0.1:${api}"`,
    `[postgres]`, `data_dir = "${join(base, "pgdata")}"`, `bin_dir = "/nonexistent"`, "",
  ].join("\n"), { mode: 0o600 });
  const caps = dropInCaps().filter((c) => c !== "CAP_SYS_PTRACE");
  const r = spawnSync("setpriv", ["--bounding-set", boundingSet(caps), "--no-new-privs", "--", process.execPath, MAIN, "agent", "--config", config], { encoding: "utf8", timeout: 10_000, killSignal: "SIGKILL" });
  expect(r.stderr).toContain("running as root without CAP_SYS_PTRACE");
  expect(r.status).toBe(2);
}, 30_000);
