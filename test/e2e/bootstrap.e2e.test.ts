// Automatic cluster bootstrap with real agents and real PostgreSQL, one network namespace per
// host: three empty hosts become 1 primary + 2 streaming standbys; every host's `cluster ls`
// agrees; pg_hba admits replication from peers only; restarting one agent changes nothing for
// clients; restarting everything re-clones nothing and loses no row; a fourth host (auto_join) joins by
// itself; a standalone server is adopted. The steps share one cluster and run in order; the two
// adoptions, each on a cluster of its own, run at the same time.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt } from "../../scripts/build.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { clusterSkipReason, lineTime, PgCluster, poll, shuffled, type ClusterLs, type ClusterNode, type Healthy } from "../helpers/cluster.ts";
import { requireReal } from "../helpers/require.ts";
import type { Host } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";

requireReal("bootstrap e2e", clusterSkipReason());

const FULL_CLUSTER_MS = 60_000;
const REPL_USER = "pgherd_repl";

const count = async (n: ClusterNode): Promise<number> => Number((await n.query("select count(*)::int as n from e2e_rows"))[0]?.n);
const roleOf = (ls: ClusterLs, name: string) => ls.view.members.find((m) => m.name === name)?.role;

/**
 * IDENTIFY_SYSTEM as the replication user, from `from`'s namespace to `target`'s PostgreSQL:
 * `replication=true` is what a standby (pg_basebackup, walreceiver) opens and matches the
 * `replication` pg_hba keyword; `replication=database` matches the database name instead.
 */
function identifySystem(from: Host, target: ClusterNode, password: string, mode: "true" | "database") {
  return from.exec(
    ["psql", "-X", "-At", `host=${target.ip} port=5432 user=${REPL_USER} replication=${mode} dbname=postgres connect_timeout=5`, "-c", "IDENTIFY_SYSTEM"],
    { env: { PGPASSWORD: password }, timeoutMs: 15_000 },
  );
}

