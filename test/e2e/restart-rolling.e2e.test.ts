// `pgherd reload` and `pgherd restart --pending` on three namespace hosts with real PostgreSQL and
// a writer on every node throughout: every agent rereads its file on `pgherd reload`; work_mem set
// cluster-wide reaches every node without a restart; max_connections (set cluster-wide)
// 100 → 200 (standbys first, the primary last by switchover) and 200 → 100 (the primary first, in
// place: PostgreSQL refuses a standby below the primary's value). Checked: every node runs the new
// value, the order, at most one node down at any time, no acknowledged write lost, the primary
// changed at most once per round. Last, a standby that cannot start because of a library installed
// nowhere is rebuilt from a clone once, not again when the clone fails the same way (loop.ts).
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { parse, stringify } from "smol-toml";
import { poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { logMark, logSince, pgherd, signal, startFailoverCluster, waitReplicating, Writer } from "../helpers/writer.ts";

/** Set one key of a node's pgherd.toml (the file keeps its owner and mode). */
function setKey(n: ClusterNode, section: string, key: string, value: string | number): void {
  const cfg = parse(readFileSync(n.configPath, "utf8")) as Record<string, Record<string, unknown>>;
  (cfg[section] ??= {})[key] = value;
  writeFileSync(n.configPath, `${stringify(cfg)}\n`);
}

async function show(n: ClusterNode, name: string): Promise<string> {
  return String((await n.query(`select current_setting('${name}') as v`))[0]?.v);
}

/** Samples every node every 50 ms: the most nodes down at once, and who was down when. */
function downSampler(nodes: readonly ClusterNode[]) {
  let running = true;
  let most = 0;
  const downs: string[] = [];
  const loop = (async () => {
    while (running) {
      const up = await Promise.all(nodes.map((n) => n.query("select 1", 400).then(() => true, () => false)));
      const gone = nodes.filter((_, i) => !up[i]).map((n) => n.name);
      most = Math.max(most, gone.length);
      if (gone.length) downs.push(gone.join("+"));
      await Bun.sleep(50);
    }
  })();
  return { stop: async () => { running = false; await loop; return { most, downs: [...new Set(downs)] }; } };
}

/** `cluster ls` once it shows `count` members with a pending restart. */
async function pendingShown(n: ClusterNode, count: number): Promise<string> {
  return poll(async () => {
    const out = (await pgherd(n, ["cluster", "ls"])).stdout;
    return (out.match(/RESTART PENDING/g)?.length ?? 0) === count ? out : undefined;
  }, { timeoutMs: 15_000, intervalMs: 300, what: `cluster ls to show ${count} member(s) with a pending restart` });
}

describeCluster("rolling restart and reload", {
  start: () => startFailoverCluster("restart-rolling", "rroll"),
}, (fx) => {
  test("pgherd reload: every agent rereads its pgherd.toml and says what it applied", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    for (const n of fx.c.nodes) setKey(n, "log", "level", "debug");
    const r = await pgherd(h.standbys[0]!, ["reload"]);
    console.log(`pgherd reload:\n${r.text}`);
    expect(r.code).toBe(0);
    for (const n of fx.c.nodes) expect(r.text).toContain(`${n.name}: pgherd.toml reloaded (applied log.level)`);
    expect(r.text).not.toContain("pending restart:");
  }), 60_000);

  test("a reload-only parameter set cluster-wide (work_mem) runs on every node, nothing pending", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const r = await pgherd(h.standbys[0]!, ["config", "set", "postgres.parameters.work_mem=7MB"]);
    expect(r.code).toBe(0);
    for (const n of fx.c.nodes) await poll(async () => (await show(n, "work_mem")) === "7MB", { timeoutMs: 15_000, intervalMs: 200, what: `${n.name}: work_mem 7MB` });
    const ls = (await pgherd(h.primary, ["cluster", "ls"])).stdout;
    expect(ls).not.toContain("RESTART PENDING");
  }), 60_000);

  /** One round: every node's max_connections to `to`, then `pgherd restart --pending` under the writer. */
  const round = async (to: number) => {
    const h = await waitReplicating(fx.c, 60_000);
    const primary = h.primary;
    const from = Number(await show(primary, "max_connections"));
    const set = await pgherd(primary, ["config", "set", `postgres.parameters.max_connections=${to}`]);
    console.log(`pgherd config set max_connections=${to}: ${set.text}`);
    expect(set.code).toBe(0);
    // Shown per member before the restart (each agent's next monitoring round reports it).
    const ls = await pendingShown(primary, 3);
    console.log(`cluster ls before the restart:\n${ls}`);
    expect(ls).toContain("pgherd restart --pending");

    const started = new Map<string, number>();
    for (const n of fx.c.nodes) started.set(n.name, Date.parse(String((await n.query("select pg_postmaster_start_time()::text as t"))[0]?.t)));
    const wallStart = Date.now();
    const w = new Writer(fx.c.nodes);
    w.start();
    const sampler = downSampler(fx.c.nodes);
    const t0 = performance.now();
    let out: Awaited<ReturnType<typeof pgherd>>;
    let downs: { most: number; downs: string[] };
    try {
      await w.waitAck(primary.name, t0, 15_000);
      out = await pgherd(h.standbys[1]!, ["restart", "--pending"], 240_000);
    } finally {
      downs = await sampler.stop();
      await Bun.sleep(500);
      await w.stop();
    }
    const ms = performance.now() - t0;
    console.log(`pgherd restart --pending (${from} -> ${to}) in ${(ms / 1000).toFixed(1)} s:\n${out.text}`);
    expect(out.code).toBe(0);
    const after = await waitReplicating(fx.c, 60_000);
    for (const n of fx.c.nodes) expect(await show(n, "max_connections")).toBe(String(to));
    // The order, from each server's start time.
    const restartedAt = new Map<string, number>();
    for (const n of fx.c.nodes) restartedAt.set(n.name, Date.parse(String((await n.query("select pg_postmaster_start_time()::text as t"))[0]?.t)));
    for (const n of fx.c.nodes) expect(restartedAt.get(n.name)!).toBeGreaterThan(started.get(n.name)!);
    const order = [...restartedAt.entries()].sort((a, b) => a[1] - b[1]).map(([n]) => n);
    console.log(`restart order: ${order.join(", ")} (primary at the start: ${primary.name}, now ${after.primary.name}); nodes down at once at most ${downs.most} (${downs.downs.join(", ") || "none seen"})`);
    if (to > from) expect(order.at(-1)).toBe(primary.name); // an increase: standbys first
    else expect(order[0]).toBe(primary.name); // a decrease: the primary first
    expect(downs.most).toBeLessThanOrEqual(1);
    const lost = await w.lost(after.primary);
    const acks = w.acked();
    let outage = 0;
    for (let i = 1; i < acks.length; i++) outage = Math.max(outage, acks[i]!.end - acks[i - 1]!.end);
    console.log(`writer: ${acks.length} acknowledged of ${w.attempts.length}, longest write gap ${Math.round(outage)} ms, lost ${lost.length}`);
    expect(lost).toEqual([]);
    const primaries = new Set(acks.map((a) => a.node));
    expect(primaries.size).toBeLessThanOrEqual(2); // the primary changed at most once
    await pendingShown(after.primary, 0);
    // The agents took their planned restarts for what they were: no crash restart, fence or failover.
    const hist = await poll(async () => {
      const all = JSON.parse((await pgherd(after.primary, ["cluster", "history", "--json"])).stdout) as { at: string; kind: string; reason: string }[];
      const since = all.filter((e) => Date.parse(e.at) >= wallStart);
      return since.filter((e) => e.kind === "restart" && e.reason.includes("by the operator")).length === (to > from ? 2 : 3) ? since : undefined;
    }, { timeoutMs: 10_000, intervalMs: 300, what: "the operator's restarts in the cluster history" });
    console.log(`history:\n  ${hist.map((e) => `${e.kind}: ${e.reason}`).join("\n  ")}`);
    expect(hist.filter((e) => e.kind === "fence" || e.kind === "failover" || e.reason.includes("crashed"))).toEqual([]);
    return { primary, after: after.primary };
  };

  test("max_connections 100 -> 200: standbys first, the primary last by switchover", () => fx.c.diagnose(async () => {
    const r = await round(200);
    expect(r.after).not.toBe(r.primary);
  }), 300_000);

  test("max_connections 200 -> 100: the primary first (in place), then the standbys", () => fx.c.diagnose(async () => {
    const r = await round(100);
    expect(r.after).toBe(r.primary);
  }), 300_000);

  test("a standby whose start fails again after its automatic rebuild (a library not installed anywhere) is not rebuilt a second time; fixed, it starts", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const s = h.standbys[0]!;
    const mark = logMark(s);
    // Cluster-wide, as an operator would set it: every node's pgherd.conf, in force at the next start.
    const set = await pgherd(h.primary, ["config", "set", "postgres.parameters.shared_preload_libraries=pgherd_no_such_library"]);
    expect(set.code).toBe(0);
    try {
      const pid = s.postmasterPid();
      if (pid === null) throw new Error(`${s.name}: no postmaster`);
      signal(pid, "SIGKILL"); // its agent starts it again as a standby: refused three times, rebuilt, refused again
      const said = await waitFor(() => logSince(s, mark, /not rebuilding it again/)[0], { timeoutMs: 120_000, what: `${s.name} to stop rebuilding` });
      console.log(`${s.name}: ${said}`);
      expect(said).toContain('FATAL: could not access file "pgherd_no_such_library": No such file or directory');
      expect(logSince(s, mark, /rebuilding it from a fresh clone/)).toHaveLength(1);
    } finally {
      expect((await pgherd(h.primary, ["config", "set", "postgres.parameters.shared_preload_libraries="])).code).toBe(0);
    }
    await waitReplicating(fx.c, 90_000);
    expect(logSince(s, mark, /rebuilding it from a fresh clone/)).toHaveLength(1);
  }), 300_000);
});
