// Stopping pgherd itself (SIGTERM: systemctl stop/restart, an upgrade) on three namespace hosts with
// real PostgreSQL and a writer on every node: the leader's agent hands leadership to a caught-up
// standby before it exits (one planned switchover, nothing lost, no fence, its own server left
// running as the new primary's standby), and a rolling restart of all three agents, each down
// 30 s, costs at most that one handover. A restarted agent on a healthy standby changes no role.
import { expect, test } from "bun:test";
import type { ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { describeAnalysis, secs, startFailoverCluster, waitReplicating, watchdogLog, Writer } from "../helpers/writer.ts";

/** How long each agent stays down in the rolling restart (the acceptance). */
const DOWN_MS = 30_000;

type Marks = { node: ClusterNode; agent: ReturnType<ClusterNode["mark"]>; watchdog: number }[];

const markAll = (nodes: readonly ClusterNode[]): Marks => nodes.map((node) => ({ node, agent: node.mark(), watchdog: watchdogLog(node).length }));

/** Role changes, fences (agent or watchdog) logged on any node since the marks. */
function eventsSince(marks: Marks): { roleChanges: string[]; fences: string[] } {
  const roleChanges: string[] = [];
  const fences: string[] = [];
  for (const m of marks) {
    roleChanges.push(...m.node.lines(/history: (switchover|failover): /, m.agent).map((l) => `${m.node.name}: ${l.slice(0, 200)}`));
    fences.push(...m.node.lines(/fencing PostgreSQL|history: fence: /, m.agent).map((l) => `${m.node.name}: ${l.slice(0, 200)}`));
    fences.push(...watchdogLog(m.node).slice(m.watchdog).filter((l) => /fencing PostgreSQL|fenced/.test(l)).map((l) => `${m.node.name} watchdog: ${l.slice(0, 200)}`));
  }
  return { roleChanges, fences };
}

describeCluster("agent stop hands leadership over", {
  start: () => startFailoverCluster("agent-handover", "hand"),
  ready: ({ bounds }) => console.log(`bounds from the config: switchover ${bounds.switchoverMs} ms`),
}, (fx) => {
  test("SIGTERM to the leader's agent: one planned handover, outage within a switchover, 0 lost, no fence", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const old = h.primary;
    const marks = markAll(fx.c.nodes);
    const postmaster = old.postmasterPid();
    const w = new Writer(fx.c.nodes);
    w.start();
    try {
      const warm = w.mark("warm");
      await waitFor(() => w.acked(old.name).filter((a) => a.start >= warm).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${old.name}` });
      const at = w.mark("sigterm");
      await old.stopAgent(); // resolves once the agent exited: the handover happened before that
      const stoppedMs = performance.now() - at;
      const handed = old.lines(/SIGTERM: handed over to \S+ in \d+ ms/, marks.find((m) => m.node === old)!.agent);
      console.log(`agent stop on the leader ${old.name}: exited after ${secs(stoppedMs)}; ${handed[0] ?? "no handover logged"}`);
      expect(handed.length).toBe(1);
      // Its server was left running as a standby (restarted after the clean stop), not fenced.
      expect(old.postmasterPid()).not.toBeNull();
      expect(old.postmasterPid()).not.toBe(postmaster);
      expect((await old.query("select pg_is_in_recovery() as r"))[0]?.r).toBe(true);
      const first = await waitFor(() => w.attempts.find((a) => a.ok && a.start >= at && a.node !== old.name), { timeoutMs: 30_000, intervalMs: 20, what: "a write acknowledged by another node" });
      const neu = fx.c.node(first.node);
      await waitFor(() => w.acked(neu.name).filter((a) => a.start >= first.end).length >= 10, { timeoutMs: 15_000, what: `10 writes on ${neu.name}` });
      // The agent comes back on a healthy standby: no role change (issue 13 point 4).
      await old.start();
      const healed = await waitReplicating(fx.c, 60_000);
      expect(healed.primary).toBe(neu);
      const settled = w.mark("healed");
      await waitFor(() => w.acked(neu.name).filter((a) => a.start >= settled).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${neu.name} after the restart` });
      await w.stop();
      const a = w.analyse({ from: at, oldPrimary: old.name, newPrimary: neu.name });
      const lost = await w.lost(neu);
      console.log(describeAnalysis(`leader agent SIGTERM (${old.name} -> ${neu.name})`, a, lost) + ` (bound ${fx.bounds.switchoverMs} ms)`);
      const ev = eventsSince(marks);
      console.log(`role changes: ${ev.roleChanges.join(" | ") || "none"}`);
      expect(ev.fences).toEqual([]);
      expect(ev.roleChanges.length).toBe(1);
      expect(ev.roleChanges[0]).toMatch(/switchover: planned switchover from/);
      expect(a.outageMs).toBeLessThanOrEqual(fx.bounds.switchoverMs);
      expect(a.splitBrain.map((x) => `${x.node}#${x.id}`)).toEqual([]);
      expect(w.writableSince(first.end)).toEqual([neu.name]);
      expect(lost).toEqual([]);
      // A clean handover: the old primary followed without pg_rewind or a clone.
      expect(old.lines(/decision: (rewind|clone)/, marks.find((m) => m.node === old)!.agent)).toEqual([]);
    } finally {
      await w.stop();
    }
  }), 180_000);

  test(`rolling restart of every agent (standbys first, each down ${DOWN_MS / 1000} s): at most one handover, no fence, 0 lost`, () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const order = [...h.standbys, h.primary];
    const marks = markAll(fx.c.nodes);
    const w = new Writer(fx.c.nodes);
    w.start();
    const t0 = w.mark("start");
    try {
      await waitFor(() => w.acked(h.primary.name).filter((a) => a.start >= t0).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${h.primary.name}` });
      for (const n of order) {
        const t = performance.now();
        await n.stopAgent();
        // The downtime under test (an upgrade's binary swap), not a wait for a condition.
        await Bun.sleep(DOWN_MS);
        await n.start();
        const after = await waitReplicating(fx.c, 90_000);
        console.log(`${n.name}: agent down ${secs(DOWN_MS)}, cluster replicating again ${secs(performance.now() - t - DOWN_MS)} after its start; primary ${after.primary.name}`);
      }
      const end = await waitReplicating(fx.c, 60_000);
      const settled = w.mark("end");
      await waitFor(() => w.acked(end.primary.name).filter((a) => a.start >= settled).length >= 5, { timeoutMs: 15_000, what: `5 writes on ${end.primary.name} at the end` });
      await w.stop();
      const a = w.analyse({ from: t0, oldPrimary: h.primary.name, newPrimary: end.primary.name });
      const lost = await w.lost(end.primary);
      console.log(describeAnalysis(`rolling restart (${order.map((n) => n.name).join(", ")})`, a, lost) + ` (bound ${fx.bounds.switchoverMs} ms)`);
      const ev = eventsSince(marks);
      console.log(`role changes: ${ev.roleChanges.join(" | ") || "none"}`);
      expect(ev.fences).toEqual([]);
      expect(ev.roleChanges.length).toBeLessThanOrEqual(1);
      expect(ev.roleChanges.filter((l) => /failover: /.test(l))).toEqual([]);
      expect(end.standbys.length).toBe(2); // every node streaming (waitReplicating: each replays a fresh row)
      expect(a.outageMs).toBeLessThanOrEqual(fx.bounds.switchoverMs);
      expect(a.splitBrain.map((x) => `${x.node}#${x.id}`)).toEqual([]);
      expect(lost).toEqual([]);
    } finally {
      await w.stop();
    }
  }), 300_000);
});
