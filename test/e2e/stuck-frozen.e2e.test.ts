// A primary that is alive but cannot work, and a former primary coming back (issue 11), on one
// shared cluster.
//
// Frozen: its PostgreSQL frozen (SIGSTOP of the postmaster and every child) while the agent, the
// network and the standbys are fine. The leader must judge its server stuck, resign to the most
// advanced standby and kill the frozen server (SIGQUIT cannot reach it): a standby writable within
// the 5 s target, no acknowledged write lost, never two writable primaries; /primary answers 503
// meanwhile; after SIGCONT the old server is gone (it accepts no write) and its node is rewound and
// rejoins as a standby.
//
// Former primary: it is rewound before it streams, whatever state its pg_control shows (issue 11,
// point 4: "in crash recovery" was taken for a standby's). Each round: the primary's agent and
// watchdog are killed (nothing fences it), a standby takes over, the old primary commits rows of
// its own (synchronous_commit = local: a diverged history), its server is brought into the state
// by hand, then its agent is started again. Its first decision must be a rewind, never a start as
// a standby; afterwards it streams from the new primary and the diverged rows are gone.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { childrenOf } from "../../src/postgres/orphans.ts";
import type { ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitGuarantee, waitSynchronous } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { describeAnalysis, faultRound, logMark, logSince, rejoinPath, secs, signal, startFailoverCluster, waitReplicating, watchdogPid } from "../helpers/writer.ts";
import { healthCode, TARGET_MS } from "./stuck-helpers.ts";

async function controlState(n: ClusterNode): Promise<string> {
  const r = await n.pgTool("pg_controldata", ["-D", n.dataDir]);
  return /^Database cluster state:\s+(.+)$/m.exec(r.stdout)?.[1]?.trim() ?? `unreadable: ${r.stderr.trim()}`;
}

