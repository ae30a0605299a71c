// Permanent slots across failover and switchover: three namespace hosts with wal_level = logical
// and two [[slots.permanent]]: "cdc" (logical, test_decoding) read by pg_recvlogical on the
// primary's host, and "recv" (physical) read by pg_receivewal on a fourth host over TCP. A host
// crash of the primary, then a switchover, each with a writer running; after each the consumers
// reconnect to the new primary on the same slot. Every row the final primary holds must have been
// decoded (duplicates are allowed and counted), and pg_receivewal's directory must hold every WAL
// segment along the final timeline history.
import { expect, test } from "bun:test";
import { chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterNode } from "../helpers/cluster.ts";
import { PgCluster } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import { PG_OS_USER, pgBins } from "../helpers/pg.ts";
import { waitFor, type Proc } from "../helpers/proc.ts";
import { API_TOKEN, faultRound, waitReplicating, Writer } from "../helpers/writer.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { pgherdCli, restartWithConfig, segmentGaps, segmentsInDir } from "./helpers.ts";
import { addHbaRule } from "../helpers/hba.ts";

const SLOTS = [
  { name: "cdc", type: "logical", plugin: "test_decoding", database: "postgres" },
  { name: "recv", type: "physical" },
];

interface Fx { c: PgCluster; recvHost: Host; dir: string; walDir: string; passfile: string }

