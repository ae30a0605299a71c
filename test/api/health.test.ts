// The health decision table (pure): Patroni's paths and parameters against the node states
// that matter. The live-cluster test checks the same answers end to end.
import { describe, expect, test } from "bun:test";
import { checkHealth, parseHealthQuery, type HealthQuery } from "../../src/api/health.ts";
import { parseLag } from "../../src/api/lag.ts";
import { renderMetrics } from "../../src/api/metrics.ts";
import { truthfulGuarantee } from "../../src/core/durability.ts";
import { healthFacts, type HealthFacts, type PgFacts } from "../../src/api/source.ts";
import { nodeStatus, standbyPg } from "./fake-source.ts";
import { parseProm } from "./prom.ts";

const pg = (over: Partial<PgFacts> = {}): PgFacts => ({
  up: true, running: true, inRecovery: true, streaming: true, lagBytes: 0, receiveLagBytes: 0, sync: false, quorum: false, ...over,
});
const facts = (over: Partial<HealthFacts> = {}): HealthFacts => ({ leading: false, pg: pg(), tags: { nofailover: false, noloadbalance: false }, ...over });
const q = (s = ""): HealthQuery => {
  const r = parseHealthQuery(new URLSearchParams(s));
  if (typeof r === "string") throw new Error(r);
  return r;
};

const primary = facts({ leading: true, pg: pg({ inRecovery: false, streaming: false, lagBytes: null }) });
const primaryNoLease = facts({ leading: false, pg: pg({ inRecovery: false, streaming: false, lagBytes: null }) });
const leaderNotUp = facts({ leading: true, pg: pg({ up: false, inRecovery: null, streaming: false }) });
const standby = facts();
const lagging = facts({ pg: pg({ lagBytes: 20 * 1024 * 1024, receiveLagBytes: 0 }) });
const archive = facts({ pg: pg({ streaming: false }) });
const noLb = facts({ tags: { nofailover: false, noloadbalance: true } });
const stopped = facts({ pg: pg({ up: false, running: false, inRecovery: null, streaming: false, lagBytes: null }) });
const syncStandby = facts({ pg: pg({ sync: true }) });
// sync_state quorum: every standby named in `ANY k (...)`, i.e. each standby of a pgherd primary.
const quorumStandby = facts({ pg: pg({ sync: true, quorum: true }) });
const quorumLagging = facts({ pg: pg({ sync: true, quorum: true, lagBytes: 20 * 1024 * 1024 }) });
const quorumNoLb = facts({ pg: pg({ sync: true, quorum: true }), tags: { nofailover: false, noloadbalance: true } });
const witness = facts({ pg: null });

// [path, query, facts, expected status]
const table: [string, string, HealthFacts, 200 | 503][] = [
  ["/primary", "", primary, 200], ["/", "", primary, 200], ["/read-write", "", primary, 200], ["/leader", "", primary, 200],
  ["/master", "", primary, 200], ["/master", "", primaryNoLease, 503], ["/master", "", standby, 503],
  ["/primary", "", primaryNoLease, 503], ["/leader", "", primaryNoLease, 503], ["/read-only", "", primaryNoLease, 503],
  ["/primary", "", leaderNotUp, 503], ["/leader", "", leaderNotUp, 200],
  ["/primary", "", standby, 503], ["/replica", "", primary, 503], ["/read-only", "", primary, 200],
  ["/replica", "", standby, 200], ["/read-only", "", standby, 200], ["/async", "", standby, 200], ["/sync", "", standby, 503],
  ["/replica", "?lag=16MB", standby, 200], ["/replica", "?lag=16MB", lagging, 503], ["/replica", "?lag=1GB", lagging, 200],
  ["/replica", "?lag=20971520", lagging, 200], ["/replica", "?lag=20971519", lagging, 503], ["/async", "?lag=1MB", lagging, 503],
  ["/replica", "", lagging, 200], ["/read-only", "?lag=16MB", lagging, 503],
  ["/replica", "?lag=1MB", facts({ pg: pg({ lagBytes: null }) }), 503],
  ["/replica", "?replication_state=streaming", standby, 200], ["/replica", "?replication_state=streaming", archive, 503], ["/replica", "", archive, 200],
  ["/replica", "", noLb, 503], ["/read-only", "", noLb, 503], ["/health", "", noLb, 200],
  ["/replica", "?tag_noloadbalance=false", standby, 200], ["/replica", "?tag_noloadbalance=true", standby, 503], ["/replica", "?tag_zone=a", standby, 503],
  ["/primary", "?tag_zone=a", primary, 200],
  ["/health", "", stopped, 503], ["/replica", "", stopped, 503], ["/read-only", "", stopped, 503], ["/readiness", "", stopped, 503], ["/liveness", "", stopped, 200],
  ["/health", "", standby, 200], ["/health", "", primary, 200],
  ["/sync", "", syncStandby, 200], ["/async", "", syncStandby, 503], ["/read-only-sync", "", syncStandby, 200], ["/read-only-sync", "", standby, 503], ["/read-only-sync", "", primary, 200],
  ["/quorum", "", standby, 503], ["/read-only-quorum", "", primary, 200], ["/standby-leader", "", primary, 503],
  ["/quorum", "", quorumStandby, 200], ["/read-only-quorum", "", quorumStandby, 200], ["/sync", "", quorumStandby, 200], ["/async", "", quorumStandby, 503],
  ["/quorum", "", syncStandby, 503], ["/read-only-quorum", "", syncStandby, 503], ["/read-only-quorum", "", standby, 503],
  ["/quorum", "", primary, 503], ["/quorum", "", primaryNoLease, 503], ["/read-only-quorum", "", primaryNoLease, 503],
  ["/quorum", "?lag=16MB", quorumLagging, 503], ["/quorum", "?lag=1GB", quorumLagging, 200], ["/read-only-quorum", "?lag=16MB", quorumLagging, 503],
  ["/quorum", "", quorumNoLb, 503], ["/quorum", "?tag_zone=a", quorumStandby, 503], ["/quorum", "", stopped, 503], ["/quorum", "", witness, 503],
  ["/readiness", "", primary, 200], ["/readiness", "", standby, 200], ["/readiness", "", lagging, 503], ["/readiness", "?lag=1GB", lagging, 200],
  ["/readiness", "?mode=write", lagging, 200], ["/readiness", "", archive, 503],
  ["/health", "", witness, 503], ["/replica", "", witness, 503], ["/liveness", "", witness, 200],
];