describe("automatic bootstrap with real PostgreSQL", () => {
  let c: PgCluster;
  const adopt: PgCluster[] = [];
  let healthy: Healthy | undefined;
  let pgUid: { uid: number; gid: number };
  const step = <T>(fn: () => Promise<T>) => c.diagnose(fn);
  /** The steps build on each other: say so instead of a TypeError when the first one failed. */
  const cluster = (): Healthy => {
    if (!healthy) throw new Error("needs the healthy cluster of the first step, which failed");
    return healthy;
  };
  const sortSlots = (xs: { name: string; active: boolean }[]) => [...xs].sort((a, b) => a.name.localeCompare(b.name));

  beforeAll(async () => {
    ensureBuilt();
    pgUid = await lookupOsUser("postgres");
    // [shutdown] handover off: these tests restart agents in place (the handover on stop has its own file, agent-handover.e2e).
    c = await PgCluster.create({ test: "bootstrap", nodes: 3, tag: "boot", defaults: { extra: { election: { auto_join: true }, shutdown: { handover: false } } } });
  }, 120_000);

  afterAll(async () => {
    const errors: string[] = [];
    for (const x of [...adopt, c]) await x?.destroy().catch((e: Error) => errors.push(e.message));
    for (const x of [c, ...adopt]) if (x) console.log(`logs: ${x.artifacts}`);
    if (errors.length) throw new Error(errors.join("; "));
  }, 120_000);

  test("three empty hosts become one primary and two standbys streaming from it", () => step(async () => {
    const t0 = performance.now();
    await Promise.all(c.nodes.map((n) => n.start()));
    const h = await c.waitHealthy(FULL_CLUSTER_MS);
    console.log(`full cluster (1 primary + 2 streaming standbys) ${((performance.now() - t0) / 1000).toFixed(1)} s after starting the agents; primary ${h.primary.name}`);

    // waitHealthy checked all of this; spelled out here so a regression reads as what it breaks.
    const p = h.states.find((s) => s.node === h.primary)!;
    expect(p.replication.map((r) => [r.clientAddr, r.state]).sort()).toEqual(h.standbys.map((s) => [s.ip, "streaming"]).sort());
    expect(sortSlots(p.slots)).toEqual(sortSlots(h.standbys.map((s) => ({ name: `pgherd_${s.nodeId()}`, active: true }))));
    for (const s of h.states.filter((x) => x !== p)) {
      expect(s.receiver).toEqual({ status: "streaming", senderHost: h.primary.ip, slot: `pgherd_${s.node.nodeId()}` });
    }
    await h.primary.query("create table e2e_rows (id int primary key, note text); insert into e2e_rows values (1, 'first')");
    for (const s of h.standbys) {
      await waitFor(async () => (await s.query("select note from e2e_rows where id = 1"))[0]?.note === "first",
        { timeoutMs: 15_000, what: `row 1 on ${s.name}` });
    }
    healthy = h;
  }), 120_000);

  test("cluster ls on every host agrees on the roles and the leader", () => step(async () => {
    const h = cluster();
    const want = (n: ClusterNode) => (n === h.primary ? "primary" : "standby");
    const views = await poll(async () => {
      const ls = await Promise.all(c.nodes.map((n) => n.clusterLs()));
      for (const [i, v] of ls.entries()) {
        const got = v.view.members.map((m) => `${m.name}=${m.role}/${m.state}`).join(" ");
        const ok = v.exitCode === 0 && v.source === "leader" && v.view.leader === ls[0]!.view.leader &&
          c.nodes.every((n) => roleOf(v, n.name) === want(n)) &&
          v.view.members.every((m) => m.state === (m.role === "primary" ? "running" : "streaming"));
        if (!ok) throw new Error(`${c.nodes[i]!.name}: exit ${v.exitCode}, source ${v.source}, leader ${v.view.leaderName}: ${got}`);
      }
      return ls;
    }, { timeoutMs: 15_000, what: "the same roles and leader in cluster ls on every host" });
    const leaderId = h.primary.nodeId();
    for (const v of views) {
      expect(v.view.leader).toBe(leaderId);
      expect(v.view.primary).toBe(leaderId);
      expect(v.view.members.map((m) => [m.name, m.role, m.voter]).sort()).toEqual(c.nodes.map((n) => [n.name, want(n), true]).sort());
    }
  }), 60_000);

  test("pg_hba on the primary admits replication from the peers only", () => step(async () => {
    const h = cluster();
    const outsider = await c.addBareHost();
    const { replPassword } = h.primary.secrets();
    const physical = await identifySystem(outsider, h.primary, replPassword, "true");
    expect(physical.code).not.toBe(0);
    expect(physical.stderr).toContain(`pg_hba.conf rejects replication connection for host "${outsider.ip}", user "${REPL_USER}"`);
    const logical = await identifySystem(outsider, h.primary, replPassword, "database");
    expect(logical.code).not.toBe(0);
    expect(logical.stderr).toContain(`pg_hba.conf rejects connection for host "${outsider.ip}", user "${REPL_USER}", database "postgres"`);

    const sysid = h.states[0]!.systemId!;
    for (const s of h.standbys) {
      for (const mode of ["true", "database"] as const) {
        const ok = await identifySystem(s.host, h.primary, replPassword, mode);
        expect({ from: s.name, mode, code: ok.code, stderr: ok.stderr.trim() }).toEqual({ from: s.name, mode, code: 0, stderr: "" });
        expect(ok.stdout.split("|")[0]).toBe(sysid);
      }
    }
  }), 60_000);

  test("restarting the primary's agent alone (no handover) changes nothing for clients", () => step(async () => {
    const p = cluster().primary;
    const session = p.session();
    try {
      const backend = await session.backendPid();
      await session.query("insert into e2e_rows values (2, 'before agent restart')");
      const postmaster = p.postmasterPid();
      expect(postmaster).not.toBeNull();
      const marks = c.nodes.map((n) => n.mark());

      await p.stopAgent();
      expect(p.postmasterPid()).toBe(postmaster); // SIGTERM leaves PostgreSQL running
      const t0 = performance.now();
      await p.start();
      await waitFor(() => p.lines(/\[\w+:pg\] PostgreSQL role: primary/, marks[c.nodes.indexOf(p)]).length > 0,
        { timeoutMs: 30_000, what: `${p.name}'s new agent to report its server as the primary` });
      const again = await c.waitHealthy(30_000);
      // The watchdog fences the primary lease_ms after the old agent's last heartbeat: the margin a restart has.
      const mark = marks[c.nodes.indexOf(p)]!;
      const down = p.lines(/SIGTERM: stopping the agent/, mark)[0];
      const back = p.lines(/leading term \d+ with a valid lease/, mark)[0];
      const gap = down && back ? `${lineTime(back).getTime() - lineTime(down).getTime()} ms from SIGTERM to the new agent's lease` : "lease gap not logged";
      console.log(`agent restart on the primary: back to 1 primary + 2 streaming in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${gap}`);

      expect(again.primary).toBe(p);
      expect(p.postmasterPid()).toBe(postmaster);
      expect(await session.backendPid()).toBe(backend);
      await session.query("insert into e2e_rows values (3, 'after agent restart')");
      // No agent acted on its server meanwhile.
      const acted = c.nodes.flatMap((n, i) => n.lines(/decision: |fencing PostgreSQL/, marks[i]).map((l) => `${n.name}: ${l}`));
      expect(acted).toEqual([]);
      healthy = again;
    } finally {
      await session.close();
    }
  }), 90_000);

  test("restarting every agent and server: same cluster, no clone, no row lost", () => step(async () => {
    const { primary: p, standbys } = cluster();
    await p.query("insert into e2e_rows select g, 'bulk' from generate_series(100, 1099) g");
    const rowsBefore = await count(p);
    for (const s of standbys) await waitFor(async () => (await count(s)) === rowsBefore, { timeoutMs: 15_000, what: `${rowsBefore} rows on ${s.name}` });
    const sysid = await p.systemIdentifier();

    await c.stopAgents();
    for (const n of [p, ...standbys]) {
      const r = await n.pgCtl("stop", "-m", "fast", "-w", "-t", "60");
      expect({ node: n.name, code: r.code, stderr: r.stderr.trim() }).toEqual({ node: n.name, code: 0, stderr: "" });
    }
    expect(c.nodes.filter((n) => n.postmasterPid() !== null).map((n) => n.name)).toEqual([]);

    const marks = c.nodes.map((n) => n.mark());
    const { order, seed } = shuffled(c.nodes);
    console.log(`full restart: agents started in the order ${order.map((n) => n.name).join(", ")} (E2E_SEED=${seed} replays it)`);
    const t0 = performance.now();
    await c.start(order);
    const h = await c.waitHealthy(90_000);
    console.log(`full restart: 1 primary (${h.primary.name}) + 2 streaming ${((performance.now() - t0) / 1000).toFixed(1)} s after the first agent started`);

    const clones = c.nodes.flatMap((n, i) => n.lines(/decision: clone|cloning from/, marks[i]).map((l) => `${n.name}: ${l}`));
    expect(clones).toEqual([]);
    for (const n of c.nodes) expect({ node: n.name, sysid: await n.systemIdentifier() }).toEqual({ node: n.name, sysid });
    expect(await count(h.primary)).toBe(rowsBefore);
    await h.primary.query("insert into e2e_rows values (4, 'after full restart')");
    for (const s of h.standbys) await waitFor(async () => (await count(s)) === rowsBefore + 1, { timeoutMs: 15_000, what: `${rowsBefore + 1} rows on ${s.name}` });
    healthy = h;
  }), 150_000);

  test("a fourth host added later clones, streams and becomes a voter by itself ([election] auto_join)", () => step(async () => {
    const before = cluster();
    const rows = await count(before.primary);
    const postmaster = before.primary.postmasterPid();
    expect(postmaster).not.toBeNull();
    const marks = c.nodes.map((n) => n.mark());
    const n4 = await c.addNode();
    const t0 = performance.now();
    await n4.start();
    const h = await c.waitHealthy(90_000);
    console.log(`fourth node ${n4.name}: streaming ${((performance.now() - t0) / 1000).toFixed(1)} s after its agent started`);
    expect(h.standbys).toContain(n4);
    expect(n4.lines(/decision: clone from/)).toHaveLength(1);
    await waitFor(async () => (await count(n4)) === rows, { timeoutMs: 15_000, what: `${rows} rows on ${n4.name}` });

    const ls = await poll(async () => {
      const v = await n4.clusterLs();
      const got = v.view.members.map((m) => `${m.name}=${m.role}/${m.state}/voter:${m.voter}`).join(" ");
      const ok = v.view.members.length === 4 && v.view.members.every((m) => m.voter) && v.view.members.find((x) => x.name === n4.name)?.state === "streaming";
      if (!ok) throw new Error(got);
      return v;
    }, { timeoutMs: 20_000, what: `cluster ls on ${n4.name} to list 4 voters, ${n4.name} streaming` });
    expect(ls.view.members.map((m) => [m.name, m.voter]).sort()).toEqual(c.nodes.map((n) => [n.name, true]).sort());
    // Growing the voter set must not disturb the running primary.
    expect(h.primary).toBe(before.primary);
    expect(h.primary.postmasterPid()).toBe(postmaster);
    expect(c.nodes.flatMap((n, i) => n.lines(/stepped-down|fencing PostgreSQL/, marks[i]).map((l) => `${n.name}: ${l}`))).toEqual([]);
    healthy = h;
  }), 150_000);

  // bootstrap.from_existing on h1, whose data dir holds the operator's standalone server; h2, h3 empty.
  const adoption = (running: boolean) => async () => {
    const a = await PgCluster.create({ test: `bootstrap-adopt-${running ? "running" : "stopped"}`, tag: running ? "adoptrun" : "adoptstop" });
    adopt.push(a);
    // postgres.socket_dir names where the operator's server has its socket: the agent connects there.
    const n1 = await a.addNode({ fromExisting: true, socketDir: "separate" });
    const rest = [await a.addNode(), await a.addNode()];
    await a.diagnose(async () => {
      // The operator's server: initdb and server defaults, started by hand, a table with rows.
      const init = await n1.pgTool("initdb", ["-D", n1.dataDir, "-U", "postgres", "--no-instructions"], 120_000);
      expect({ code: init.code, stderr: init.stderr }).toMatchObject({ code: 0 });
      const log = join(n1.dir, "standalone.log");
      writeFileSync(log, "");
      chownSync(log, pgUid.uid, pgUid.gid);
      const started = await n1.pgCtl("start", "-w", "-t", "60", "-l", log, "-o", `-c unix_socket_directories='${n1.socketDir}'`);
      expect({ code: started.code, stderr: started.stderr.trim() }).toEqual({ code: 0, stderr: "" });
      await n1.query("create table precious (id int primary key, v text); insert into precious select g, md5(g::text) from generate_series(1, 500) g");
      const sysid = await n1.systemIdentifier();
      if (!running) expect((await n1.pgCtl("stop", "-m", "fast", "-w")).code).toBe(0);
      const pm = n1.postmasterPid();

      await Promise.all(a.nodes.map((n) => n.start()));
      const h = await a.waitHealthy(60_000, {
        // Stopping the running server it was told to adopt (or creating another cluster) is the bug, not a delay.
        abortIf: () => {
          const bad = n1.lines(running ? /fencing PostgreSQL|decision: (initdb|fence)/ : /decision: initdb/)[0];
          return bad && `${n1.name}'s agent stopped or replaced the server it was told to adopt (bootstrap.from_existing): ${bad}`;
        },
      });
      expect(h.primary).toBe(n1);
      expect(await n1.systemIdentifier()).toBe(sysid);
      if (running) console.log(`adopted running server: postmaster ${n1.postmasterPid() === pm ? "kept" : `restarted by the agent (pid ${pm} -> ${n1.postmasterPid()})`}`);
      expect(a.nodes.flatMap((n) => n.lines(/decision: initdb/))).toEqual([]);
      for (const s of rest) {
        await waitFor(async () => Number((await s.query("select count(*)::int as n from precious"))[0]?.n) === 500,
          { timeoutMs: 20_000, what: `table precious (500 rows) on ${s.name}` });
      }
    });
  };

  // Each adoption has its own lab and cluster: the two run at the same time (test.concurrent).
  test.concurrent("adoption of a RUNNING standalone server: it becomes the primary, its table reaches every standby", adoption(true), 150_000);
  test.concurrent("adoption of a stopped standalone server: it becomes the primary, its table reaches every standby", adoption(false), 150_000);
});
