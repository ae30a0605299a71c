// A pending restart per member: in the cluster view (from the member's report), in `cluster ls`
// and in the leader's /metrics.
import { expect, test } from "bun:test";
import { renderMetrics } from "../../src/api/metrics.ts";
import { healthFacts } from "../../src/api/source.ts";
import { renderTable } from "../../src/cli/cmd-cluster.ts";
import { ClusterViewSchema, composeView } from "../../src/core/cluster-view.ts";
import type { PgReport } from "../../src/core/report.ts";
import { nodeStatus } from "./fake-source.ts";
import { parseProm, sample } from "./prom.ts";

const pg = (over: Partial<PgReport>): PgReport => ({
  port: 5432, data: "present", systemId: "7000000000000000001", running: true, up: true, inRecovery: true,
  position: { timeline: 1, lsn: "0/3000148" }, receiveLsn: "0/3000148", replayLsn: "0/3000148", upstream: "10.0.0.1:5432", streaming: true,
  replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const ordered = [{ name: "max_connections" as const, running: 100, next: 200, control: 100 }];
const view = composeView({
  cluster: "c", term: 3, leader: "a", slotOf: (id) => `pgherd_${id}`,
  members: [
    { id: "a", name: "n1", role: "database", host: "10.0.0.1", voter: true, reachable: true, report: pg({ inRecovery: false, upstream: null, streaming: false, ordered: [{ ...ordered[0]!, control: null }] }) },
    { id: "b", name: "n2", role: "database", host: "10.0.0.2", voter: true, reachable: true, report: pg({ pendingRestart: ["max_connections"], ordered }) },
  ],
});

test("the view carries each member's pending restart and ordered settings, and stays valid for its schema", () => {
  const n2 = view.members.find((m) => m.name === "n2")!;
  expect(n2.pendingRestart).toEqual(["max_connections"]);
  expect(n2.ordered).toEqual(ordered);
  expect("pendingRestart" in view.members.find((m) => m.name === "n1")!).toBe(false);
  expect(ClusterViewSchema.parse(view)).toEqual(view);
});

test("cluster ls marks the member and names the command", () => {
  const t = renderTable(view, "leader");
  expect(t).toMatch(/n2 .*RESTART PENDING/);
  expect(t).not.toMatch(/n1 .*RESTART PENDING/);
  expect(t).toContain("pending restart: n2 (max_connections): pgherd restart --pending");
});

test("/metrics on the leader: pgherd_member_pending_restart per member", () => {
  const st = nodeStatus();
  const fams = parseProm(renderMetrics({ status: st, facts: healthFacts(st), view, history: [], apiRejects: {} }));
  expect(sample(fams, "pgherd_member_pending_restart", { member: "n2" })).toBe(1);
  expect(sample(fams, "pgherd_member_pending_restart", { member: "n1" })).toBe(0);
});

test("the restart command's plan input: a witness is other, a standby counts as up only while it streams", async () => {
  const { restartMember } = await import("../../src/core/restart-plan.ts");
  const [n1, n2] = view.members;
  expect(restartMember(n1!)).toMatchObject({ name: "n1", role: "primary", healthy: true, pending: [] });
  expect(restartMember(n2!)).toMatchObject({ name: "n2", role: "standby", healthy: true, pending: ["max_connections"], ordered });
  expect(restartMember({ ...n2!, state: "running" }).healthy).toBe(false);
  expect(restartMember({ ...n2!, role: "unknown", state: "stopped" })).toMatchObject({ role: "standby", healthy: false });
  expect(restartMember({ ...n2!, role: "witness", state: "running" })).toMatchObject({ role: "other", healthy: true });
});