describe("health checks", () => {
  for (const [path, query, f, want] of table) {
    const name = Object.entries({ primary, primaryNoLease, leaderNotUp, standby, lagging, archive, noLb, stopped, syncStandby, quorumStandby, quorumLagging, quorumNoLb, witness }).find(([, v]) => v === f)?.[0] ?? "custom";
    test(`${path}${query} on ${name} → ${want}`, () => {
      const r = checkHealth(path, q(query), f);
      expect({ status: r.status, reason: r.reason }).toEqual({ status: want, reason: want === 200 ? "ok" : expect.any(String) as unknown as string });
    });
  }

  test("/readiness without lag= uses failover.max_lag_bytes in force, as Patroni its maximum_lag_on_failover (review: always 1 MiB)", () => {
    expect(checkHealth("/readiness", q(""), { ...lagging, maxLagBytes: 64 * 1024 * 1024 }).status).toBe(200); // 20 MiB behind, 64 MiB allowed
    expect(checkHealth("/readiness", q(""), { ...standby, pg: { ...standby.pg!, lagBytes: 2 * 1024 * 1024 }, maxLagBytes: 1024 * 1024 }).status).toBe(503);
    expect(checkHealth("/readiness", q("lag=1GB"), { ...lagging, maxLagBytes: 1024 }).status).toBe(200); // lag= wins
    expect(healthFacts({ ...nodeStatus({ postgres: standbyPg({}) }), maxLagBytes: 5 }).maxLagBytes).toBe(5);
  });

  test("time limits compare the replay lag the primary measured", () => {
    expect(checkHealth("/replica", q("lag=10s"), standby, 3).status).toBe(200);
    expect(checkHealth("/replica", q("lag=10s"), standby, 12.5).status).toBe(503);
    expect(checkHealth("/replica", q("lag=10s"), standby, null).reason).toMatch(/unknown/);
    expect(checkHealth("/replica", q("lag=500ms"), standby, 0.6).status).toBe(503);
  });

  test("a 503 says why", () => {
    expect(checkHealth("/primary", q(), primaryNoLease).reason).toBe("this node does not hold the leader lease");
    expect(checkHealth("/replica", q("lag=16MB"), lagging).reason).toBe("replication lag 20971520 bytes exceeds 16777216");
    expect(checkHealth("/replica", q(), noLb).reason).toBe("tag noloadbalance is set");
  });

  test("a primary that cannot write (disk full, stuck) answers 503 on /primary and /read-write, with the reason", () => {
    const full = facts({ leading: true, pg: pg({ inRecovery: false, streaming: false, lagBytes: null, cannotWork: "disk-full since 2026-12-01T18:00:00.000Z: disk full: data file system /pg: 0 B free" }) });
    for (const path of ["/primary", "/read-write", "/"]) {
      const r = checkHealth(path, q(), full);
      expect(r.status).toBe(503);
      expect(r.reason).toContain("PostgreSQL cannot write: disk-full since 2026-12-01T18:00:00.000Z");
    }
    expect(checkHealth("/leader", q(), full).status).toBe(200); // it still holds the lease until it resigns
  });
});