async function start(): Promise<Fx> {
  const c = await PgCluster.create({ test: "backup-slots", tag: "bkslot" });
  try {
    // [[slots.permanent]] changes when an agent restarts, and the primary's agent restarts in place
    // (no handover): its PostgreSQL runs on only while the lease it held does, so the lease here
    // outlasts a restart (0.9 s seen from SIGTERM to the new agent's lease). With the default 1 s the
    // watchdog fenced the primary 11 ms after the new agent's lease (CI124, CI136), its consumer went
    // with it, and the slot it held was dropped as one no longer in use.
    const election = { lease_ms: 3000, timeout_ms: 4000 };
    for (let i = 0; i < 3; i++) {
      await c.addNode({ postgres: { wal_level: "logical" }, extra: { api: { token: API_TOKEN }, election, slots: { permanent: SLOTS }, shutdown: { handover: false } } });
    }
    await Promise.all(c.nodes.map((n) => n.start()));
    const h = await c.diagnose(() => c.waitHealthy(90_000));
    await new Writer([]).prepare(h.primary);
    const recvHost = await c.addBareHost();
    const u = await lookupOsUser(PG_OS_USER);
    const dir = join(c.scratch, "consumers");
    const walDir = join(dir, "wal");
    for (const d of [dir, walDir]) {
      mkdirSync(d, { mode: 0o700 });
      chownSync(d, u.uid, u.gid);
    }
    // The operator's own replication role for the consumer (pgherd's is for its peers only: its
    // block rejects it from any other address), and the operator's rule for the consumer host,
    // below pgherd's block (kept on every rewrite).
    const password = "walrecv-test-password-0123456789";
    await h.primary.query(`CREATE ROLE walrecv LOGIN REPLICATION PASSWORD '${password}'`);
    const passfile = join(dir, "pgpass");
    writeFileSync(passfile, `*:*:*:walrecv:${password}\n`, { mode: 0o600 });
    chownSync(passfile, u.uid, u.gid);
    for (const n of c.nodes) await addHbaRule(n, `host replication walrecv ${recvHost.ip}/32 scram-sha-256`);
    return { c, recvHost, dir, walDir, passfile };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

describeCluster("permanent slots: pg_recvlogical and pg_receivewal across failover and switchover", { start }, (fx) => {
  const tool = (t: string) => join(pgBins!.dir, t);
  const consumers: Proc[] = [];
  const logical: string[] = [];

  const startConsumers = async (p: ClusterNode) => {
    const file = join(fx.dir, `cdc-${logical.length + 1}.txt`);
    logical.push(file);
    consumers.push(p.host.spawn([tool("pg_recvlogical"), "-h", p.socketDir, "-p", "5432", "-U", "postgres", "-d", "postgres", "-S", "cdc", "--start", "-f", file, "-F", "1", "-s", "1", "--no-loop"], { user: PG_OS_USER, logFile: `${file}.log` }));
    consumers.push(fx.recvHost.spawn([tool("pg_receivewal"), "-h", p.ip, "-p", "5432", "-U", "walrecv", "-S", "recv", "-D", fx.walDir, "-s", "1", "--no-loop", "-w"], { user: PG_OS_USER, env: { PGPASSFILE: fx.passfile }, logFile: join(fx.dir, `recv-${logical.length}.log`) }));
    await waitFor(async () => (await p.query("select count(*)::int as n from pg_replication_slots where slot_name in ('cdc', 'recv') and active")).at(0)?.n === 2,
      { timeoutMs: 20_000, what: `both consumers streaming from ${p.name}` });
  };
  const stopConsumers = async () => {
    for (const p of consumers.splice(0)) {
      if (!p.exited) p.kill("SIGTERM");
      await p.waitExit(10_000).catch(() => p.kill("SIGKILL"));
    }
  };
  const decodedIds = () => logical.flatMap((f) => {
    let t = "";
    try { t = readFileSync(f, "utf8"); } catch { /* not written yet */ }
    return [...t.matchAll(/table public\.failover_w: INSERT: id\[bigint\]:(\d+)/g)].map((m) => Number(m[1]));
  });

  test("copies on the standbys, consumers keep going after a host crash and a switchover: no change and no WAL segment missing", () => fx.c.diagnose(async () => {
    try {
      const h = await waitReplicating(fx.c, 60_000);
      await startConsumers(h.primary);
      // A logical slot is copied once its consumer moved it past the WAL the standbys were cloned with.
      await h.primary.query("insert into failover_w (id, node) values (999999998, 'marker')");
      for (const s of h.standbys) {
        await waitFor(async () => (await s.query("select count(*)::int as n from pg_replication_slots where slot_name in ('cdc', 'recv')")).at(0)?.n === 2,
          { timeoutMs: 60_000, what: `${s.name}: copies of the permanent slots` });
      }

      const crash = await faultRound(fx.c, { label: "host crash", expect: "other", inject: (p) => p.host.killAll("SIGKILL"), restore: (old) => old.start() });
      console.log(`host crash: ${crash.old.name} -> ${crash.neu.name}`);
      await stopConsumers();
      await startConsumers(crash.neu);

      // To the rewound former primary: a target without its copy of "cdc" yet (it needs the WAL the
      // slot holds and a restart) is refused, and taken once it has one.
      let refused = 0;
      let logFrom = 0;
      const sw = await faultRound(fx.c, {
        label: "switchover", expect: "other", waitMs: 30_000,
        inject: async (p) => {
          const t = crash.old;
          await waitFor(async () => {
            logFrom = statSync(t.logFile).size;
            const r = await pgherdCli(p, ["switchover", "--to", t.name], 100_000);
            if (r.code === 0) return true;
            if (!`${r.stderr}${r.stdout}`.includes("holds no copy of permanent slot(s) cdc")) throw new Error(`switchover: ${r.stderr}${r.stdout}`);
            refused++;
            return false;
          }, { timeoutMs: 120_000, intervalMs: 500, what: `a switchover to ${t.name} once it holds a copy of every permanent slot` });
        },
      });
      console.log(`switchover: ${sw.old.name} -> ${sw.neu.name}, refused ${refused} time(s) before for a missing slot copy`);
      expect(sw.neu.name).toBe(crash.old.name);
      // The target had its copies: it made no permanent slot anew at its own position.
      expect(readFileSync(sw.neu.logFile).subarray(logFrom).toString("utf8")).not.toContain("created permanent");
      await stopConsumers();
      const last = sw.neu;
      await startConsumers(last);

      // Everything written so far reaches the last consumers.
      await last.query("insert into failover_w (id, node) values (999999999, 'marker')");
      await waitFor(() => decodedIds().includes(999999999), { timeoutMs: 30_000, what: "pg_recvlogical to decode the final marker" });
      await last.query("select pg_switch_wal()");
      const [cur] = await last.query("select pg_walfile_name(pg_current_wal_lsn()) as f");
      const segs = () => segmentsInDir(fx.walDir);
      const first = Math.min(...segs().map((s) => s.segno));
      let gaps = { missing: ["(not checked)"], checked: 0, timelines: [] as number[] };
      await waitFor(async () => {
        gaps = await segmentGaps(last, segs(), first);
        return gaps.missing.length === 0;
      }, { timeoutMs: 30_000, intervalMs: 500, what: `pg_receivewal to write every segment before ${String(cur!.f)}` }).catch(() => undefined);
      console.log(`pg_receivewal: ${gaps.checked} segments along timelines ${gaps.timelines.join(" -> ")}, missing: ${gaps.missing.join(", ") || "none"}`);
      expect(gaps.missing).toEqual([]);
      expect(gaps.timelines.length).toBe(3);

      const rows = (await last.query("select id from failover_w")).map((r) => Number(r.id));
      const got = decodedIds();
      const seen = new Set(got);
      const missing = rows.filter((id) => !seen.has(id));
      console.log(`pg_recvlogical: ${rows.length} rows on ${last.name}, ${got.length} decoded inserts (${got.length - seen.size} duplicates), missing: ${missing.length ? missing.join(", ") : "none"}`);
      expect(rows.length).toBeGreaterThan(50);
      expect(missing).toEqual([]);
    } finally {
      await stopConsumers();
    }
  }), 400_000);

  test("a slot removed from the config is dropped on every node and its WAL released; one a consumer holds only once the consumer goes; an operator's slot stays", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const file = join(fx.dir, "cdc-removed.txt");
    const consumer = h.primary.host.spawn([tool("pg_recvlogical"), "-h", h.primary.socketDir, "-p", "5432", "-U", "postgres", "-d", "postgres", "-S", "cdc", "--start", "-f", file, "-s", "1", "--no-loop"], { user: PG_OS_USER, logFile: `${file}.log` });
    consumers.push(consumer);
    const slotsOn = async (n: ClusterNode) => (await n.query("select slot_name from pg_replication_slots where slot_name in ('cdc', 'recv', 'handmade') order by 1")).map((r) => String(r.slot_name));
    try {
      await waitFor(async () => (await h.primary.query("select active from pg_replication_slots where slot_name = 'cdc'")).at(0)?.active === true, { timeoutMs: 20_000, what: "pg_recvlogical on cdc" });
      // A logical slot is copied once its consumer moved it past the WAL the standbys were cloned with.
      await h.primary.query("insert into failover_w (id, node) values (999999997, 'marker')");
      for (const n of fx.c.nodes) {
        await waitFor(async () => (await slotsOn(n)).join() === "cdc,recv", { timeoutMs: 60_000, what: `${n.name}: both permanent slots (copies on a standby)` });
        // The operator's own slot, made by hand on every node (reserving no WAL).
        await n.query("select pg_create_physical_replication_slot('handmade')");
      }
      const [held] = await h.primary.query("select pg_walfile_name(min(restart_lsn)) as f from pg_replication_slots where slot_name in ('cdc', 'recv')");
      const need = String(held!.f);
      // That segment's file may carry an older timeline than the primary's (after a failover): match log and segment only.
      const inPgWal = async () => (await h.primary.query(`select 1 from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$' and substr(name, 9) = '${need.slice(8)}'`)).length > 0;
      await h.primary.query("select pg_switch_wal()");
      await h.primary.query("checkpoint");
      expect(await inPgWal()).toBe(true); // held by the slots: a checkpoint keeps it
      const marks = fx.c.nodes.map((n) => n.mark());
      // Both slots leave the config; [[slots.permanent]] takes effect when an agent restarts.
      for (const n of [...h.standbys, h.primary]) await restartWithConfig(n, (cfg) => delete (cfg.slots as Record<string, unknown>).permanent);
      await waitReplicating(fx.c, 60_000);
      for (const n of h.standbys) await waitFor(async () => (await slotsOn(n)).join() === "handmade", { timeoutMs: 30_000, what: `${n.name}: its copies dropped, handmade kept` });
      await waitFor(async () => (await slotsOn(h.primary)).join() === "cdc,handmade", { timeoutMs: 30_000, what: `${h.primary.name}: recv dropped, cdc (in use) and handmade kept` });
      const pi = fx.c.nodes.indexOf(h.primary);
      await waitFor(() => h.primary.lines(/permanent slot cdc was removed .* a consumer is connected to it/, marks[pi]).length === 1, { timeoutMs: 10_000, what: "the primary's log to say why cdc stays" });
      expect((await slotsOn(h.primary)).join()).toBe("cdc,handmade"); // still there a few rounds later
      consumer.kill("SIGTERM");
      await consumer.waitExit(10_000);
      await waitFor(async () => (await slotsOn(h.primary)).join() === "handmade", { timeoutMs: 30_000, what: `${h.primary.name}: cdc dropped once its consumer left` });
      for (const n of fx.c.nodes) expect(await slotsOn(n)).toEqual(["handmade"]);
      expect(h.primary.lines(/dropped permanent slot (cdc|recv)/, marks[pi]).length).toBe(2);
      // The WAL those slots held goes at the next checkpoints.
      let rounds = 0;
      await waitFor(async () => {
        rounds++;
        await h.primary.query("select pg_switch_wal()");
        await h.primary.query("checkpoint");
        return !(await inPgWal());
      }, { timeoutMs: 30_000, intervalMs: 200, what: `the primary to remove ${need}, the oldest segment the removed slots held` });
      console.log(`removed slots: dropped on ${fx.c.nodes.length} nodes; ${need} (held by them) recycled after ${rounds} segment switches; handmade kept everywhere`);
    } finally {
      await stopConsumers();
    }
  }), 120_000);
});
