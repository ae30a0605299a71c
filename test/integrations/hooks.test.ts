// [hooks]: real executables (sh scripts) run by the runner; the role transitions and the
// pre_promote verdict as the pure decision reads them.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decideHa, type HaInput } from "../../src/core/ha.ts";
import { Hooks, type HookRecord } from "../../src/hooks/hooks.ts";
import { observeRole, type Observation, type WatchState } from "../../src/hooks/role-watch.ts";
import { runHook, succeeded } from "../../src/hooks/runner.ts";
import { untrustedProgram } from "../../src/hooks/trusted-path.ts";
import { PCP_PATH, PCP_TOOLS, pcpToolPath, programProblems } from "../../src/hooks/programs.ts";
import { memoryLogger } from "../../src/log.ts";
import { parseConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-hooks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

/** Running (a zombie waiting for init to reap it counts as gone). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

describe("runner", () => {
  test.skipIf(process.getuid?.() !== 0)("a program another user could change is not run: owned by another uid, in a directory others may write, or reached through a link into one (review: a root agent ran the PostgreSQL user's file as root)", async () => {
    const log = memoryLogger();
    const run = (p: string) => runHook({ path: p, args: [], env: {}, timeoutMs: 5000, log, name: "on_start" });
    const ok = script("trusted", "exit 0");
    expect(await run(ok)).toMatchObject({ code: 0, spawnError: null });
    const theirs = script("theirs", "exit 0");
    chownSync(theirs, 1000, 1000);
    expect((await run(theirs)).spawnError).toContain("belongs to uid 1000");
    const open = join(dir, "open");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777); // not sticky: anyone may replace what is in it
    const inOpen = join(open, "hook");
    writeFileSync(inOpen, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    expect((await run(inOpen)).spawnError).toContain("is writable by others");
    const link = join(dir, "link");
    symlinkSync(inOpen, link);
    expect((await run(link)).spawnError).toContain(`${open} is writable by others`);
    const groupWritable = script("group", "exit 0");
    chmodSync(groupWritable, 0o775);
    expect((await run(groupWritable)).spawnError).toContain("writable by its group");
    // A link of a link through a directory others may write, even to a trusted file: whoever may
    // write there could point it at /usr/bin/true and skip a pre_promote gate (re-review).
    const mid = join(open, "mid");
    symlinkSync(ok, mid);
    const outer = join(dir, "outer");
    symlinkSync(mid, outer);
    expect((await run(outer)).spawnError).toContain(`${open} is writable by others`);
    // Links that lie only in trusted directories: run, as the real path they lead to.
    const inner = join(dir, "inner");
    symlinkSync(ok, inner);
    const twice = join(dir, "twice");
    symlinkSync(inner, twice);
    expect(await run(twice)).toMatchObject({ code: 0, spawnError: null });
    // Checked at the agent's start and by `pgherd config check` too, naming the key: a refused
    // pre_promote would otherwise show only at the first failover, as a veto on every node.
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[hooks]\non_start = "${ok}"\npre_promote = "${theirs}"\non_stop = "${join(dir, "missing")}"\n`, "pgherd.toml");
    const problems = programProblems(cfg);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toStartWith("hooks.on_stop: ");
    expect(problems[0]).toContain("does not exist");
    expect(problems[1]).toStartWith("hooks.pre_promote: ");
    expect(problems[1]).toContain("belongs to uid 1000");
    // pgpool's PCP tools found through PATH (no pgpool.bin_dir) are checked the same way (review:
    // they were run unchecked): the first one found, refused when another user could change it.
    const pathDir = join(open, "bin");
    mkdirSync(pathDir);
    chmodSync(pathDir, 0o755);
    writeFileSync(join(pathDir, "pcp_node_info"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const found = pcpToolPath({ bin_dir: "" }, "pcp_node_info", `${pathDir}:/usr/sbin`);
    expect(found).toBe(join(pathDir, "pcp_node_info"));
    expect(untrustedProgram(found)).toContain(`${open} is writable by others`);
    expect(pcpToolPath({ bin_dir: "" }, "pcp_node_info", join(dir, "empty"))).toBe("pcp_node_info");
    expect(untrustedProgram("pcp_node_info")).toContain("does not exist");
    expect(pcpToolPath({ bin_dir: "/opt/pgpool/bin" }, "pcp_node_info", pathDir)).toBe("/opt/pgpool/bin/pcp_node_info");
    const pcpCfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[pgpool]\npcp_host = "127.0.0.1"\npcp_password_file = "/nonexistent"\n`, "pgherd.toml");
    const expected = PCP_TOOLS.flatMap((t) => {
      const p = pcpToolPath(pcpCfg.pgpool, t);
      const why = untrustedProgram(p);
      return why ? [`pgpool.pcp_host (${t} looked up in ${PCP_PATH}; pgpool.bin_dir names another place): ${why}`] : [];
    });
    expect(programProblems(pcpCfg)).toEqual(expected);

  });

  test("Patroni's arguments, PGHERD_* variables, nothing else of the agent's environment; output logged", async () => {
    process.env.PGHERD_TEST_LEAK = "s3cret";
    const log = memoryLogger();
    const p = script("env.sh", 'echo "args=$1,$2,$3"; echo "leak=${PGHERD_TEST_LEAK:-none}"; echo "node=$PGHERD_NODE tl=$PGHERD_TIMELINE"; echo oops >&2; exit 3');
    const r = await runHook({ path: p, args: ["on_role_change", "primary", "main"], env: { PGHERD_NODE: "n1", PGHERD_TIMELINE: "4" }, timeoutMs: 5000, log, name: "on_role_change" });
    delete process.env.PGHERD_TEST_LEAK;
    expect(r).toMatchObject({ code: 3, timedOut: false, spawnError: null });
    expect(log.lines).toContain("info hook on_role_change stdout: args=on_role_change,primary,main");
    expect(log.lines).toContain("info hook on_role_change stdout: leak=none");
    expect(log.lines).toContain("info hook on_role_change stdout: node=n1 tl=4");
    expect(log.lines).toContain("info hook on_role_change stderr: oops");
  });

  test("a hook that hangs is killed at the timeout with the processes it started", async () => {
    const pidFile = join(dir, "child.pid");
    const p = script("hang.sh", `sleep 1000 & echo $! > ${pidFile}; wait`);
    const t0 = performance.now();
    const r = await runHook({ path: p, args: [], env: {}, timeoutMs: 300, log: memoryLogger(), name: "on_stop" });
    const ms = performance.now() - t0;
    expect(r.timedOut).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(1500);
    const child = Number(readFileSync(pidFile, "utf8"));
    // The whole process group got SIGKILL: the backgrounded sleep is gone too.
    for (let i = 0; i < 50 && alive(child); i++) await Bun.sleep(20);
    expect(alive(child)).toBe(false);
  });

  test("a missing executable is reported, not thrown", async () => {
    const r = await runHook({ path: join(dir, "nope"), args: [], env: {}, timeoutMs: 1000, log: memoryLogger(), name: "on_start" });
    expect(r.spawnError).toContain("does not exist");
  });
});

describe("role transitions", () => {
  const obs = (running: boolean, inRecovery: boolean | null, leading = false): Observation => ({ running, up: running && inRecovery !== null, inRecovery, leading });
  const run = (steps: Observation[]) => {
    let st: WatchState | null = null;
    const out: string[] = [];
    for (const o of steps) {
      const r = observeRole(st, o);
      st = r.state;
      out.push(...r.events.map((e) => `${e.action}:${e.role}:${e.oldRole ?? "-"}>${e.newRole ?? "-"}`));
    }
    return out;
  };

  test("the first observation is the baseline", () => {
    expect(run([obs(true, false, true)])).toEqual([]);
  });

  test("a running server that does not answer yet is no baseline: an agent restarted beside a busy server calls nothing", () => {
    // Review: it was taken as "stopped", and the next round's answer called on_start.
    const busy: Observation = { running: true, up: false, inRecovery: null, leading: false };
    expect(run([busy, obs(true, true)])).toEqual([]);
    expect(run([busy, { ...busy, leading: true }, obs(true, false, true)])).toEqual([]);
  });

  test("failover: a standby promoted; the fenced old primary is demoted, then follows", () => {
    expect(run([obs(true, true), obs(true, false, true)])).toEqual(["on_role_change:primary:replica>primary"]);
    expect(run([obs(true, false, true), obs(false, null), obs(true, true)])).toEqual([
      "on_stop:primary:primary>primary", "on_role_change:demoted:primary>demoted",
      "on_start:replica:demoted>replica", "on_role_change:replica:demoted>replica",
    ]);
  });

  test("a primary that stops while still leading (crashed, restarted in place) keeps its role", () => {
    expect(run([obs(true, false, true), obs(false, null, true), obs(true, false, true)])).toEqual(["on_stop:primary:primary>primary", "on_start:primary:primary>primary"]);
  });

  test("a server that does not answer yet changes nothing; bootstrap is only a start", () => {
    expect(run([obs(false, null), { running: true, up: false, inRecovery: null, leading: true }, obs(true, false, true)])).toEqual(["on_start:primary:->primary"]);
  });
});

describe("pre_promote", () => {
  const base: HaInput = {
    witness: false, leading: true, acquiringLease: false, leader: null,
    local: { data: "present", systemId: "1", running: true, up: true, inRecovery: true, upstream: null, wasPrimary: false, timeline: 1, stuck: false },
    clusterSystemId: "1", haveSecrets: true, nobodyHasData: false, othersHaveData: true, member: true, fromExisting: false,
    rejoinAuto: true, rejoinRequested: null, paused: false,
  };

  test("the decision: run the hook first, promote when it passed, resign on a veto", () => {
    expect(decideHa(base).kind).toBe("promote");
    expect(decideHa({ ...base, prePromote: "unchecked" }).kind).toBe("check-promote");
    expect(decideHa({ ...base, prePromote: "allowed" }).kind).toBe("promote");
    const d = decideHa({ ...base, prePromote: { vetoed: "pre_promote exit 1 in 3 ms" } });
    expect(d).toEqual({ kind: "resign", reason: "pre_promote exit 1 in 3 ms: vetoed this node's promotion, another standby must take over" });
    expect(decideHa({ ...base, paused: true, prePromote: "unchecked" }).kind).toBe("wait");
    expect(decideHa({ ...base, paused: true, promotionRequested: true, prePromote: "unchecked" }).kind).toBe("check-promote");
    // A stopped standby starts as a standby first and is then asked like any promotion (above); a
    // former primary restarted in place is not asked.
    const stopped = { ...base.local, running: false, up: false, inRecovery: null };
    expect(decideHa({ ...base, local: stopped, prePromote: "unchecked" })).toEqual({ kind: "start-standby", upstream: null });
    expect(decideHa({ ...base, local: { ...stopped, wasPrimary: true }, prePromote: "unchecked" }).kind).toBe("start-primary");
  });

  const cfgWith = (hooks: string) => parseConfig(`cluster = "main"\nsecret = "${"k".repeat(40)}"\nnode_name = "n1"\n[hooks]\n${hooks}\n`, "pgherd.toml");
  const hooksFor = (hooks: string, records: HookRecord[] = []) =>
    new Hooks(cfgWith(hooks), memoryLogger(), () => ({ node: "n1", cluster: "main", term: 0, leader: "n1", timeline: 3 }), (r) => records.push(r));

  test("the verdict holds for its term only; a veto and a timeout both refuse", async () => {
    const ok = hooksFor(`pre_promote = "${script("yes.sh", 'test "$PGHERD_TERM" = 7 && test "$1" = pre_promote')}"`);
    expect(ok.promoteCheck(7)).toBe("unchecked");
    await ok.checkPromote(7);
    expect(ok.promoteCheck(7)).toBe("allowed");
    expect(ok.promoteCheck(8)).toBe("unchecked");

    const records: HookRecord[] = [];
    const no = hooksFor(`pre_promote = "${script("no.sh", "echo not today; exit 1")}"`, records);
    await no.checkPromote(7);
    expect(no.promoteCheck(7)).toEqual({ vetoed: expect.stringMatching(/^pre_promote exit 1 in \d+ ms$/) });
    expect(records).toEqual([{ hook: "pre_promote", reason: expect.stringMatching(/^hook pre_promote \(replica -> primary\) exit 1/), timeline: 3, term: 7 }]);

    const slow = hooksFor(`pre_promote = "${script("slow.sh", "sleep 30")}"\ntimeout_ms = 200`);
    await slow.checkPromote(2);
    expect(slow.promoteCheck(2)).toEqual({ vetoed: "pre_promote killed after the 200 ms timeout" });
    expect(hooksFor("").promoteCheck(1)).toBe("allowed");
  });

  test("callbacks run in the background, in order, each recorded", async () => {
    const out = join(dir, "calls.txt");
    const rec = script("rec.sh", `echo "$PGHERD_ACTION $PGHERD_OLD_ROLE>$PGHERD_NEW_ROLE leader=$PGHERD_LEADER" >> ${out}`);
    const records: HookRecord[] = [];
    const h = hooksFor(`on_role_change = "${rec}"\non_stop = "${rec}"\non_start = "${rec}"`, records);
    h.observe({ running: true, up: true, inRecovery: false, leading: true });
    const t0 = performance.now();
    expect(h.observe({ running: false, up: false, inRecovery: null, leading: false })).toHaveLength(2);
    expect(performance.now() - t0).toBeLessThan(50); // nothing waits for the hooks
    await h.drained();
    expect(readFileSync(out, "utf8").trim().split("\n")).toEqual(["on_stop primary>primary leader=n1", "on_role_change primary>demoted leader=n1"]);
    expect(records.map((r) => r.hook)).toEqual(["on_stop", "on_role_change"]);
    expect(existsSync(out)).toBe(true);
  });
});

describe("config", () => {
  test("a hook path must be absolute", () => {
    expect(() => parseConfig(`cluster = "main"\nsecret = "${"k".repeat(40)}"\n[hooks]\non_start = "hook.sh"\n`, "pgherd.toml")).toThrow(/hooks\.on_start/);
  });
});

test("a hook whose daemon left the process group and holds its output open still ends", async () => {
  const pidFile = join(dir, "daemon.pid");
  const p = script("daemon.sh", `setsid sleep 30 & echo $! > ${pidFile}; exit 0`);
  const t0 = performance.now();
  const r = await runHook({ path: p, args: [], env: {}, timeoutMs: 5000, log: memoryLogger(), name: "on_start" });
  expect(r).toMatchObject({ code: 0, timedOut: false });
  expect(performance.now() - t0).toBeLessThan(2500);
  try { process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL"); } catch { /* gone */ }
});

test("a hook that exits in time is not reported as timed out when the timeout falls while its daemon holds the output (review: a false pre_promote veto)", async () => {
  const pidFile = join(dir, "late-daemon.pid");
  // Exits at ~0.3 s; the result waits up to 1 s more for the pipes the daemon holds, and the 800 ms
  // timeout falls in that second.
  const p = script("late-exit.sh", `setsid sleep 30 & echo $! > ${pidFile}; sleep 0.3; exit 0`);
  const r = await runHook({ path: p, args: [], env: {}, timeoutMs: 800, log: memoryLogger(), name: "pre_promote" });
  try { process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL"); } catch { /* gone */ }
  expect(r).toMatchObject({ code: 0, timedOut: false, spawnError: null });
  expect(succeeded(r)).toBe(true);
});