describe("health facts from the node status", () => {
  test("the report's liveness verdict reaches /primary: broken states answer 503, busy does not", () => {
    const st = (state: "busy" | "disk-full" | "cannot-write" | "stuck") => healthFacts(nodeStatus({
      election: { ...nodeStatus().election, leading: true },
      postgres: { ...standbyPg({}), inRecovery: false, health: { state, reason: "r", since: "2026-12-01T18:00:00.000Z", disks: [], diskWarning: null } },
    }));
    expect(checkHealth("/primary", q(), st("busy")).status).toBe(200);
    for (const s of ["disk-full", "cannot-write", "stuck"] as const) expect(checkHealth("/primary", q(), st(s)).reason).toBe(`PostgreSQL cannot write: ${s} since 2026-12-01T18:00:00.000Z: r`);
  });

  // The sync state comes from the primary's pg_stat_replication row for this standby.
  const check = (path: string, syncState: string | null) => checkHealth(path, q(), healthFacts(nodeStatus({ postgres: standbyPg({ syncState }) }))).status;

  test("sync_state quorum (synchronous_standby_names = ANY k (...)) is a quorum standby, also synchronous", () => {
    expect(healthFacts(nodeStatus({ postgres: standbyPg({ syncState: "quorum" }) })).pg).toMatchObject({ sync: true, quorum: true });
    expect([check("/quorum", "quorum"), check("/read-only-quorum", "quorum"), check("/sync", "quorum"), check("/async", "quorum")]).toEqual([200, 200, 200, 503]);
  });

  test("sync_state sync (FIRST k) is synchronous but not quorum; potential, async and unknown are neither", () => {
    expect([check("/quorum", "sync"), check("/sync", "sync")]).toEqual([503, 200]);
    for (const s of ["potential", "async", null]) expect([check("/quorum", s), check("/read-only-quorum", s), check("/sync", s), check("/async", s)]).toEqual([503, 503, 503, 200]);
  });

  test("a standby whose round is cloning, rewinding or restarting it is not serving (its last report said it was)", () => {
    for (const action of ["clone", "rewind", "restart-standby"]) {
      const f = healthFacts(nodeStatus({ postgres: standbyPg({ action }) }));
      expect({ action, replica: checkHealth("/replica", q(), f).status, health: checkHealth("/health", q(), f).status }).toEqual({ action, replica: 503, health: 503 });
    }
    expect(checkHealth("/replica", q(), healthFacts(nodeStatus({ postgres: standbyPg({ action: "standby" }) }))).status).toBe(200);
  });

  test("the receive lag is the replay lag minus what was received but not yet replayed", () => {
    const pg = healthFacts(nodeStatus({ postgres: standbyPg({ lagBytes: 0x3000, receiveLsn: "1/2000", replayLsn: "1/0" }) })).pg;
    expect(pg).toMatchObject({ lagBytes: 0x3000, receiveLagBytes: 0x1000 });
  });
});

describe("telling the truth about a primary that cannot work", () => {
  test("/metrics: the health state with its start, and the disk space of the data directory and pg_wal", () => {
    const st = nodeStatus({
      postgres: standbyPg({
        health: {
          state: "disk-full", reason: "data file system /pg: 0 B free of 256.0 MB (0.0%)", since: "2026-12-01T18:00:00.000Z", diskWarning: "data file system /pg: 0 B free",
          disks: [{ what: "data", path: "/pg", sizeBytes: 268435456, availBytes: 0 }, { what: "pg_wal", path: "/pg/pg_wal", sizeBytes: 1000, availBytes: 900 }],
        },
      }),
    });
    const fams = parseProm(renderMetrics({ status: st, facts: healthFacts(st), view: null, history: [], apiRejects: {} }));
    const v = (name: string, labels: Record<string, string> = {}) => fams.get(name)?.samples.find((x) => JSON.stringify(x.labels) === JSON.stringify(labels))?.value;
    expect(v("pgherd_postgres_health", { state: "disk-full" })).toBe(1);
    expect(v("pgherd_postgres_health", { state: "ok" })).toBe(0);
    expect(v("pgherd_postgres_health_since_timestamp_seconds")).toBe(Date.parse("2026-12-01T18:00:00.000Z") / 1000);
    expect(v("pgherd_disk_available_bytes", { what: "data", path: "/pg" })).toBe(0);
    expect(v("pgherd_disk_size_bytes", { what: "pg_wal", path: "/pg/pg_wal" })).toBe(1000);
    expect(v("pgherd_disk_space_low")).toBe(1);
  });
  test("the durability line never claims zero-loss while no commit completes", () => {
    const plan = "zero-loss: every commit is on the primary and 1 synchronous standby";
    expect(truthfulGuarantee(plan, { state: "ok", reason: "" }, true)).toBe(plan);
    expect(truthfulGuarantee(plan, { state: "busy", reason: "slow" }, true)).toBe(plan);
    for (const state of ["stuck", "disk-full", "cannot-write"]) expect(truthfulGuarantee(plan, { state, reason: "r" }, true)).toBe(`no commit completes: PostgreSQL ${state} (r)`);
    expect(truthfulGuarantee(plan, null, false)).toBe("unknown: PostgreSQL does not answer");
  });
});

