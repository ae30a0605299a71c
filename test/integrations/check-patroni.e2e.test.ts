// check_patroni (Dalibo's Nagios plugin for Patroni's REST API, release 2.2.0: see
// vendor/check_patroni/README.md) run against a real three-node pgherd cluster: every node_* and
// cluster_* service is OK in a healthy cluster, and answers the expected WARNING/CRITICAL with a
// lagging standby, while paused, with a member down and after a failover (timeline changed).
// Also the Patroni extras: /cluster marks the quorum standbys (cluster_has_replica --sync-warning
// counts them), and the Patroni-named series on /metrics agree with what check_patroni reads.
//
// Then, on the same cluster, client access seen from a client host: a fourth host runs no pgherd
// and only psql (passwords from a 0600 passfile in PGPASSFILE). Before any [[access]] rule the client
// is refused by every node's pg_hba.conf; `pgherd config set access=…` (through the leader) lets it
// in on every node, the standbys cloned before the rule existed included. A failover follows (the
// primary's host cut off); while the old primary is away a rule for a second role is added, and
// once healed and rewound it lets that role in too, like every other node; the string
// `pgherd dsn --primary` printed before the failover reaches the new primary. Removing the rules
// locks the client out of every node again. Each step is asserted from the client's side: psql's
// exit code and what the server answered (which node, primary or standby, or pg_hba's refusal).
import { expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import { poll, primaryTimeline, type ClusterNode, type PgCluster } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import { pgBins } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { faultRound, logMark, pgherd, rejoinPath, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

const VENDOR = join(import.meta.dir, "vendor", "check_patroni");
const PYTHON = "/usr/bin/python3";
const NAMES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

interface Check { code: number; text: string }

const PASSWORD = "client-host-password-for-access-e2e";
const SQL = "select pg_is_in_recovery(), host(inet_server_addr())";

interface Fx { c: PgCluster; client: Host; passfile: string }

/** psql on the client host (no pgherd there), with only PATH and PGPASSFILE in its environment. */
async function psql(fx: Fx, uri: string): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await fx.client.exec(["env", "-i", `PATH=${process.env.PATH ?? "/usr/bin:/bin"}`, `PGPASSFILE=${fx.passfile}`, join(pgBins!.dir, "psql"), uri, "-XAtc", SQL], { timeoutMs: 20_000 });
  return { ok: r.code === 0, out: r.stdout.trim(), err: r.stderr.trim() };
}

const direct = (n: ClusterNode, user: string) => `postgresql://${user}@${n.host.ip}:5432/postgres?connect_timeout=3`;

/** The client is in on `n`: psql exits 0 and the answer comes from `n` itself, as primary or standby. */
async function loggedIn(fx: Fx, n: ClusterNode, standby: boolean, user = "app"): Promise<void> {
  const r = await waitFor(async () => {
    const l = await psql(fx, direct(n, user));
    if (!l.ok) throw new Error(l.err); // the reason waitFor reports on timeout
    return l;
  }, { timeoutMs: 20_000, intervalMs: 200, what: `${user} from ${fx.client.ip} to log in on ${n.name}` });
  expect(r.out).toBe(`${standby ? "t" : "f"}|${n.host.ip}`);
}

/** The client is refused by `n`'s pg_hba.conf, by name (not a wrong password, not a timeout). */
async function refused(fx: Fx, n: ClusterNode, user = "app"): Promise<void> {
  const hba = `no pg_hba.conf entry for host "${fx.client.ip}", user "${user}", database "postgres"`;
  await waitFor(async () => {
    const l = await psql(fx, direct(n, user));
    if (l.ok || !l.err.includes(hba)) throw new Error(l.ok ? `logged in: ${l.out}` : l.err);
    return true;
  }, { timeoutMs: 20_000, intervalMs: 200, what: `${n.name} to refuse ${user} from ${fx.client.ip} by pg_hba.conf` });
}

async function setAccess(n: ClusterNode, rules: unknown[]): Promise<void> {
  const r = await pgherd(n, ["config", "set", `access=${JSON.stringify(rules)}`]);
  console.log(`config set access on ${n.name}: exit ${r.code}: ${r.text}`);
  expect(r.code).toBe(0);
  expect(r.text).toContain("access");
}

describeCluster("check_patroni against pgherd; client access from a fourth host", {
  start: async () => {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: bash scripts/system-packages.sh installs check_patroni's dependencies`);
    const x = await startFailoverCluster("check-patroni", "chkp");
    try {
      const client = await x.c.addBareHost();
      return { ...x, state: "", client, passfile: join(x.c.scratch, "client.pgpass") };
    } catch (e) {
      await x.c.destroy().catch(() => {});
      throw e;
    }
  },
  ready: async (fx) => {
    writeFileSync(fx.passfile, `*:*:*:*:${PASSWORD}\n`, { mode: 0o600 });
    // The standbys were cloned at start, long before any rule; wait for version 1 of the cluster's document.
    for (const n of fx.c.nodes) {
      await waitFor(async () => {
        const r = await pgherd(n, ["config", "show", "--json"]);
        return r.code === 0 && ((JSON.parse(r.stdout) as { dynamic: { cluster: { version: number } | null } }).dynamic.cluster?.version ?? 0) >= 1;
      }, { timeoutMs: 30_000, intervalMs: 250, what: `${n.name} to store the cluster configuration` });
    }
  },
  startMs: 180_000,
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
  const timeline = async (n: ClusterNode) => String(await primaryTimeline(n));

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
    // Read-only checks: the nodes are asked concurrently, each node's checks one after the other.
    await Promise.all(fx.c.nodes.map(async (n) => {
      for (const args of [["node_is_alive"], ["node_is_pending_restart"], ["node_tl_has_changed", "--timeline", tl], ["node_patroni_version", "--patroni-version", "4.0.0"]]) {
        await expectState(n, args, "OK");
      }
      if (n === h.primary) {
        for (const args of [["node_is_primary"], ["node_is_leader"]]) await expectState(n, args, "OK");
        expect((await check(n, ["node_is_replica"])).code).toBe(2);
        return;
      }
      for (const args of [["node_is_replica"], ["node_is_replica", "--is-sync"], ["node_is_replica", "--max-lag", "1MB"]]) await expectState(n, args, "OK");
      expect((await check(n, ["node_is_primary"])).code).toBe(2);
      expect((await check(n, ["node_is_leader"])).code).toBe(2);
    }));
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
    await Promise.all(fx.c.nodes.map(async (n) => {
      const isPrimary = (await check(n, ["node_is_primary"])).code === 0;
      expect(await metric(n, "patroni_primary")).toBe(isPrimary ? 1 : 0);
      expect(await metric(n, "patroni_replica")).toBe(isPrimary ? 0 : 1);
      expect(await metric(n, "patroni_postgres_running")).toBe(perf(await check(n, ["node_is_alive"]), "is_alive"));
      expect(await metric(n, "patroni_postgres_timeline")).toBe(perf(await check(n, ["node_tl_has_changed", "--timeline", tl]), "timeline"));
      expect(await metric(n, "patroni_cluster_unlocked")).toBe(0);
      if (!isPrimary) expect(await metric(n, "patroni_quorum_standby")).toBe(1);
    }));
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

  test("refused everywhere without a rule; in everywhere with one; after a failover too (the rewound node included, dsn --primary follows); locked out again without it", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const h = await waitReplicating(c, 60_000);
    expect(c.nodes.map((n) => n.host.ip)).not.toContain(fx.client.ip);
    const rule = (user: string, address: string) => ({ database: "postgres", user, address });

    // (1) Passwords, but no rule: every node's pg_hba.conf refuses the client host.
    // `late` is let in only by a rule set while the old primary is cut off (step 3).
    for (const role of ["app", "late"]) {
      const pw = await h.primary.host.exec([BINARY, "passwd", role, "--create", "--config", h.primary.configPath], { input: `${PASSWORD}\n` });
      expect(`${pw.stdout}${pw.stderr}`).toContain(`created role ${role}`);
    }
    for (const n of c.nodes) await refused(fx, n);

    // (2) The rule for the client's address (/32), set on a standby's host (forwarded to the leader):
    // in on the primary and on both standbys, which were cloned before the rule existed.
    await setAccess(h.standbys[0]!, [rule("app", `${fx.client.ip}/32`)]);
    await loggedIn(fx, h.primary, false);
    for (const s of h.standbys) await loggedIn(fx, s, true);
    for (const n of c.nodes) await refused(fx, n, "late");
    // The string an application would use, printed on a cluster host before any failover.
    const d = await pgherd(h.standbys[1]!, ["dsn", "--primary", "--user", "app", "--dbname", "postgres"]);
    expect(d.code).toBe(0);
    const dsn = d.stdout.trim();
    expect(dsn).toContain("target_session_attrs=read-write");
    expect((await psql(fx, dsn)).out).toBe(`f|${h.primary.host.ip}`);

    // (3) Failover: the primary's host cut off. While it is away the rules change (the lab's subnet
    // for `late` too): its pg_hba.conf from before the cut has only app's row. Healed, it rejoins by
    // pg_rewind and must end with the rules the cluster has now.
    let mark = 0;
    const r = await faultRound(c, {
      label: "network cut", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        await p.host.cut();
      },
      restore: async (old, neu) => {
        await setAccess(neu, [rule("app", `${fx.client.ip}/32`), rule("late", c.lab.subnet)]);
        await loggedIn(fx, neu, false, "late");
        await old.host.heal();
      },
    });
    const path = rejoinPath(r.old, mark);
    console.log(`failover ${r.old.name} -> ${r.neu.name}; rejoin of ${r.old.name}:\n  ${path.lines.join("\n  ")}`);
    expect(path.decisions).toEqual(["rewind"]);
    expect(path.rewinds).toEqual(["rewound"]);
    const after = r.healthy;
    expect(after.primary).toBe(r.neu);
    expect(after.standbys).toContain(r.old);
    for (const user of ["app", "late"]) {
      await loggedIn(fx, after.primary, false, user);
      for (const s of after.standbys) await loggedIn(fx, s, true, user);
    }
    expect((await psql(fx, dsn)).out).toBe(`f|${r.neu.host.ip}`);

    // (4) No rule any more: locked out of every node, the rewound one included.
    await setAccess(after.standbys[0]!, []);
    for (const user of ["app", "late"]) for (const n of c.nodes) await refused(fx, n, user);
    const none = await psql(fx, dsn);
    expect(none.ok).toBe(false);
    expect(none.err).toContain(`no pg_hba.conf entry for host "${fx.client.ip}", user "app"`);
  }), 150_000);
});
