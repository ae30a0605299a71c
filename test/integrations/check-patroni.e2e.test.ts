// check_patroni (Dalibo's Nagios plugin for Patroni's REST API, release 2.2.0: see
// vendor/check_patroni/README.md) run against a real three-node pgherd cluster: every node_* and
// cluster_* service is OK in a healthy cluster, and answers the expected WARNING/CRITICAL with a
// lagging standby, while paused, with a member down and after a failover (timeline changed).
// Also the Patroni extras: /cluster marks the quorum standbys (cluster_has_replica --sync-warning
// counts them), and the Patroni-named series on /metrics agree with what check_patroni reads.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { pgherd, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

const VENDOR = join(import.meta.dir, "vendor", "check_patroni");
const PYTHON = "/usr/bin/python3";
const NAMES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

interface Check { code: number; text: string }

describeCluster("check_patroni against pgherd", {
  start: async () => {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: bash scripts/system-packages.sh installs check_patroni's dependencies`);
    return { ...(await startFailoverCluster("check-patroni", "chkp")), state: "" };
  },
  beforeDestroy: async ({ c }) => { for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {}); },
}, (fx) => {
  /** check_patroni on the node's host, against its own API. */
  const check = async (n: ClusterNode, args: string[]): Promise<Check> => {
    const r = await n.host.exec([PYTHON, "-m", "check_patroni", "-e", "http://127.0.0.1:7402", ...args], { env: { PYTHONPATH: VENDOR }, timeoutMs: 30_000 });
    return { code: r.code, text: `${r.stdout}${r.stderr}`.trim() };
  };
  /** Polls until the service answers `want` (reports travel every loop round). */
  const expectState = async (n: ClusterNode, args: string[], want: "OK" | "WARNING" | "CRITICAL" | "UNKNOWN", timeoutMs = 20_000): Promise<Check> => {
    let last: Check | null = null;
    try {
      return await poll(async () => {
        last = await check(n, args);
        return NAMES[last.code] === want ? last : undefined;
      }, { timeoutMs, intervalMs: 300, what: `check_patroni ${args.join(" ")} on ${n.name} to answer ${want}` });
    } catch (e) {
      throw new Error(`${(e as Error).message}; last answer: exit ${(last as Check | null)?.code}: ${(last as Check | null)?.text}`);
    }
  };
  const timeline = async (n: ClusterNode) => String((await n.query("select timeline_id from pg_control_checkpoint()"))[0]!.timeline_id);

  const REPLICAS = ["cluster_has_replica", "-w", "2:", "-c", "1:", "--max-lag", "1MB"];
  /** Both standbys are synchronous (the default durability: quorum commit, ANY 1 of the two). */
  const SYNC = ["cluster_has_replica", "--sync-warning", "2:", "--sync-critical", "1:"];
  /** A perfdata value of a check_patroni answer ("timeline=2"). */
  const perf = (c: Check, key: string) => Number(new RegExp(`(?:^|[ |'])${key}=(\\d+)`).exec(c.text)?.[1] ?? NaN);
  /** One Patroni-named series from the node's /metrics ({scope,name} labels). */
  const metric = async (n: ClusterNode, name: string) => {
    const text = (await n.host.exec([PYTHON, "-c", "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:7402/metrics', timeout=5).read().decode())"])).stdout;
    const line = text.split("\n").find((l) => l.startsWith(`${name}{`));
    if (!line) throw new Error(`${n.name}: no ${name} on /metrics`);
    expect(line).toContain(`name="${n.name}"}`);
    return Number(line.split(" ").at(-1));
  };
  const NODES = ["cluster_node_count", "-w", "3:", "-c", "2:", "--healthy-warning", "3:", "--healthy-critical", "2:"];

  test("healthy cluster: every node_* and cluster_* service is OK (and the wrong role is CRITICAL)", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const tl = await timeline(h.primary);
    fx.state = join(fx.c.scratch, "check_patroni.state");
    for (const n of fx.c.nodes) {
      for (const args of [["node_is_alive"], ["node_is_pending_restart"], ["node_tl_has_changed", "--timeline", tl], ["node_patroni_version", "--patroni-version", "4.0.0"]]) {
        await expectState(n, args, "OK");
      }
    }
    for (const args of [["node_is_primary"], ["node_is_leader"]]) await expectState(h.primary, args, "OK");
    for (const s of h.standbys) {
      for (const args of [["node_is_replica"], ["node_is_replica", "--is-sync"], ["node_is_replica", "--max-lag", "1MB"]]) await expectState(s, args, "OK");
      expect((await check(s, ["node_is_primary"])).code).toBe(2);
      expect((await check(s, ["node_is_leader"])).code).toBe(2);
    }
    expect((await check(h.primary, ["node_is_replica"])).code).toBe(2);
    const any = h.standbys[0]!;
    for (const args of [["cluster_has_leader"], REPLICAS, NODES, ["cluster_is_in_maintenance"], ["cluster_has_scheduled_action"]]) {
      const r = await expectState(any, args, "OK");
      console.log(`check_patroni ${args[0]}: ${r.text.split("\n")[0]}`);
    }
    // Per-member sync marking: both standbys are quorum standbys in /cluster.
    const sync = await expectState(any, SYNC, "OK");
    console.log(`check_patroni cluster_has_replica --sync-warning 2: --sync-critical 1: ${sync.text.split("\n")[0]}`);
    expect(perf(sync, "sync_replica")).toBe(2);
    // Patroni's series names on /metrics agree with what check_patroni reads from /patroni.
    for (const n of fx.c.nodes) {
      const isPrimary = (await check(n, ["node_is_primary"])).code === 0;
      expect(await metric(n, "patroni_primary")).toBe(isPrimary ? 1 : 0);
      expect(await metric(n, "patroni_replica")).toBe(isPrimary ? 0 : 1);
      expect(await metric(n, "patroni_postgres_running")).toBe(perf(await check(n, ["node_is_alive"]), "is_alive"));
      expect(await metric(n, "patroni_postgres_timeline")).toBe(perf(await check(n, ["node_tl_has_changed", "--timeline", tl]), "timeline"));
      expect(await metric(n, "patroni_cluster_unlocked")).toBe(0);
      if (!isPrimary) expect(await metric(n, "patroni_quorum_standby")).toBe(1);
    }
    console.log(`/metrics: patroni_primary, patroni_replica, patroni_postgres_running, patroni_postgres_timeline (= check_patroni's timeline ${tl}) agree on every node`);
    await check(any, ["cluster_config_has_changed", "--state-file", fx.state, "--save"]);
    await expectState(any, ["cluster_config_has_changed", "--state-file", fx.state], "OK");
  }), 180_000);

  test("a lagging standby: node_is_replica --max-lag CRITICAL, cluster_has_replica WARNING", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const lagger = h.standbys[0]!;
    await lagger.query("select pg_wal_replay_pause()");
    try {
      await h.primary.query("create table if not exists chkp_lag (x text)");
      await h.primary.query("insert into chkp_lag select repeat('x', 1000) from generate_series(1, 5000)");
      const r = await expectState(lagger, ["node_is_replica", "--max-lag", "1MB"], "CRITICAL");
      console.log(`lagging standby: node_is_replica --max-lag 1MB: ${r.text.split("\n")[0]}`);
      console.log(`lagging standby: cluster_has_replica: ${(await expectState(lagger, REPLICAS, "WARNING")).text.split("\n")[0]}`);
    } finally {
      await lagger.query("select pg_wal_replay_resume()");
    }
    await expectState(lagger, REPLICAS, "OK", 30_000);
  }), 120_000);

  test("paused: cluster_is_in_maintenance CRITICAL until resumed", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    expect((await pgherd(h.primary, ["pause"])).code).toBe(0);
    try {
      const r = await expectState(h.standbys[0]!, ["cluster_is_in_maintenance"], "CRITICAL");
      console.log(`paused: ${r.text.split("\n")[0]}`);
      await expectState(h.primary, ["node_is_primary"], "OK");
    } finally {
      expect((await pgherd(h.primary, ["resume"])).code).toBe(0);
    }
    await expectState(h.standbys[0]!, ["cluster_is_in_maintenance"], "OK");
  }), 120_000);

  test("a member down: cluster_has_replica and cluster_node_count WARNING, its node_is_alive not OK", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const [up, down] = h.standbys as [ClusterNode, ClusterNode];
    await down.stopAgent();
    try {
      console.log(`member down: cluster_has_replica: ${(await expectState(up, REPLICAS, "WARNING", 60_000)).text.split("\n")[0]}`);
      console.log(`member down: cluster_node_count: ${(await expectState(up, NODES, "WARNING", 60_000)).text.split("\n")[0]}`);
      console.log(`member down: cluster_has_replica --sync-warning 2: ${(await expectState(up, SYNC, "WARNING", 60_000)).text.split("\n")[0]}`);
      expect((await check(down, ["node_is_alive"])).code).not.toBe(0);
    } finally {
      await down.start();
    }
    await waitReplicating(fx.c, 90_000);
    await expectState(up, NODES, "OK", 60_000);
  }), 240_000);

  test("after a failover: node_tl_has_changed CRITICAL on the new primary, the cluster still has a leader", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const tl = await timeline(h.primary);
    await h.primary.host.cut();
    try {
      const neu = await poll(async () => {
        for (const s of h.standbys) if ((await check(s, ["node_is_primary"])).code === 0) return s;
        return undefined;
      }, { timeoutMs: 60_000, intervalMs: 200, what: "a standby to become the primary" });
      const r = await expectState(neu, ["node_tl_has_changed", "--timeline", tl], "CRITICAL");
      console.log(`failover to ${neu.name}: ${r.text.split("\n")[0]}`);
      await expectState(neu, ["cluster_has_leader"], "OK");
      await expectState(neu, ["node_is_leader"], "OK");
      // The old primary is cut off: one healthy replica left.
      await expectState(neu, REPLICAS, "WARNING", 30_000);
    } finally {
      await h.primary.host.heal();
    }
    await waitReplicating(fx.c, 120_000);
  }), 240_000);
});