describe("lag values", () => {
  test("bytes and PostgreSQL's 1024-based units, as Patroni", () => {
    expect(parseLag("1048576")).toEqual({ kind: "bytes", bytes: 1048576 });
    expect(parseLag("1024kB")).toEqual({ kind: "bytes", bytes: 1048576 });
    expect(parseLag("16MB")).toEqual({ kind: "bytes", bytes: 16 * 2 ** 20 });
    expect(parseLag("1GB")).toEqual({ kind: "bytes", bytes: 2 ** 30 });
    expect(parseLag("1.5GB")).toEqual({ kind: "bytes", bytes: 1.5 * 2 ** 30 });
    expect(parseLag("0")).toEqual({ kind: "bytes", bytes: 0 });
  });
  test("times", () => {
    expect(parseLag("10s")).toEqual({ kind: "seconds", seconds: 10 });
    expect(parseLag("250ms")).toEqual({ kind: "seconds", seconds: 0.25 });
    expect(parseLag("2min")).toEqual({ kind: "seconds", seconds: 120 });
  });
  test("bad values are errors that name the problem", () => {
    expect(parseLag("lots")).toMatch(/not a number/);
    expect(parseLag("-5")).toMatch(/not a number/);
    expect(parseLag("10m")).toMatch(/unit "m" is unknown/);
    // An inherited member is no unit (a NaN limit once passed every lagging replica).
    for (const u of ["constructor", "CONSTRUCTOR", "toString", "hasOwnProperty", "valueOf"]) expect(parseLag(`1${u}`)).toMatch(/is unknown/);
    expect(checkHealth("/replica", q("?tag_constructor=x"), standby).reason).toBe("tag constructor is not set on this node");
    expect(parseHealthQuery(new URLSearchParams("lag=x"))).toMatch(/lag=/);
    expect(parseHealthQuery(new URLSearchParams("mode=read"))).toMatch(/mode=/);
    expect(parseLag(" 16 MB ")).toEqual({ kind: "bytes", bytes: 16 * 2 ** 20 }); // "+16+MB+" in a URL
  });
  test("a long value is refused at once: the match runs on the event loop that keeps the lease", () => {
    // Two adjacent whitespace runs in the pattern once made 64,000 spaces (a "+" each in the query) take ~2 s.
    for (const raw of [`1${" ".repeat(64_000)}!`, `1${" ".repeat(64_000)}s`, "9".repeat(100_000)]) {
      const t0 = performance.now();
      expect(parseLag(raw)).toMatch(/not a number/);
      expect(performance.now() - t0).toBeLessThan(250);
    }
  });
});

describe("the test's Prometheus parser is strict", () => {
  test("accepts the format and rejects what scrapers reject", () => {
    const ok = parseProm('# HELP a_total x\n# TYPE a_total counter\na_total{r="q\\"\\\\\\n"} 3\nb_untyped 1\n'.replace("b_untyped 1\n", ""));
    expect(ok.get("a_total")?.samples[0]).toEqual({ labels: { r: 'q"\\\n' }, value: 3 });
    expect(() => parseProm("a 1\n")).toThrow(/without a preceding TYPE/);
    expect(() => parseProm("# TYPE a gauge\na 1\na 2\n")).toThrow(/duplicate series/);
    expect(() => parseProm("# TYPE a gauge\na{x=\"1\"} one\n")).toThrow(/bad value/);
    expect(() => parseProm("# TYPE a gauge\na{x=1} 1\n")).toThrow(/bad label/);
    expect(() => parseProm("# TYPE a counter\na -1\n")).toThrow(/negative counter/);
    expect(() => parseProm("# TYPE a gauge\na 1")).toThrow(/newline/);
  });
});
