// Patroni's REST API shapes (src/api/patroni.ts), through the real API server on loopback:
// GET /patroni, the Patroni fields of GET /cluster, the sync keys of a replica check.
import { afterAll, expect, test } from "bun:test";
import { patroniNode } from "../../src/api/patroni.ts";
import { startApi } from "../../src/api/server.ts";
import type { MemberRow } from "../../src/core/cluster-view.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource, nodeStatus, standbyPg } from "../api/fake-source.ts";

const row = (o: Partial<MemberRow> & Pick<MemberRow, "name">): MemberRow => ({
  id: `id-${o.name}`, host: "10.0.0.1", port: 5432, role: "standby", state: "streaming", leader: false, voter: true,
  timeline: 2, lsn: "0/3000148", lagBytes: 0, lagSeconds: 0, note: "", error: null, ...o,
});

const view = clusterView({
  paused: true,
  scheduledSwitchover: { at: "2026-12-02T03:00:00Z", to: "n2", requestedAt: "2026-12-01T10:00:00Z" },
  members: [
    row({ name: "n1", host: "10.0.0.1", role: "primary", state: "running", leader: true, lagBytes: null, lagSeconds: null }),
    row({ name: "n2", host: "10.0.0.2", lagBytes: 4096 }),
    row({ name: "n3", host: "10.0.0.3", state: "unreachable", lagBytes: null }),
    row({ name: "n4", host: "10.0.0.4", state: "running", promotable: false }),
    row({ name: "w1", host: "10.0.0.9", role: "witness", state: "running", port: null, timeline: null, lagBytes: null }),
  ],
});
const status = nodeStatus({ paused: true, postgres: standbyPg({ syncState: "quorum", position: { timeline: 2, lsn: "0/3000148" }, receiveLsn: "0/3000200", replayLsn: "0/3000148" }) });
const api = startApi({ host: "127.0.0.1", port: 0, source: fakeSource({ status, view }), log: memoryLogger() });
afterAll(() => api.stop());
const get = async (path: string) => {
  const r = await fetch(`${api.url}${path}`);
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};

test("GET /patroni: Patroni's fields for this standby", async () => {
  const { status: code, body } = await get("/patroni");
  expect(code).toBe(200);
  expect(body).toMatchObject({
    state: "running", role: "replica", timeline: 2, replication_state: "streaming", pause: true, cluster_unlocked: false,
    xlog: { received_location: 0x3000200, replayed_location: 0x3000148, replayed_timestamp: null, paused: false },
    database_system_identifier: "7000000000000000001",
    patroni: { version: "4.0.0", scope: "test", name: "n2" }, pgherd: { term: 3, leader: "n1" },
  });
  expect(body.pending_restart).toBeUndefined();
  expect(body.tags).toBeUndefined(); // nofailover and noloadbalance false: Patroni shows no such tag
});

test("GET /cluster: Patroni's members (leader, streaming, unknown), pause, scheduled switchover; pgherd's view beside", async () => {
  const { body } = await get("/cluster");
  expect(body.view.members).toHaveLength(5);
  expect(body.pause).toBe(true);
  expect(body.scheduled_switchover).toEqual({ at: "2026-12-02T03:00:00Z", from: "n1", to: "n2" });
  const port = new URL(api.url).port;
  expect(body.members).toEqual([
    { name: "n1", role: "leader", state: "running", api_url: `http://10.0.0.1:${port}/patroni`, host: "10.0.0.1", port: 5432, timeline: 2 },
    { name: "n2", role: "replica", state: "streaming", api_url: `http://10.0.0.2:${port}/patroni`, host: "10.0.0.2", port: 5432, timeline: 2, lag: 4096 },
    { name: "n3", role: "replica", state: "unknown", api_url: `http://10.0.0.3:${port}/patroni`, host: "10.0.0.3", port: 5432, timeline: 2, lag: "unknown" },
    { name: "n4", role: "replica", state: "in archive recovery", api_url: `http://10.0.0.4:${port}/patroni`, host: "10.0.0.4", port: 5432, timeline: 2, lag: 0, tags: { nofailover: true } },
  ]);
});

test("a quorum standby's replica check carries quorum_standby (check_patroni node_is_replica --is-sync)", async () => {
  const { status: code, body } = await get("/replica");
  expect(code).toBe(200);
  expect(body.quorum_standby).toBe(true);
  expect(body.sync_standby).toBeUndefined();
});

test("GET /patroni's tags: the ones set, as Patroni shows them", () => {
  const tagged = nodeStatus({ tags: { nofailover: true, noloadbalance: false } });
  expect(patroniNode(tagged).tags).toEqual({ nofailover: true });
});
