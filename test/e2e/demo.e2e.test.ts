// `npm run demo` end to end: the script runs as a child process from the repo, prints "ready",
// its printed API shows 1 primary + 2 streaming standbys, a row written through the printed psql
// command of the primary is read through a standby's, the printed actions work with the API token
// it generated (from $PGHERD_TOKEN and from --token-file; refused without), its agents run as the
// postgres OS user when it runs as root, and SIGINT stops everything it started (agents, their
// watchdogs, three postmasters with all their children) and removes its scratch dir.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import { ROOT } from "../../scripts/build.ts";
import { findBinDir } from "../../src/postgres/binaries.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { artifactsDir } from "../helpers/agents.ts";
import { Proc, run, waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const bins = await findBinDir().catch(() => null);
const missing = !bins
  ? "no PostgreSQL binaries found (pg_config / /usr/lib/postgresql/*/bin)"
  : isRoot() && !(await lookupOsUser("postgres").then(() => true, () => false))
    ? "running as root needs the OS user postgres"
    : null;
requireReal("demo e2e", missing);

const READY_MS = 150_000; // the demo's own timeout is 120 s; a stale binary is rebuilt first
const STOP_MS = 60_000;

let demo: Proc | undefined;
let scratch: string | undefined;

afterAll(async () => {
  // Only after a failure is anything left: stop the demo the way a user would, then by force.
  if (demo && !demo.exited) {
    demo.kill("SIGINT");
    await demo.waitExit(STOP_MS).catch(() => demo?.stop(1_000));
  }
  if (scratch && existsSync(scratch)) {
    for (const p of processesUnder(scratch)) try { process.kill(p.pid, p.argv[0]?.endsWith("/postgres") ? "SIGQUIT" : "SIGKILL"); } catch { /* gone */ }
    rmSync(scratch, { recursive: true, force: true });
  }
}, STOP_MS + 10_000);

test("npm run demo: ready, usable, and gone after Ctrl-C", async () => {
  const out = artifactsDir("demo");
  // process.execPath is the Bun of node_modules that `npx bun` would run; signalling it directly
  // (not an npx wrapper) is what a terminal's Ctrl-C does to the foreground process.
  demo = new Proc([process.execPath, "scripts/demo.ts"], { cwd: ROOT, logFile: join(out, "demo.out") });
  const header = await demo.waitForLine(/^pgherd demo: .* under \/tmp\/pgherd-demo-/, 60_000);
  scratch = /under (\/tmp\/pgherd-demo-\S+)$/.exec(header)?.[1];
  expect(scratch).toBeDefined();
  const ready = await demo.waitForLine(/^ready: /, READY_MS);
  await demo.waitForLine(/^Stop: press Ctrl-C/, 10_000);
  console.log(`demo ${ready}`);

  // What it printed: an API URL, a watch command, one psql command per node.
  const text = demo.lines.join("\n");
  const api = /cluster ls --watch --api (http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
  expect(api).toBeDefined();
  const psql = [...text.matchAll(/^\s+(primary|standby)\s+(node\d)\s+(\S*psql -h \S+ -p \d+ -U postgres)$/gm)].map((m) => ({
    role: m[1]!, node: m[2]!, argv: m[3]!.split(" "),
  }));
  expect(psql.map((p) => p.role).sort()).toEqual(["primary", "standby", "standby"]);

  // The printed API: one primary, two streaming standbys (the demo's claim, checked independently).
  const view = ClusterAnswer.parse(await (await fetch(`${api}/cluster`, { signal: AbortSignal.timeout(5_000) })).json()).view;
  const primary = view.members.find((m) => m.id === view.primary);
  expect(primary?.role).toBe("primary");
  expect(view.members.filter((m) => m.role === "standby" && m.state === "streaming")).toHaveLength(2);
  expect(psql.find((p) => p.role === "primary")?.node).toBe(primary!.name);
  const ls = await run([join(ROOT, "dist", "pgherd"), "cluster", "ls", "--api", api!], { timeoutMs: 15_000 });
  expect(ls.code).toBe(0);
  expect(ls.stdout).toContain(`primary ${primary!.name}`);

  // Replication is TLS: both walsenders of the primary are SSL connections.
  const senders = await run([...psql.find((p) => p.role === "primary")!.argv, "-X", "-At", "-c", "select count(*) filter (where s.ssl) || '/' || count(*) from pg_stat_replication r left join pg_stat_ssl s using (pid)"], { timeoutMs: 15_000 });
  expect(senders.stdout.trim()).toBe("2/2");

  // Write through the primary's printed command, read it through each standby's.
  const token = `demo-${Math.random().toString(36).slice(2)}`;
  const sql = (argv: string[], query: string) => run([...argv, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query], { timeoutMs: 15_000 });
  const w = await sql(psql.find((p) => p.role === "primary")!.argv, `CREATE TABLE demo_e2e(v text); INSERT INTO demo_e2e VALUES ('${token}')`);
  expect(w.stderr).toBe("");
  expect(w.code).toBe(0);
  for (const s of psql.filter((p) => p.role === "standby")) {
    await waitFor(async () => (await sql(s.argv, "SELECT v FROM demo_e2e")).stdout.trim() === token, { timeoutMs: 20_000, what: `the row on ${s.node}` });
    const refused = await sql(s.argv, "INSERT INTO demo_e2e VALUES ('x')");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("read-only transaction");
  }

  await tryActions(text, api!);

  // Everything the demo runs: agents, watchdogs, postmasters (by the scratch dir in their argv),
  // and every descendant of those (backends, walsenders, walreceivers: their titles name no path).
  const roots = processesUnder(scratch!);
  expect(roots.filter((p) => p.argv.includes("agent"))).toHaveLength(3);
  expect(roots.filter((p) => p.argv[0]?.endsWith("/postgres"))).toHaveLength(3);
  if (isRoot()) {
    // As deploy/pgherd.service: agents and their watchdogs run as postgres, never as root.
    const pg = await lookupOsUser("postgres");
    const pgherds = roots.filter((p) => p.argv.includes("agent") || p.argv.includes("watchdog"));
    expect(pgherds.length).toBeGreaterThanOrEqual(3);
    expect(pgherds.map((p) => ({ argv: p.argv.join(" "), uid: uidOf(p.pid) }))).toEqual(pgherds.map((p) => ({ argv: p.argv.join(" "), uid: pg.uid })));
  }
  const tree = withDescendants(roots.map((p) => p.pid));
  expect(tree.length).toBeGreaterThan(roots.length + 10); // 3 servers each have ≥ 5 children

  const t0 = performance.now();
  demo.kill("SIGINT");
  const code = await demo.waitExit(STOP_MS);
  console.log(`demo stopped ${((performance.now() - t0) / 1000).toFixed(1)} s after SIGINT`);
  expect(code).toBe(0);
  expect(demo.lines.some((l) => /^stopped in [\d.]+ s$/.test(l))).toBe(true);
  expect(demo.lines.filter((l) => /warning/i.test(l))).toEqual([]);
  expect(tree.filter(isAlive)).toEqual([]);
  expect(processesUnder(scratch!)).toEqual([]);
  expect(existsSync(scratch!)).toBe(false);
}, READY_MS + STOP_MS + 60_000);

test("bad options exit 2 naming the problem, before starting anything", async () => {
  const script = await run([process.execPath, "scripts/demo.ts", "--timeout", "5"], { cwd: ROOT, timeoutMs: 30_000 });
  expect(script.code).toBe(2);
  expect(script.stderr).toContain('--timeout "5": must be at least 10');
  const typo = await run([process.execPath, "scripts/demo.ts", "--kep"], { cwd: ROOT, timeoutMs: 30_000 });
  expect(typo.code).toBe(2);
  expect(typo.stderr).toContain("--kep");
  const cli = await run([process.execPath, "src/main.ts", "demo", "--timeout", "soon"], { cwd: ROOT, timeoutMs: 30_000 });
  expect(cli.code).toBe(2);
  expect(cli.stderr).toContain('--timeout "soon": must be a whole number of seconds');
  expect(`${script.stdout}${typo.stdout}${cli.stdout}`).not.toContain("pgherd demo:");
});

/**
 * The token file and the action commands the demo printed: a token of at least 32 characters in
 * a 0600 file of ours, the same token in every node's 0600 config (owned by the agents' user),
 * actions refused without it, run with it from $PGHERD_TOKEN and from --token-file. The switchover
 * goes last: it moves the primary, and the demo must still stop cleanly afterwards.
 */
async function tryActions(text: string, api: string): Promise<void> {
  const tokenFile = /export PGHERD_TOKEN="\$\(cat (\S+)\)"/.exec(text)?.[1];
  expect(tokenFile).toBeDefined();
  const st = statSync(tokenFile!);
  expect({ mode: (st.mode & 0o777).toString(8), uid: st.uid }).toEqual({ mode: "600", uid: process.getuid!() });
  const token = readFileSync(tokenFile!, "utf8").trim();
  expect(token.length).toBeGreaterThanOrEqual(32);
  const agentUid = isRoot() ? (await lookupOsUser("postgres")).uid : process.getuid!();
  for (const node of ["node1", "node2", "node3"]) {
    const cfg = join(scratch!, node, "pgherd.toml");
    const cst = statSync(cfg);
    expect({ node, mode: (cst.mode & 0o777).toString(8), uid: cst.uid }).toEqual({ node, mode: "600", uid: agentUid });
    expect(z.object({ api: z.object({ token: z.string() }) }).parse(parseToml(readFileSync(cfg, "utf8"))).api.token).toBe(token);
  }
  for (const verb of ["switchover", "failover", "rejoin", "pause", "resume", "config set"]) {
    expect(text).toMatch(new RegExp(`^\\s+\\S*pgherd ${verb} .*--api http://127\\.0\\.0\\.1:\\d+`, "m"));
  }
  // A printed command: argv without the trailing comment.
  const printed = (verb: string) => /^\s+(\S*pgherd .*?)\s*(#.*)?$/m.exec(text.split("\n").find((l) => new RegExp(`^\\s+\\S*pgherd ${verb} `).test(l)) ?? "")?.[1]!.split(/\s+/) ?? [];
  const cli = (argv: string[], env: Record<string, string>) => run(argv, { cwd: ROOT, timeoutMs: 60_000, env: { PGHERD_TOKEN: "", ...env } });
  const view = async () => ClusterAnswer.parse(await (await fetch(`${api}/cluster`, { signal: AbortSignal.timeout(5_000) })).json()).view;

  const refused = await cli(printed("pause"), {});
  expect(refused.code).not.toBe(0);
  expect((await view()).paused ?? false).toBe(false);
  const paused = await cli(printed("pause"), { PGHERD_TOKEN: token });
  expect({ code: paused.code, err: paused.stderr }).toEqual({ code: 0, err: "" });
  await waitFor(async () => (await view()).paused === true, { timeoutMs: 15_000, what: "the cluster view to show paused" });
  const resumed = await cli([...printed("resume"), "--token-file", tokenFile!], {});
  expect({ code: resumed.code, err: resumed.stderr }).toEqual({ code: 0, err: "" });
  await waitFor(async () => !(await view()).paused, { timeoutMs: 15_000, what: "the cluster view to show resumed" });
  const set = await cli(printed("config set"), { PGHERD_TOKEN: token });
  expect({ code: set.code, err: set.stderr }).toEqual({ code: 0, err: "" });

  const switchover = printed("switchover");
  const target = switchover[switchover.indexOf("--to") + 1];
  const moved = await cli([...switchover, "--token-file", tokenFile!], {});
  expect({ code: moved.code, err: moved.stderr }).toEqual({ code: 0, err: "" });
  await waitFor(async () => {
    const v = await view();
    const p = v.members.find((m) => m.id === v.primary);
    return p !== undefined && p.name === target && p.state === "running" && v.members.filter((m) => m.role === "standby" && m.state === "streaming").length === 2;
  }, { timeoutMs: 60_000, what: `${target} to be the primary with two streaming standbys after the switchover` });
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
}

// ---- independent checks (not the demo's own code) ----

const ClusterAnswer = z.object({
  view: z.object({
    primary: z.string().nullable(),
    paused: z.boolean().optional(),
    members: z.array(z.object({ id: z.string(), name: z.string(), role: z.string(), state: z.string() })),
  }),
});

interface ProcEntry { pid: number; argv: string[] }
interface Identity { pid: number; start: string }

function processesUnder(dir: string): ProcEntry[] {
  const found: ProcEntry[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").filter(Boolean);
      if (argv.some((a) => a.includes(`${dir}/`))) found.push({ pid: Number(name), argv });
    } catch { /* exited */ }
  }
  return found;
}

/** /proc/<pid>/stat after the "(comm)" field: state, ppid, …, starttime (field 22). */
function stat(pid: number): { state: string; ppid: number; start: string } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { state: f[0]!, ppid: Number(f[1]), start: f[19]! };
  } catch {
    return null;
  }
}

/** `pids` and all their descendants, with start times (so a reused pid is not mistaken for ours). */
function withDescendants(pids: number[]): Identity[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s) children.set(s.ppid, [...(children.get(s.ppid) ?? []), Number(name)]);
  }
  const out: Identity[] = [];
  const queue = [...pids];
  while (queue.length) {
    const pid = queue.shift()!;
    const s = stat(pid);
    if (!s || out.some((o) => o.pid === pid)) continue;
    out.push({ pid, start: s.start });
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

function isAlive(p: Identity): boolean {
  const s = stat(p.pid);
  return s !== null && s.start === p.start && s.state !== "Z";
}
