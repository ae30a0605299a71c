// Operator-driven role changes through the CLI (→ the agent's API with the bearer token), three
// namespace hosts, real PostgreSQL, a writer on every node: planned switchover to a chosen standby
// and back (nothing lost, short outage, the old primary follows without a rewind), refusals for a
// lagging and an absent target, pause shown in `cluster ls`, and a manual failover after the
// primary's host died while the cluster was paused.
import { expect, test } from "bun:test";
import { appendFileSync } from "node:fs";
import { poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitFor } from "../helpers/proc.ts";
import { describeAnalysis, faultRound, logMark, logSince, pgherd, secs, startFailoverCluster, waitReplicating, Writer, type RoundResult } from "../helpers/writer.ts";
import { cloneNameFor, slotFor } from "../../src/agent/pg/context.ts";

type Cli = Awaited<ReturnType<typeof pgherd>>;

/** The command must have succeeded; otherwise the error quotes what the agent answered. */
function mustOk(r: Cli, what: string): Cli {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.text.slice(0, 500) || "no output"}`);
  return r;
}

/** The command must have been refused, for the expected reason. */
function mustRefuse(r: Cli, why: RegExp, what: string): Cli {
  if (r.code === 0) throw new Error(`${what} was accepted, expected a refusal matching ${why}: ${r.text.slice(0, 500)}`);
  if (!why.test(r.text)) throw new Error(`${what} was refused for another reason than ${why}: ${r.text.slice(0, 500)}`);
  return r;
}

describeCluster("switchover and manual failover", {
  start: () => startFailoverCluster("failover-manual", "fman"),
  ready: ({ bounds }) => console.log(`bounds from the config: switchover ${bounds.switchoverMs} ms, failover ${bounds.failoverMs} ms`),
}, (fx) => {
  /** One planned switchover from the current primary to `to`, the CLI run on `on` (a name). */
  const switchover = async (to: (p: ClusterNode, standbys: ClusterNode[]) => ClusterNode, on: "primary" | "target"): Promise<RoundResult> => {
    let target: ClusterNode | undefined;
    let mark = 0;
    const r = await faultRound(fx.c, {
      label: "switchover", expect: "other", waitMs: 30_000,
      inject: async (p) => {
        const h = await waitReplicating(fx.c, 10_000);
        target = to(p, h.standbys);
        mark = logMark(p);
        const cli = mustOk(await pgherd(on === "primary" ? p : target, ["switchover", "--to", target.name]), `pgherd switchover --to ${target.name} (on ${on})`);
        console.log(`switchover ${p.name} -> ${target.name} (CLI on the ${on}): ${cli.text}`);
        // Success means the target runs the primary now, not merely that leadership was offered to it.
        const [row] = await target.query("select pg_is_in_recovery() as r");
        if (row?.r !== false) throw new Error(`pgherd switchover --to ${target.name} exited 0 ("${cli.text}") but ${target.name} is not the primary`);
      },
    });
    console.log(describeAnalysis(`switchover (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost) + ` (target 1 s, bound ${fx.bounds.switchoverMs} ms)`);
    expect(r.neu).toBe(target!);
    expect(r.analysis.outageMs).toBeLessThanOrEqual(fx.bounds.switchoverMs);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.writableAfter).toEqual([r.neu.name]);
    expect(r.lost).toEqual([]);
    expect(r.healthy.primary).toBe(r.neu);
    // A clean handover: the old primary follows the new one without pg_rewind or a clone.
    expect(logSince(r.old, mark, /decision: (rewind|clone)/)).toEqual([]);
    return r;
  };

  test("planned switchover to a chosen standby and back: nothing lost, outage within the bound", () => fx.c.diagnose(async () => {
    const there = await switchover((_p, s) => s[s.length - 1]!, "primary");
    await switchover(() => there.old, "target");
    const hist = mustOk(await pgherd(there.old, ["cluster", "history"]), "pgherd cluster history");
    const moves = hist.text.split("\n").filter((l) => /switchover/.test(l));
    console.log(`cluster history (switchovers):\n  ${moves.join("\n  ")}`);
    expect(moves.some((l) => l.includes(`${there.old.name} -> ${there.neu.name}`))).toBe(true);
    expect(moves.some((l) => l.includes(`${there.neu.name} -> ${there.old.name}`))).toBe(true);
  }), 240_000);

  test("switchover while no standby can reach the target's PostgreSQL: the new primary acknowledges no write before a synchronous standby streams", () => fx.c.diagnose(async () => {
    // Replication connections to the target are dropped on its host (the agents' mesh is not), so
    // after its promotion no standby can stream from it. Its synchronous_standby_names must be in
    // force from its first commit: a write acknowledged meanwhile would exist on one node only.
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[h.standbys.length - 1]!;
    const table = "pgherd_test_promo_block";
    let blocked = false;
    const unblock = async () => {
      if (blocked) await target.host.exec(["nft", "delete", "table", "inet", table]);
      blocked = false;
    };
    const w = new Writer([target], { intervalMs: 5 });
    try {
      const from = fx.c.nodes.filter((n) => n !== target).map((n) => n.host.ip).join(", ");
      const rules = `table inet ${table} {\n chain input {\n  type filter hook input priority -10;\n  ip saddr { ${from} } tcp dport ${fx.cfg.postgres.port} drop\n }\n}\n`;
      const nft = await target.host.exec(["nft", "-f", "-"], { input: rules });
      if (nft.code !== 0) throw new Error(`nft on ${target.name}: ${nft.stderr}`);
      blocked = true;
      const mark = logMark(target);
      w.start();
      const cli = pgherd(h.primary, ["switchover", "--to", target.name]);
      // Promoted: the writer's lane stops getting "read-only" answers (it then waits or is acknowledged).
      await waitFor(async () => (await target.query("select pg_is_in_recovery() as r"))[0]?.r === false, { timeoutMs: 30_000, intervalMs: 10, what: `${target.name} to leave recovery` });
      const promotedAt = performance.now();
      // A fixed window on purpose (it shows an absence), shorter than the 3 s grace after a promotion.
      await Bun.sleep(1500);
      const early = w.acked(target.name).filter((a) => a.end <= performance.now());
      const degraded = logSince(target, mark, /too few synchronous standbys|degrading:|degraded:/);
      await unblock();
      mustOk(await cli, `pgherd switchover --to ${target.name}`);
      const first = await w.waitAck(target.name, promotedAt, 30_000);
      console.log(`promotion with no standby reachable: ${early.length} writes acknowledged in the first 1.5 s ` +
        `(${w.attempts.filter((a) => a.node === target.name && a.start >= promotedAt).length} attempts); first acknowledged ${secs(first.end - promotedAt)} after the promotion was seen, once the standbys could connect`);
      expect(early.map((a) => `#${a.id} acknowledged ${Math.round(a.end - promotedAt)} ms after the promotion was seen`)).toEqual([]);
      expect(degraded).toEqual([]);
      const after = await waitReplicating(fx.c, 60_000);
      expect(after.primary).toBe(target);
      await w.stop();
      expect(await w.lost(after.primary)).toEqual([]);
    } finally {
      await unblock();
      await w.stop();
    }
  }), 180_000);

  test("switchover refused: to a lagging standby, to an unknown node, to a member whose agent is down", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const [lagger, quiet] = h.standbys as [ClusterNode, ClusterNode];
    const limit = fx.cfg.failover.max_lag_bytes;
    // Lagging: replay paused on the target while the primary writes several times the lag limit.
    await lagger.query("select pg_wal_replay_pause()");
    try {
      await h.primary.query(`create table if not exists lagfill (id int, pad text); insert into lagfill select g, repeat('x', 1000) from generate_series(1, ${Math.ceil((4 * limit) / 1000)}) g`, 30_000);
      await poll(async () => {
        const lag = (await h.primary.clusterLs()).view.members.find((m) => m.name === lagger.name)?.lagBytes ?? null;
        if (lag === null || lag <= limit) throw new Error(`${lagger.name} lag ${lag} bytes (limit ${limit})`);
        return lag;
      }, { timeoutMs: 20_000, what: `${lagger.name} to lag more than ${limit} bytes in cluster ls` });
      const r = mustRefuse(await pgherd(h.primary, ["switchover", "--to", lagger.name]), /lags \d+ bytes/, `switchover to the lagging ${lagger.name}`);
      console.log(`refused (lagging): ${r.text}`);
    } finally {
      await lagger.query("select pg_wal_replay_resume()");
    }
    await h.primary.query("drop table lagfill");

    const unknown = mustRefuse(await pgherd(quiet, ["switchover", "--to", "nosuchnode"]), /no database member named nosuchnode/, "switchover to an unknown node");
    console.log(`refused (unknown): ${unknown.text}`);

    // Absent: the member exists but its agent is down (its PostgreSQL still streams).
    const mark = logMark(h.primary);
    await quiet.stopAgent();
    try {
      await waitFor(() => logSince(h.primary, mark, new RegExp(`peer ${quiet.name} \\(\\w+\\) disconnected`)).length > 0, { timeoutMs: 15_000, what: `${h.primary.name} to see ${quiet.name}'s agent gone` });
      const r = mustRefuse(await pgherd(lagger, ["switchover", "--to", quiet.name]), /not connected|not reachable|down/, `switchover to ${quiet.name} (agent stopped)`);
      console.log(`refused (agent down): ${r.text}`);
    } finally {
      await quiet.start();
    }
    const after = await waitReplicating(fx.c, 60_000);
    expect(after.primary).toBe(h.primary);
  }), 180_000);

  test("pause shows in cluster ls and stops automatic actions; resume ends it", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    mustOk(await pgherd(h.standbys[0]!, ["pause"]), "pgherd pause");
    try {
      const ls = await pgherd(h.primary, ["cluster", "ls"]);
      console.log(`cluster ls while paused:\n${ls.stdout}`);
      expect(ls.stdout).toMatch(/paused/i);
    } finally {
      mustOk(await pgherd(h.primary, ["resume"]), "pgherd resume");
    }
    expect((await pgherd(h.primary, ["cluster", "ls"])).stdout).not.toMatch(/paused/i);
  }), 60_000);

  test("manual failover after the primary's host died while paused: refused without --force, done with it; resume rejoins the old primary", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const marks = new Map(h.standbys.map((s) => [s, logMark(s)]));
    mustOk(await pgherd(h.primary, ["pause"]), "pgherd pause");
    let resumed = false;
    let target: ClusterNode | undefined;
    let asked = 0;
    try {
      await waitFor(() => h.standbys.every((s) => logSince(s, marks.get(s)!, /the leader paused the cluster/).length > 0), { timeoutMs: 15_000, what: "every standby to hear that the cluster is paused" });
      const r = await faultRound(fx.c, {
        label: "manual failover", expect: "other", waitMs: 60_000,
        inject: async (p) => {
          await p.host.killAll("SIGKILL");
          const oldId = p.nodeId();
          // Paused: the survivors may elect a leader, but nobody promotes by itself.
          const survivors = fx.c.nodes.filter((n) => n !== p);
          const leader = await poll(async () => {
            const v = (await survivors[0]!.clusterLs()).view;
            if (!v.leader || v.leader === oldId) throw new Error(`leader ${v.leaderName ?? "none"}`);
            return v.leader;
          }, { timeoutMs: 30_000, what: "a new leader among the survivors" });
          // The human picks the node the election did not pick.
          target = survivors.find((n) => n.nodeId() !== leader) ?? survivors[0]!;
          const other = survivors.find((n) => n !== target)!;
          mustRefuse(await pgherd(other, ["failover", "--to", target.name]), /paused/, `failover to ${target.name} while paused, without --force`);
          asked = performance.now();
          const ok = mustOk(await pgherd(other, ["failover", "--to", target.name, "--force"]), `pgherd failover --to ${target.name} --force`);
          console.log(`manual failover to ${target.name} (leader was ${fx.c.nodes.find((n) => n.nodeId() === leader)?.name}): ${ok.text} (${secs(performance.now() - asked)})`);
        },
        restore: async (old, neu) => {
          mustOk(await pgherd(neu, ["resume"]), "pgherd resume");
          resumed = true;
          await old.start();
        },
      });
      console.log(describeAnalysis(`manual failover (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost));
      expect(r.neu).toBe(target!);
      // Nothing was promoted before the operator asked.
      expect(r.analysis.firstNewAck!.start).toBeGreaterThanOrEqual(asked);
      expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
      expect(r.writableAfter).toEqual([r.neu.name]);
      expect(r.healthy.primary).toBe(r.neu);
    } finally {
      if (!resumed) {
        const alive = fx.c.nodes.find((n) => n.agent && !n.agent.exited);
        if (alive) await pgherd(alive, ["resume"]).catch(() => {});
      }
    }
  }), 240_000);

  test("cluster ls names every member by the address others reach it at, the leader included (defect 5: 0.0.0.0)", () => fx.c.diagnose(async () => {
    await waitReplicating(fx.c, 60_000);
    for (const n of fx.c.nodes) {
      const v = (await n.clusterLs()).view;
      const hosts = Object.fromEntries(v.members.map((m) => [m.name, m.host]));
      expect(hosts).toEqual(Object.fromEntries(fx.c.nodes.map((x) => [x.name, x.host.ip])));
    }
  }), 60_000);

  test("rejoin --force-clone and rejoin report success only once the rebuilt standby streams (defect 4)", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    for (const [s, args, steps] of [[h.standbys[0]!, ["rejoin", "--force-clone"], /^(cloning|starting)/], [h.standbys[1]!, ["rejoin"], /^(rewinding|starting)/]] as const) {
      const mark = logMark(s);
      // The primary's view of the copy: pg_basebackup's connections under a name of their own.
      const seen: { name: string; state: string; sync: string }[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const rows = await h.primary.query("select application_name as name, state, sync_state as sync from pg_stat_replication").catch(() => []);
          seen.push(...(rows as unknown as { name: string; state: string; sync: string }[]));
          await Bun.sleep(20);
        }
      })();
      const r = await pgherd(s, [...args]).finally(async () => {
        sampling = false;
        await sampler;
      });
      mustOk(r, `pgherd ${args.join(" ")} on ${s.name}`);
      if ((args as readonly string[]).includes("--force-clone")) {
        // With a slot, pg_basebackup's WAL stream reports a flush position: under the standby's own
        // name (in synchronous_standby_names) it would acknowledge commits for a copy in progress.
        const clone = seen.filter((x) => x.name === cloneNameFor(s.nodeId()));
        console.log(`during the clone the primary saw ${clone.length} rows of ${cloneNameFor(s.nodeId())}: ${[...new Set(clone.map((x) => `${x.state}/${x.sync}`))].join(", ")}`);
        expect(clone.length).toBeGreaterThan(0);
        expect(clone.filter((x) => x.sync !== "async")).toEqual([]);
        expect(seen.filter((x) => x.name === slotFor(s.nodeId()) && x.state === "backup")).toEqual([]);
      }
      console.log(`pgherd ${args.join(" ")} on ${s.name}:\n  ${r.text.split("\n").join("\n  ")}`);
      const lines = r.text.split("\n");
      expect(lines.at(-1)).toBe("rejoined: streaming from the primary");
      expect(lines.some((l) => steps.test(l))).toBe(true);
      // The rebuild really happened before success was printed, and the standby streams now.
      expect(logSince(s, mark, /decision: (clone|rewind)|rejoin requested/).length).toBeGreaterThan(0);
      const [row] = await s.query("select status from pg_stat_wal_receiver");
      expect(row?.status).toBe("streaming");
    }
    await waitReplicating(fx.c, 60_000);
  }), 240_000);

  test("scheduled switchover: stored through the leader, shown on every node, survives a restart of the leader's agent, runs at its time; a cancelled one never runs (defect 3)", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[0]!;
    // The leader's agent restarts in place below: without a handover on stop ([shutdown] handover
    // = false, applied by SIGHUP), the restarted agent leads again and must still run the schedule.
    appendFileSync(h.primary.configPath, "\n[shutdown]\nhandover = false\n");
    const hup = h.primary.mark();
    h.primary.agent!.kill("SIGHUP");
    await waitFor(() => h.primary.lines(/SIGHUP: applied shutdown\.handover/, hup).length > 0, { timeoutMs: 10_000, what: `${h.primary.name} to reload [shutdown]` });
    // Cancelled: scheduled, shown, dropped; its time passes without a role change.
    const soon = new Date(Date.now() + 4000).toISOString();
    mustOk(await pgherd(target, ["switchover", "--to", target.name, "--at", soon]), "pgherd switchover --at (to cancel)");
    await poll(async () => {
      const ls = await pgherd(h.standbys[1]!, ["cluster", "ls"]);
      if (!ls.stdout.includes(`scheduled switchover to ${target.name}`)) throw new Error(ls.stdout);
      return true;
    }, { timeoutMs: 10_000, what: "the schedule in cluster ls on another standby" });
    mustOk(await pgherd(h.primary, ["switchover", "--cancel"]), "pgherd switchover --cancel");
    // Kept: scheduled at once, due 5 s after the cancelled time has been watched for 3 s (the two
    // waits overlap); then the leader's agent restarts (PostgreSQL keeps running; the restarted
    // agent leads again within about a second), before the kept one is due.
    const at = Date.parse(soon) + 8_000;
    const reply = mustOk(await pgherd(h.standbys[1]!, ["switchover", "--to", target.name, "--at", new Date(at).toISOString()]), "pgherd switchover --at");
    console.log(`scheduled: ${reply.text}`);
    await waitFor(() => Date.now() > Date.parse(soon) + 3000, { timeoutMs: 10_000, what: "the cancelled time to pass" });
    expect((await waitReplicating(fx.c, 10_000)).primary).toBe(h.primary);
    await h.primary.stopAgent();
    await h.primary.start();
    expect(Date.now()).toBeLessThan(at); // the schedule must outlive the restart, so the restart comes first
    await poll(async () => {
      const [row] = await target.query("select pg_is_in_recovery() as r");
      if (row?.r !== false) throw new Error(`${target.name} still a standby`);
      return true;
    }, { timeoutMs: 40_000, intervalMs: 200, what: `${target.name} promoted by the scheduled switchover` });
    const promoted = Date.now();
    console.log(`scheduled switchover ran ${((promoted - at) / 1000).toFixed(2)} s after its time`);
    expect(promoted).toBeGreaterThanOrEqual(at);
    const healthy = await waitReplicating(fx.c, 60_000);
    expect(healthy.primary).toBe(target);
    const ls = await pgherd(target, ["cluster", "ls"]);
    expect(ls.stdout).not.toContain("scheduled switchover");
    const hist = await pgherd(target, ["cluster", "history"]);
    expect(hist.stdout).toMatch(/schedule .*cancelled/);
    expect(hist.stdout).toMatch(new RegExp(`switchover +${target.name}`));
  }), 180_000);
});
