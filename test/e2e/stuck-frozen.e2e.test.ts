// A primary that is alive but cannot work (issue 11): its PostgreSQL frozen (SIGSTOP of the
// postmaster and every child) while the agent, the network and the standbys are fine. The leader
// must judge its server stuck, resign to the most advanced standby and kill the frozen server
// (SIGQUIT cannot reach it): a standby writable within the 5 s target, no acknowledged write lost,
// never two writable primaries; /primary answers 503 meanwhile; after SIGCONT the old server is
// gone (it accepts no write) and its node is rewound and rejoins as a standby.
import { expect, test } from "bun:test";
import { childrenOf } from "../../src/postgres/orphans.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitGuarantee, waitSynchronous } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { describeAnalysis, faultRound, logMark, logSince, rejoinPath, secs, signal, startFailoverCluster } from "../helpers/writer.ts";
import { healthCode, TARGET_MS } from "./stuck-helpers.ts";

describeCluster("stuck primary: PostgreSQL frozen", {
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
});
