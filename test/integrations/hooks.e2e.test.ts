// [hooks] on a real three-node cluster (namespace hosts, real PostgreSQL, the compiled agent):
// one script is every hook. It records its call and then hangs (sleep), so every callback is
// killed at the 1.5 s timeout; as pre_promote it answers at once, vetoing when the test says so.
// Checked: the old and the new primary both see on_role_change with the right variables for a
// switchover and for a failover; hanging hooks leave the failover within its configured bound; a
// vetoing pre_promote makes the other standby take over. [sentry] points every agent at a
// receiver on its own host's loopback: the new primary reports the failover, well-formed, tagged,
// with no secret, token or password in any payload.
import { expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { PgCluster, poll, primaryTimeline, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { API_TOKEN, boundsOf, describeAnalysis, faultRound, pgherd, waitReplicating, Writer } from "../helpers/writer.ts";
import { parseEnvelope } from "./envelope.ts";

const SENTRY_PORT = 9900;
const SENTRY_KEY = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

const TIMEOUT_MS = 1500;

const SCRIPT = (dir: string) => `#!/bin/sh
d=${dir}
printf '%s|%s|%s|%s|%s|%s|%s|%s|%s,%s,%s\\n' "$PGHERD_NODE" "$PGHERD_ACTION" "$PGHERD_ROLE" "$PGHERD_OLD_ROLE" "$PGHERD_NEW_ROLE" "$PGHERD_TIMELINE" "$PGHERD_LEADER" "$PGHERD_CLUSTER" "$1" "$2" "$3" >> "$d/calls.txt"
if [ "$PGHERD_ACTION" = pre_promote ]; then
  if [ -e "$d/veto-$PGHERD_NODE" ]; then touch "$d/vetoed-$PGHERD_NODE"; echo "vetoed by the test"; exit 1; fi
  if [ -e "$d/after-$PGHERD_NODE" ] && [ ! -e "$d/vetoed-$(cat "$d/after-$PGHERD_NODE")" ]; then echo "not before the other standby vetoed"; exit 1; fi
  exit 0
fi
echo "recorded, now hanging"
exec sleep 100000
`;

interface Call { node: string; action: string; role: string; old: string; neu: string; tl: number | null; leader: string; cluster: string; args: string; line: number }

async function start() {
  const c = await PgCluster.create({ test: "hooks", tag: "hooks", nodes: 0 });
  try {
    // Where the hooks write (any agent user may); the hook itself in a directory only root may
    // write: an agent runs no program that another user could change (src/hooks/trusted-path.ts).
    const dir = join(c.scratch, "hooks");
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    const bin = join(c.scratch, "hook-bin");
    mkdirSync(bin, { mode: 0o755 });
    const hook = join(bin, "hook.sh");
    writeFileSync(hook, SCRIPT(dir), { mode: 0o755 });
    const hooks = { on_role_change: hook, on_start: hook, on_stop: hook, pre_promote: hook, timeout_ms: TIMEOUT_MS };
    const sentry = { dsn: `http://${SENTRY_KEY}@127.0.0.1:${SENTRY_PORT}/42` };
    for (let i = 0; i < 3; i++) {
      const n = await c.addNode({ extra: { api: { token: API_TOKEN }, hooks, sentry } });
      const receiver = n.host.spawn([process.execPath, join(import.meta.dir, "sentry-receiver.ts"), String(SENTRY_PORT), join(dir, `sentry-${n.name}.jsonl`)]);
      await receiver.waitForLine(/listening/, 10_000);
    }
    await Promise.all(c.nodes.map((n) => n.start()));
    const healthy = await c.diagnose(() => c.waitHealthy(90_000));
    await new Writer([]).prepare(healthy.primary);
    const cfg = loadConfig(c.nodes[0]!.configPath);
    return { c, dir, bounds: boundsOf(cfg) };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

describeCluster("hooks", {
  start,
  beforeDestroy: async ({ c }) => { for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {}); },
}, (fx) => {
  const calls = (): Call[] => {
    const f = join(fx.dir, "calls.txt");
    if (!existsSync(f)) return [];
    return readFileSync(f, "utf8").trim().split("\n").map((l, line) => {
      const [node, action, role, old, neu, tl, leader, cluster, args] = l.split("|");
      return { node: node!, action: action!, role: role!, old: old!, neu: neu!, tl: tl ? Number(tl) : null, leader: leader!, cluster: cluster!, args: args!, line };
    });
  };
  const waitCall = (what: string, since: number, match: (c: Call) => boolean, timeoutMs = 30_000) =>
    poll(async () => calls().find((c) => c.line >= since && match(c)), { timeoutMs, intervalMs: 100, what });
  const sentryRaw = (n: ClusterNode): Array<{ path: string; auth: string; body: string }> => {
    const f = join(fx.dir, `sentry-${n.name}.jsonl`);
    return existsSync(f) ? readFileSync(f, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
  };
  const sentryEvents = (n: ClusterNode) => sentryRaw(n).map((r) => parseEnvelope(r.body));
  const timeline = primaryTimeline;
  const history = (n: ClusterNode) => JSON.parse(readFileSync(join(n.stateDir, "history.json"), "utf8")) as Array<{ kind: string; node: string; reason: string }>;

  /** on_role_change on the new primary (replica → primary, new timeline, itself as leader) and on the old one (→ `oldTo`). */
  const expectRoleChanges = async (since: number, old: ClusterNode, neu: ClusterNode, oldTo: string) => {
    const tl = await timeline(neu);
    const promoted = await waitCall(`on_role_change replica -> primary on ${neu.name}`, since, (c) => c.node === neu.name && c.action === "on_role_change" && c.neu === "primary");
    expect(promoted).toMatchObject({ role: "primary", old: "replica", leader: neu.name, cluster: "e2e", args: "on_role_change,primary,e2e", tl });
    const demoted = await waitCall(`on_role_change primary -> ${oldTo} on ${old.name}`, since, (c) => c.node === old.name && c.action === "on_role_change" && c.old === "primary");
    expect(demoted).toMatchObject({ role: oldTo, neu: oldTo, args: `on_role_change,${oldTo},e2e` });
    return { promoted, demoted };
  };

  test("switchover: on_role_change on the old and the new primary; the hanging hooks are killed at the timeout", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const target = h.standbys[0]!;
    const since = calls().length;
    // Replaying the marker row is not yet streaming in the leader's view (the target's next report
    // says so): the leader refuses with "not streaming" until then; right after a WAL switch (the
    // clones' base backups end with one) its last report may still show it a segment behind.
    // Retry those two refusals only.
    const r = await poll(async () => {
      const cli = await pgherd(h.primary, ["switchover", "--to", target.name]);
      return cli.code !== 0 && /is not streaming from the primary|lags .* behind/.test(cli.text) ? undefined : cli;
    }, { timeoutMs: 15_000, intervalMs: 250, what: `the leader to see ${target.name} streaming and accept the switchover` });
    expect(r.code).toBe(0);
    await expectRoleChanges(since, h.primary, target, "demoted");
    await waitCall(`on_role_change demoted -> replica on ${h.primary.name}`, since, (c) => c.node === h.primary.name && c.action === "on_role_change" && c.neu === "replica");
    const mine = calls().filter((c) => c.line >= since);
    expect(mine.filter((c) => c.node === target.name && c.action === "pre_promote").length).toBe(1);
    // The old primary: stopped for the handover, demoted once it handed the leadership on, started as a replica.
    expect(mine.filter((c) => c.node === h.primary.name).map((c) => `${c.action}:${c.role}`)).toEqual(["on_stop:primary", "on_role_change:demoted", "on_start:replica", "on_role_change:replica"]);
    await poll(async () => history(target).some((e) => e.kind === "hook" && e.node === target.name && e.reason === `hook on_role_change (replica -> primary) killed after the ${TIMEOUT_MS} ms timeout`),
      { timeoutMs: 10_000, intervalMs: 200, what: "the killed on_role_change in the history" });
  }), 120_000);

  test("failover (primary cut off): on_role_change on both; hanging hooks leave the failover bound unchanged", () => fx.c.diagnose(async () => {
    const since = calls().length;
    const r = await faultRound(fx.c, { label: "network cut", expect: "other", inject: (p) => p.host.cut(), restore: (old) => old.host.heal() });
    console.log(describeAnalysis(`failover with hanging hooks (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost) + ` (bound ${fx.bounds.failoverMs} ms)`);
    expect(r.analysis.recoveryMs).not.toBeNull();
    expect(r.analysis.recoveryMs!).toBeLessThanOrEqual(fx.bounds.failoverMs);
    await expectRoleChanges(since, r.old, r.neu, "demoted");
    // After the heal the old primary follows: demoted -> replica.
    await waitCall(`on_role_change demoted -> replica on ${r.old.name}`, since, (c) => c.node === r.old.name && c.action === "on_role_change" && c.old === "demoted" && c.neu === "replica");
    // Sentry: the new primary reported the failover.
    const failover = await poll(async () => sentryEvents(r.neu).find((e) => e.event.tags?.kind === "failover" && e.event.extra?.newPrimary === r.neu.name),
      { timeoutMs: 10_000, intervalMs: 200, what: `a failover event at ${r.neu.name}'s Sentry receiver` });
    expect(failover.event).toMatchObject({
      level: "warning", logger: "pgherd", server_name: r.neu.name, environment: "production",
      tags: { cluster: "e2e", node: r.neu.name, role: "primary", kind: "failover" },
      extra: { oldPrimary: r.old.name, newPrimary: r.neu.name },
    });
    expect(Number(failover.event.tags.term)).toBeGreaterThan(0);
    console.log(`sentry: ${r.neu.name} reported "${failover.event.message.formatted}"`);
    // The old primary reported its rejoin to its own receiver (same host: the cut never hid it).
    await poll(async () => sentryEvents(r.old).find((e) => e.event.tags?.kind === "rejoin" && e.event.tags?.node === r.old.name),
      { timeoutMs: 10_000, intervalMs: 200, what: `a rejoin event at ${r.old.name}'s Sentry receiver` });
    const secrets = [fx.c.secret, API_TOKEN, ...fx.c.nodes.flatMap((n) => [n.secrets().replPassword, n.secrets().monitorPassword])];
    for (const n of fx.c.nodes) {
      for (const raw of sentryRaw(n)) {
        expect(raw.path).toBe("/api/42/envelope/");
        expect(raw.auth).toContain(`sentry_key=${SENTRY_KEY}`);
        for (const s of secrets) expect(raw.body.includes(s)).toBe(false);
      }
    }
  }), 240_000);

  test("a vetoing pre_promote makes the other standby take over", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const [x, y] = h.standbys as [ClusterNode, ClusterNode];
    // x always vetoes; y refuses until x has (so x is asked first whoever wins the first election).
    writeFileSync(join(fx.dir, `veto-${x.name}`), "");
    writeFileSync(join(fx.dir, `after-${y.name}`), x.name);
    try {
      // x behind y at the cut (CI167: x had not received the primary's last WAL, could never win,
      // and y, the leader term after term, vetoed: no primary for a minute). x catches up from y's
      // server (cascading) while y leads and checks pre_promote, then wins in its turn.
      await x.host.cutFrom(h.primary.host);
      await h.primary.query("create table if not exists veto_lag (id serial primary key, at timestamptz default now())");
      await h.primary.query("insert into veto_lag (at) select now() from generate_series(1, 100)");
      const lsn = String((await h.primary.query("select pg_current_wal_lsn()::text as l"))[0]?.l);
      await poll(async () => ((await y.query(`select pg_last_wal_receive_lsn() >= '${lsn}'::pg_lsn as ok`).catch(() => []))[0]?.ok === true ? true : undefined),
        { timeoutMs: 15_000, intervalMs: 50, what: `${y.name} to receive the primary's WAL up to ${lsn}` });
      const behind = (await x.query(`select pg_last_wal_receive_lsn() < '${lsn}'::pg_lsn as b`))[0]?.b;
      expect(behind).toBe(true);
      const since = calls().length;
      const t0 = performance.now();
      await h.primary.host.cut();
      await x.host.healFrom(h.primary.host);
      await poll(async () => ((await y.query("select pg_is_in_recovery() as r").catch(() => []))[0]?.r === false ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 100, what: `${y.name} to become the primary` });
      console.log(`pre_promote veto: ${y.name} primary ${((performance.now() - t0) / 1000).toFixed(2)} s after the cut (${x.name} vetoed)`);
      expect(existsSync(join(fx.dir, `vetoed-${x.name}`))).toBe(true);
      expect((await x.query("select pg_is_in_recovery() as r"))[0]?.r).toBe(true);
      const asked = calls().filter((c) => c.line >= since && c.action === "pre_promote");
      expect(asked.some((c) => c.node === x.name)).toBe(true);
      expect(calls().some((c) => c.line >= since && c.node === x.name && c.neu === "primary" && c.action === "on_role_change")).toBe(false);
      // history.json is written off the agent's event loop: waited for, not read at once.
      await poll(async () => history(x).some((e) => e.kind === "hook" && e.node === x.name && /^hook pre_promote \(replica -> primary\) exit 1/.test(e.reason)) || undefined,
        { timeoutMs: 5_000, intervalMs: 100, what: `${x.name}'s history to record the veto` });
      expect(x.lines(/resign.*pre_promote exit 1/).length).toBeGreaterThan(0);
      await h.primary.host.heal();
      const after = await waitReplicating(fx.c, 120_000);
      expect(after.primary).toBe(y);
    } finally {
      for (const f of [`veto-${x.name}`, `after-${y.name}`, `vetoed-${x.name}`]) rmSync(join(fx.dir, f), { force: true });
      await x.host.healFrom(h.primary.host).catch(() => {});
      await h.primary.host.heal().catch(() => {});
    }
  }), 240_000);
});
