// Patroni extras: the Patroni-named series on GET /metrics (names, types, {scope,name} labels as
// Patroni 4 sends them) and the per-member sync marking of GET /cluster (role sync_standby /
// quorum_standby from the primary's pg_stat_replication sync_state), through the real API server.
import { afterAll, expect, test } from "bun:test";
import { startApi } from "../../src/api/server.ts";
import { composeView, type MemberInput, type MemberRow } from "../../src/core/cluster-view.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource, nodeStatus, standbyPg } from "../api/fake-source.ts";

const row = (o: Partial<MemberRow> & Pick<MemberRow, "name">): MemberRow => ({
  id: `id-${o.name}`, host: "10.0.0.1", port: 5432, role: "standby", state: "streaming", leader: false, voter: true,
  timeline: 2, lsn: "0/3000148", lagBytes: 0, lagSeconds: 0, note: "", error: null, ...o,
});
const view = clusterView({
  members: [
    row({ name: "n1", role: "primary", state: "running", leader: true, lagBytes: null, lagSeconds: null }),
    row({ name: "n2", syncState: "sync" }),
    row({ name: "n3", syncState: "quorum" }),
    row({ name: "n4", syncState: "potential" }),
    row({ name: "n5", syncState: "async" }),
  ],
});
const status = nodeStatus({ postgres: standbyPg({ syncState: "sync", streaming: true, position: { timeline: 3, lsn: "0/3000148" }, receiveLsn: "0/3000200", replayLsn: "0/3000148" }) });
const api = startApi({ host: "127.0.0.1", port: 0, source: fakeSource({ status, view }), log: memoryLogger() });
afterAll(() => api.stop());

test("GET /cluster marks sync and quorum standbys as Patroni does; potential and async stay replica", async () => {
  const body = (await (await fetch(`${api.url}/cluster`)).json()) as { members: Array<{ name: string; role: string; lag?: unknown }> };
  expect(body.members.map((m) => [m.name, m.role])).toEqual([["n1", "leader"], ["n2", "sync_standby"], ["n3", "quorum_standby"], ["n4", "replica"], ["n5", "replica"]]);
  expect(body.members.filter((m) => m.role !== "leader").every((m) => m.lag === 0)).toBe(true);
});

test("composeView takes each standby's sync_state from the primary's pg_stat_replication", () => {
  const report = (o: Record<string, unknown>) => ({
    port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000000" },
    receiveLsn: null, replayLsn: "0/3000000", upstream: null, streaming: true, replication: [], slots: [], action: "none", note: "", error: null, haveSecrets: true, ...o,
  });
  const m = (id: string, r: Record<string, unknown>): MemberInput => ({ id, name: id, role: "database", host: "h", voter: true, reachable: true, report: report(r) as MemberInput["report"] });
  const v = composeView({
    cluster: "c", leader: "a", term: 1, slotOf: (id: string) => `slot_${id}`,
    members: [
      m("a", { inRecovery: false, replication: [{ name: "slot_b", clientAddr: null, state: "streaming", syncState: "quorum", lagBytes: 0, replayLagSeconds: 0 }, { name: "slot_c", clientAddr: null, state: "streaming", lagBytes: 0, replayLagSeconds: 0 }] }),
      m("b", {}), m("c", {}),
    ],
  } as Parameters<typeof composeView>[0]);
  expect(v.members.map((x) => x.syncState)).toEqual([undefined, "quorum", undefined]);
});

test("GET /metrics carries Patroni's series for this standby with {scope,name}", async () => {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const value = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{`));
    expect(line, name).toBeDefined();
    expect(line!).toContain(`{scope="${status.cluster}",name="${status.node.name}"}`);
    return Number(line!.split(" ").at(-1));
  };
  expect(text).toContain("# TYPE patroni_xlog_replayed_location counter");
  expect(value("patroni_version")).toBe(40000);
  expect(value("patroni_postgres_running")).toBe(1);
  expect(value("patroni_primary")).toBe(0);
  expect(value("patroni_replica")).toBe(1);
  expect(value("patroni_sync_standby")).toBe(1);
  expect(value("patroni_quorum_standby")).toBe(0);
  expect(value("patroni_xlog_location")).toBe(0);
  expect(value("patroni_xlog_received_location")).toBe(0x3000200);
  expect(value("patroni_xlog_replayed_location")).toBe(0x3000148);
  expect(value("patroni_postgres_streaming")).toBe(1);
  expect(value("patroni_postgres_timeline")).toBe(3);
  expect(value("patroni_cluster_unlocked")).toBe(status.election.leader === null ? 1 : 0);
  expect(value("patroni_postgres_state")).toBe(5);
});

test("while a clone, a rewind or a standby's restart runs, /patroni and the metrics say the server is not running (its last report, published before the action, said it answered; review)", async () => {
  for (const action of ["clone", "rewind", "restart-standby"] as const) {
    const st = nodeStatus({ postgres: standbyPg({ action, up: true, running: true, streaming: true }) });
    const own = startApi({ host: "127.0.0.1", port: 0, source: fakeSource({ status: st, view }), log: memoryLogger() });
    try {
      const node = (await (await fetch(`${own.url}/patroni`)).json()) as { state: string; replication_state?: string };
      expect(node.state).toBe(action === "clone" ? "creating replica" : "stopped");
      expect(node.replication_state).toBe("in archive recovery");
      const text = await (await fetch(`${own.url}/metrics`)).text();
      const value = (name: string) => Number(text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))?.split(" ").at(-1));
      expect(value("patroni_postgres_running")).toBe(0);
      expect(value("patroni_postgres_state")).toBe(action === "clone" ? 4 : 12);
      expect(value("pgherd_postgres_up")).toBe(0);
      expect((await fetch(`${own.url}/replica`)).status).toBe(503);
    } finally {
      own.stop();
    }
  }
});
