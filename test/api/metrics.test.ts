// /metrics on the leader when two members have the same name (a node rebuilt under its old name
// before the old one was removed, or a typo): every per-member series carries the member's node
// id, so the scrape stays valid (Prometheus rejects a whole scrape with one duplicate series), and
// no label set is ever written twice.
import { expect, test } from "bun:test";
import { renderMetrics } from "../../src/api/metrics.ts";
import { healthFacts } from "../../src/api/source.ts";
import { composeView, type ClusterView } from "../../src/core/cluster-view.ts";
import type { PgReport } from "../../src/core/report.ts";
import { nodeStatus } from "./fake-source.ts";
import { parseProm, sample } from "./prom.ts";

const pg = (over: Partial<PgReport> = {}): PgReport => ({
  port: 5432, data: "present", systemId: "7000000000000000001", running: true, up: true, inRecovery: true,
  position: { timeline: 1, lsn: "0/3000148" }, receiveLsn: "0/3000148", replayLsn: "0/3000148", upstream: "10.0.0.1:5432", streaming: true,
  replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const view = composeView({
  cluster: "c", term: 3, leader: "a1", slotOf: (id) => `pgherd_${id}`,
  members: [
    { id: "a1", name: "n1", role: "database", host: "10.0.0.1", voter: true, reachable: true, report: pg({ inRecovery: false, upstream: null, streaming: false }) },
    { id: "b2", name: "db", role: "database", host: "10.0.0.2", voter: true, reachable: true, report: pg({ pendingRestart: ["max_connections"] }) },
    { id: "c3", name: "db", role: "database", host: "10.0.0.3", voter: true, reachable: true, report: pg() },
  ],
});
const scrape = (v: ClusterView) => {
  const st = nodeStatus();
  return parseProm(renderMetrics({ status: st, facts: healthFacts(st), view: v, history: [], apiRejects: {} }));
};

test("two members named alike: a valid scrape, each member's series told apart by node_id", () => {
  const fams = scrape(view); // the strict parser throws on a duplicate series
  expect(sample(fams, "pgherd_member_pending_restart", { member: "db", node_id: "b2" })).toBe(1);
  expect(sample(fams, "pgherd_member_pending_restart", { member: "db", node_id: "c3" })).toBe(0);
  expect(sample(fams, "pgherd_member_up", { member: "db", node_id: "c3", role: "standby" })).toBe(1);
  for (const name of ["pgherd_replication_lag_bytes", "pgherd_member_up", "pgherd_member_pending_restart"]) {
    expect({ name, ids: fams.get(name)!.samples.map((s) => s.labels.node_id).sort() }).toEqual({ name, ids: name === "pgherd_replication_lag_bytes" ? ["b2", "c3"] : ["a1", "b2", "c3"] });
  }
  // The existing labels stay: dashboards keep matching on member and standby.
  expect(fams.get("pgherd_replication_lag_bytes")!.samples.every((s) => s.labels.standby === "db")).toBe(true);
});

test("a member listed twice (same id): its series is written once", () => {
  const twice = { ...view, members: [...view.members, view.members[2]!] };
  const fams = scrape(twice);
  expect(fams.get("pgherd_member_up")!.samples).toHaveLength(3);
  expect(sample(fams, "pgherd_replication_lag_bytes", { node_id: "c3" })).toBe(0);
});

test("the archiver ([backup] tool set): counters, what waits, last times, failing once said; nothing while the server is down", () => {
  const archive = { at: "2025-03-01T10:02:00.000Z", archived: 40, failed: 12, lastArchivedWal: "000000010000000000000028", lastArchivedAt: "2025-03-01T09:59:50.000Z",
    lastFailedWal: "000000010000000000000029", lastFailedAt: "2025-03-01T10:01:58.500Z", ready: 3, failingSince: "2025-03-01T10:00:00.000Z" };
  const render = (p: Partial<ReturnType<typeof nodeStatus>["postgres"] & object>) => {
    const st = nodeStatus();
    const s = { ...st, postgres: { ...st.postgres!, ...p } };
    return parseProm(renderMetrics({ status: s, facts: healthFacts(s), view: null, history: [], apiRejects: {} }));
  };
  const fams = render({ archive });
  expect(fams.get("pgherd_archive_failed_total")!.type).toBe("counter");
  expect(sample(fams, "pgherd_archive_archived_total")).toBe(40);
  expect(sample(fams, "pgherd_archive_failed_total")).toBe(12);
  expect(sample(fams, "pgherd_archive_ready_segments")).toBe(3);
  expect(sample(fams, "pgherd_archive_last_archived_timestamp_seconds")).toBe(Date.parse("2025-03-01T09:59:50Z") / 1000);
  expect(sample(fams, "pgherd_archive_last_failed_timestamp_seconds")).toBe(Date.parse("2025-03-01T10:01:58.5Z") / 1000);
  expect(sample(fams, "pgherd_archive_failing")).toBe(1);
  const works = render({ archive: { ...archive, failed: 0, lastFailedWal: null, lastFailedAt: null, ready: 0, failingSince: null } });
  expect(sample(works, "pgherd_archive_failing")).toBe(0);
  expect(works.has("pgherd_archive_last_failed_timestamp_seconds")).toBe(false);
  // No archiving configured, or the server down: no archive series at all.
  expect([...render({}).keys()].filter((k) => k.startsWith("pgherd_archive_"))).toEqual([]);
  expect([...render({ archive, up: false }).keys()].filter((k) => k.startsWith("pgherd_archive_"))).toEqual([]);
});
