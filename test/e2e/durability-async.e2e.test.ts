// Async mode (`pgherd config set durability=async`): no synchronous standbys; a standby may only
// win if it is within failover.max_lag_bytes of the last primary position the voters heard.
// Three database nodes, max_lag_bytes = 64 KiB. Lag is made by dropping PostgreSQL traffic from the
// primary to both standbys (they stop receiving WAL; everything else keeps running):
//  1. lag well within the bound, the primary's host crashes → a standby is promoted; the lost
//     bytes (WAL of the old timeline past the new one's switch point, read with pg_waldump from the
//     dead primary's data dir) and the lost acknowledged rows are measured; bytes ≤ max_lag_bytes;
//  2. lag beyond the bound (padded WAL), the voters stored a floor past both standbys, the primary
//     crashes → no automatic failover, and cluster ls says why.
import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { PgCluster, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { durabilityView, lsnBytes, storedGuard, waitGuarantee } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { blockPostgres, unblockPostgres } from "../helpers/witness.ts";
import { API_TOKEN, describeAnalysis, faultRound, pgherd, secs, Writer } from "../helpers/writer.ts";

const MAX_LAG = 65_536;
/** Acknowledged writes while the standbys receive nothing (≈ 100–200 bytes of WAL each: far below MAX_LAG). */
const LAGGING_WRITES = 40;

async function one(n: ClusterNode, q: string): Promise<string> {
  const rows = await n.query(q);
  return String(Object.values(rows[0] ?? {})[0]);
}

/** The highest receive position of `standbys` (what a successor can hold at most). */
async function bestReceived(standbys: ClusterNode[]): Promise<bigint> {
  const lsns = await Promise.all(standbys.map((s) => one(s, "select pg_last_wal_receive_lsn()::text")));
  return lsns.map(lsnBytes).reduce((a, b) => (a > b ? a : b));
}

describeCluster("async mode: loss bounded by failover.max_lag_bytes", {
  start: async () => ({
    c: await PgCluster.create({ test: "durability-async", tag: "dasync", nodes: 3, defaults: { extra: { api: { token: API_TOKEN }, failover: { max_lag_bytes: MAX_LAG } } } }),
    cfg: undefined as Config | undefined,
    /** Each node's durability line once async is set. */
    lines: [] as string[],
  }),
  ready: (fx) => fx.c.diagnose(async () => {
    const { c, lines } = fx;
    await Promise.all(c.nodes.map((n) => n.start()));
    const { primary } = await c.waitHealthy(90_000);
    await new Writer([]).prepare(primary);
    fx.cfg = loadConfig(c.nodes[0]!.configPath);
    const r = await pgherd(primary, ["config", "set", "durability=async"]);
    console.log(`pgherd config set durability=async: exit ${r.code}: ${r.text}`);
    expect(r.code).toBe(0);
    // Tolerates the doubled prefix reported by the test below, so the measurements still run.
    for (const n of c.nodes) lines.push(`${n.name}: ${await waitGuarantee(n, new RegExp(`^async: (async: )?up to ${MAX_LAG} bytes at risk`), 30_000)}`);
    console.log(lines.join("\n"));
    await waitFor(async () => (await one(primary, "show synchronous_standby_names")) === "", { timeoutMs: 15_000, what: "synchronous_standby_names = '' on the primary" });
  }),
  startMs: 180_000,
}, (fx) => {
  test("cluster ls states the async guarantee once", () => {
    // Each node's line is "<mode>: <guarantee>"; the async guarantee must not repeat the mode.
    for (const l of fx.lines) expect(l).toMatch(new RegExp(`^h\\d: async: up to ${MAX_LAG} bytes at risk`));
  });

  test("lag within the bound: a standby is promoted, loss measured and ≤ max_lag_bytes", () => fx.c.diagnose(async () => {
    let lagAtCrash = 0n;
    let standbys: ClusterNode[] = [];
    let lostBytes = -1n;
    const r = await faultRound(fx.c, {
      label: "async host crash", expect: "other",
      inject: async (p) => {
        standbys = fx.c.nodes.filter((n) => n !== p);
        for (const s of standbys) await blockPostgres(s.host, p.host);
        const from = performance.now();
        // The writer lanes are in faultRound; count through the old primary's table instead.
        const [{ n: base }] = (await p.query("select count(*)::int as n from failover_w")) as [{ n: number }];
        await waitFor(async () => Number((await p.query("select count(*)::int as n from failover_w"))[0]?.n) >= base + LAGGING_WRITES, { timeoutMs: 30_000, what: `${LAGGING_WRITES} writes on ${p.name} while the standbys receive nothing` });
        lagAtCrash = lsnBytes(await one(p, "select pg_current_wal_lsn()::text")) - (await bestReceived(standbys));
        console.log(`standbys cut from ${p.name}'s PostgreSQL for ${secs(performance.now() - from)}: ${lagAtCrash} bytes behind at the crash`);
        expect(lagAtCrash).toBeLessThan(BigInt(MAX_LAG / 2));
        await p.host.killAll("SIGKILL");
      },
      restore: async (old, neu) => {
        lostBytes = await walPastSwitch(old, neu);
        for (const s of standbys) await unblockPostgres(s.host);
        await old.start();
      },
    });
    console.log(describeAnalysis(`async host crash (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost));
    console.log(`async: lost ${r.lost.length} acknowledged rows, ${lostBytes} bytes of WAL (lag at the crash ${lagAtCrash} bytes; bound max_lag_bytes = ${MAX_LAG})`);
    expect(r.analysis.splitBrain).toEqual([]);
    expect(lostBytes).toBeGreaterThan(0n);
    expect(lostBytes).toBeLessThanOrEqual(BigInt(MAX_LAG));
    expect(r.lost.length).toBeGreaterThan(0);
  }), 300_000);

  test("lag beyond the bound: no automatic failover, cluster ls says why", () => fx.c.diagnose(async () => {
    const electMs = fx.cfg!.election.timeout_ms + fx.cfg!.election.jitter_ms;
    const { primary, standbys } = await fx.c.waitHealthy(90_000);
    for (const s of standbys) await blockPostgres(s.host, primary.host);
    await primary.query("create table if not exists async_pad (b text)");
    const received = await bestReceived(standbys);
    // md5 text does not compress: each row is ~1 KiB of WAL.
    await waitFor(async () => {
      await primary.query("insert into async_pad select string_agg(md5(random()::text), '') from generate_series(1, 32) g, generate_series(1, 64) r group by r");
      return lsnBytes(await one(primary, "select pg_current_wal_lsn()::text")) - received > BigInt(3 * MAX_LAG);
    }, { timeoutMs: 60_000, what: `${primary.name} ${3 * MAX_LAG} bytes ahead of its standbys` });
    const lag = lsnBytes(await one(primary, "select pg_current_wal_lsn()::text")) - received;
    // Every voter stored a floor past both standbys (the primary publishes it at most once a second).
    await waitFor(() => fx.c.nodes.every((n) => {
      const f = storedGuard(n)?.floor;
      return f !== undefined && f !== null && lsnBytes(f.lsn) > received;
    }), { timeoutMs: 30_000, what: "every voter to store a floor beyond both standbys" });
    console.log(`standbys ${lag} bytes behind ${primary.name}; stored floors: ${fx.c.nodes.map((n) => `${n.name}=${storedGuard(n)?.floor?.lsn}`).join(", ")}`);
    const killAt = performance.now();
    await primary.host.killAll("SIGKILL");
    // The standby further ahead is refused for the floor; the other one may be refused by it first
    // for being behind it ("position-behind"), so the reason is looked for on either.
    const view = await waitFor(async () => {
      for (const s of standbys) {
        const v = await durabilityView(s);
        if (v.leader === null && /behind the last primary position the cluster must keep/.test(v.note ?? "")) return v;
      }
      return null;
    }, { timeoutMs: 4 * electMs + 30_000, intervalMs: 250, what: `cluster ls on ${standbys.map((s) => s.name).join(" or ")} to say why there is no leader` });
    console.log(`primary dead ${lag} bytes ahead: no failover; cluster ls note: ${view.note}`);
    const until = performance.now() + 3 * electMs;
    while (performance.now() < until) {
      for (const n of standbys) expect(await one(n, "select pg_is_in_recovery()::text")).toBe("true");
      await Bun.sleep(250);
    }
    console.log(`both standbys still standbys ${secs(performance.now() - killAt)} after the primary died`);
  }), 300_000);
});

/**
 * Bytes of WAL the dead primary wrote on the old timeline past the point where the new primary
 * switched timelines (its history file): what the failover lost.
 */
async function walPastSwitch(old: ClusterNode, neu: ClusterNode): Promise<bigint> {
  const files = (await neu.query("select f from pg_ls_dir('pg_wal') f where f like '%.history' order by f desc limit 1"));
  const name = String(files[0]?.f);
  const text = await one(neu, `select pg_read_file('pg_wal/${name}')`);
  const last = text.trim().split("\n").filter((l) => /^\d+\s/.test(l)).at(-1) ?? "";
  const [tli, switchLsn] = last.split(/\s+/);
  if (!tli || !switchLsn) throw new Error(`${neu.name}: unreadable history file ${name}: ${JSON.stringify(text)}`);
  const r = await old.pgTool("pg_waldump", ["-p", `${old.dataDir}/pg_wal`, "-t", tli, "-s", switchLsn], 60_000);
  // Records look like "rmgr: Heap len (rec/tot): 54/ 54, tx: 750, lsn: 0/03000060, prev ...".
  const recs = [...r.stdout.matchAll(/len \(rec\/tot\):\s*\d+\/\s*(\d+),.*?lsn: ([0-9A-F]+\/[0-9A-F]+)/gi)];
  const lastRec = recs.at(-1);
  if (!lastRec) {
    console.log(`pg_waldump past ${switchLsn} on ${old.name}: no records (${r.stderr.trim().slice(0, 200)})`);
    return 0n;
  }
  const end = lsnBytes(lastRec[2]!) + BigInt(lastRec[1]!);
  console.log(`${old.name}'s WAL on timeline ${tli}: ${recs.length} records past the switch point ${switchLsn}, ending at ${lastRec[2]}+${lastRec[1]}`);
  return end - lsnBytes(switchLsn);
}