/** Leaves the stopped server's pg_control in `state`. */
async function bringInto(n: ClusterNode, state: string): Promise<void> {
  if (state === "shut down") {
    expect((await n.pgCtl("stop", "-m", "fast", "-w")).code).toBe(0);
    return;
  }
  expect((await n.pgCtl("stop", "-m", "immediate", "-w")).code).toBe(0);
  if (state === "in production") return;
  // "in crash recovery": start it again (no standby.signal: crash recovery of the WAL written since
  // the last checkpoint, over 100 MB here) and kill it while it replays.
  expect((await n.pgCtl("start", "-W", "-l", n.pgLogFile)).code).toBe(0);
  await waitFor(async () => (await controlState(n)) === "in crash recovery", { timeoutMs: 20_000, intervalMs: 10, what: `${n.name}: crash recovery under way` });
  const pm = n.postmasterPid();
  if (pm !== null) for (const pid of [pm, ...childrenOf(pm)]) try { signal(pid, "SIGKILL"); } catch { /* gone */ }
  await waitFor(() => n.postmasterPid() === null || !alive(n.postmasterPid()!), { timeoutMs: 10_000, what: `${n.name}: killed in crash recovery` });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describeCluster("stuck primary: PostgreSQL frozen; former primary rewound in every pg_control state", {
  start: () => startFailoverCluster("stuck-frozen", "sfrozen"),
  ready: async ({ c }) => console.log(`durability: ${await waitGuarantee(c.nodes[0]!, /^quorum: zero-loss/, 30_000)}`),
}, (fx) => {
  test("frozen server while a writer runs: a standby takes over within the target, 0 lost, one writable primary, the old one rejoins rewound", () => fx.c.diagnose(async () => {
    console.log(`before: ${await waitSynchronous((await fx.c.waitHealthy(60_000)).primary)}`);
    const stopped: number[] = [];
    let mark = 0;
    let at = 0;
    let primary503: number | null = null;
    let reason = "";
    const r = await faultRound(fx.c, {
      label: "PostgreSQL SIGSTOP", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        const pm = p.postmasterPid();
        if (pm === null) throw new Error(`${p.name}: no postmaster`);
        at = performance.now();
        for (const pid of [pm, ...childrenOf(pm)]) {
          signal(pid, "SIGSTOP");
          stopped.push(pid);
        }
        // The frozen primary's own /primary stops answering 200 (it never claims to take writes).
        await waitFor(async () => (await healthCode(p, "/primary")) === 503, { timeoutMs: 10_000, intervalMs: 100, what: `${p.name}: /primary 503` });
        primary503 = performance.now() - at;
      },
      restore: async (old) => {
        const lines = await waitFor(() => { const l = logSince(old, mark, /decision: resign \(PostgreSQL stuck/); return l.length ? l : undefined; }, { timeoutMs: 10_000, what: `${old.name} to resign as stuck` });
        reason = lines[0]!.replace(/^.*decision: /, "");
        for (const pid of stopped.splice(0)) try { signal(pid, "SIGCONT"); } catch { /* killed by the fence */ }
      },
    }).finally(() => {
      for (const pid of stopped) try { signal(pid, "SIGCONT"); } catch { /* gone */ }
    });
    const a = r.analysis;
    console.log(`${describeAnalysis(`${r.label} (${r.old.name} -> ${r.neu.name})`, a, r.lost)}; /primary 503 on the old primary ${secs(primary503)} after the freeze; healthy again ${secs(r.healMs)} after SIGCONT`);
    console.log(`FIGURE freeze -> new primary writable: ${secs(a.recoveryMs)} (target ${secs(TARGET_MS)}); ${reason}`);
    const killed = logSince(r.old, mark, /killed \d+ process\(es\) with SIGKILL/);
    console.log(`fence: ${killed[0] ?? "(no SIGKILL logged)"}`);
    expect(r.neu).not.toBe(r.old);
    expect(a.recoveryMs ?? Infinity).toBeLessThanOrEqual(TARGET_MS);
    expect(a.splitBrain).toEqual([]);
    expect(r.writableAfter).toEqual([r.neu.name]);
    expect(r.lost).toEqual([]);
    expect(killed.length).toBeGreaterThan(0);
    expect(at).toBeGreaterThan(0);
    // After SIGCONT nothing of the old server is left to take a write; its node was rewound before streaming.
    const path = rejoinPath(r.old, mark);
    console.log(`old primary rejoin: ${path.decisions.join(" | ")}; ${path.rewinds.join(", ")}`);
    expect(path.decisions[0]).toBe("rewind");
    expect(path.rewinds.length).toBeGreaterThan(0);
  }), 300_000);

  for (const state of ["in crash recovery", "in production", "shut down"]) {
    test(`pg_control "${state}"`, () => fx.c.diagnose(async () => {
      const c = fx.c;
      const old = (await waitReplicating(c, 90_000)).primary;
      const others = c.nodes.filter((n) => n !== old);
      const wd = watchdogPid(old);
      signal(old.agent!.pid, "SIGKILL");
      if (wd !== null) signal(wd, "SIGKILL");
      await waitFor(() => old.agent!.exited, { timeoutMs: 5000, what: `${old.name}: agent gone` });
      const h = await c.waitHealthy(60_000, { nodes: others });
      console.log(`${state}: ${old.name} left unfenced, ${h.primary.name} took over`);
      // Diverged rows the new primary never had (no synchronous standby waits: local commit).
      const rows = state === "in crash recovery" ? 100_000 : 100;
      await old.query(`BEGIN; SET LOCAL synchronous_commit = local; CREATE TABLE diverged (id int, pad text); INSERT INTO diverged SELECT g, repeat('x', 1000) FROM generate_series(1, ${rows}) g; COMMIT;`, 120_000);
      await bringInto(old, state);
      const seen = await controlState(old);
      console.log(`${old.name}: pg_control "${seen}", standby.signal absent`);
      expect(seen).toBe(state);
      const mark = logMark(old);
      await old.start();
      await waitReplicating(c, 120_000);
      const path = rejoinPath(old, mark);
      console.log(`${old.name} rejoin: ${path.decisions.join(" | ")}; ${path.rewinds.join(", ")}`);
      expect(path.decisions[0]).toMatch(/^(rewind|clone)/);
      expect(path.decisions.filter((d) => /start as a standby/.test(d))).toEqual([]);
      // The diverged history is gone: the table the old primary created alone does not exist.
      await expect(old.query("SELECT count(*) FROM diverged")).rejects.toThrow(/does not exist/);
    }), 240_000);
  }
});
