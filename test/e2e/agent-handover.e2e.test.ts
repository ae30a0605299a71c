// Stopping pgherd itself (SIGTERM: systemctl stop/restart, an upgrade) on three namespace hosts with
// real PostgreSQL and a writer on every node: the leader's agent hands leadership to a caught-up
// standby before it exits (one planned switchover, nothing lost, no fence, its own server left
// running as the new primary's standby), and a rolling restart of all three agents, each down
// longer than every timer an absent agent crosses, costs at most that one handover. A restarted
// agent on a healthy standby changes no role.
import { expect, test } from "bun:test";
import { PgCluster, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { API_TOKEN, describeAnalysis, readyCluster, secs, waitReplicating, watchdogLog, Writer } from "../helpers/writer.ts";

/**
 * The issue asks for each agent down 30 s in the rolling restart: longer than the default
 * discovery.max_age_ms (30 s, when the other agents forget a silent peer) and the fencing
 * watchdog's exit without an agent (10 s, fixed). The same crossings with discovery.max_age_ms
 * set to 6 s (the config check accepts it: more than discovery.interval_ms) take 13 s per agent;
 * the test asserts both crossings happened in every downtime.
 */
const MAX_AGE_MS = 6_000;
const DOWN_MS = 13_000;

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
  start: async () => readyCluster("agent-handover", await PgCluster.create({
    test: "agent-handover", tag: "hand", nodes: 3, defaults: { extra: { api: { token: API_TOKEN }, discovery: { max_age_ms: MAX_AGE_MS } } },
  })),
  ready: ({ bounds, cfg }) => console.log(`bounds from the config: switchover ${bounds.switchoverMs} ms; discovery.max_age_ms ${cfg.discovery.max_age_ms}`),
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
        const others = fx.c.nodes.filter((o) => o !== n).map((o) => ({ o, mark: o.mark() }));
        const wd = watchdogLog(n).length;
        await n.stopAgent();
        // The downtime under test (an upgrade's binary swap), not a wait for a condition.
        await Bun.sleep(DOWN_MS);
        // It crossed what the 30 s crossed: the others forgot the silent peer, its watchdog left.
        const forgot = others.filter(({ o, mark }) => o.lines(new RegExp(`peer ${n.name} \\(\\w+\\) not heard for ${MAX_AGE_MS} ms`), mark).length > 0).map(({ o }) => o.name);
        const exited = watchdogLog(n).slice(wd).filter((l) => /no armed lease and no agent: exiting/.test(l));
        console.log(`${n.name} down ${secs(DOWN_MS)}: forgotten by ${forgot.join(", ") || "nobody"}; watchdog: ${exited[0]?.slice(0, 120) ?? "still running"}`);
        expect(forgot.length).toBeGreaterThan(0);
        expect(exited.length).toBe(1);
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
