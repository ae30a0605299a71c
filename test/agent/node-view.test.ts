// /node: the position in `election` is the one this node votes with; a node that cannot lead
// shows the cap on it (docs/design.md, "Standbys that cannot lead").
import { expect, test } from "bun:test";
import { composeLocalView, composeStatus, type StatusInput } from "../../src/agent/node-view.ts";
import { checkHealth, parseHealthQuery } from "../../src/api/health.ts";
import { healthFacts } from "../../src/api/source.ts";

test("/node labels a capped voting position: election.votingCap beside election.position", () => {
  const cfg = { cluster: "c", node_name: "n1", role: "database", tags: { nofailover: true }, failover: { max_lag_bytes: 1048576 } };
  const input = {
    cfg, nodeId: "0000000000000001",
    facts: { self: { id: "0000000000000001", name: "n1", role: "database", neverPromoted: true, report: null }, now: 0, startedAt: 0, freshMs: 5000, voters: [], leader: null, peers: [], reports: new Map() },
    election: { role: "follower", term: 4, leader: null, votedFor: null, membership: null, position: { timeline: 1, lsn: "0/6000000" } },
    lease: null, electionNote: "", bootstrapNote: "", selfHost: "", meshAddr: "", flags: { paused: false }, durabilityLine: "",
    counters: {}, peers: [], rejects: { beacon: {}, mesh: {} }, uptimeMs: 0,
  } as unknown as StatusInput;
  expect(composeStatus({ ...input, votingCap: { timeline: 1, lsn: "0/6000000" } }).election).toMatchObject({ position: { lsn: "0/6000000" }, votingCap: { timeline: 1, lsn: "0/6000000" } });
  expect(composeStatus(input).election.votingCap).toBeNull();
  // A lease past its deadline is none, also before the deadline's timer has fired (review): /primary answers 503.
  expect(composeStatus({ ...input, lease: { term: 4, until: 1 } }).election.leading).toBe(true);
  expect(composeStatus({ ...input, lease: { term: 4, until: 0 } }).election.leading).toBe(false);
});

test("the cluster table keeps a member's port once its last report is stale (pgpool detaches it there; `pgherd dsn` lists it)", () => {
  const cfg = { cluster: "c", node_name: "n1", role: "database", tags: {}, failover: { max_lag_bytes: 1048576 } };
  const stale = { port: 5433, data: "present", running: true, up: true, inRecovery: true, position: { timeline: 2, lsn: "0/3000000" }, replication: [], slots: [], note: "", error: null, action: "standby" };
  const input = {
    cfg, nodeId: "0000000000000001",
    facts: {
      self: { id: "0000000000000001", name: "n1", role: "database", neverPromoted: false, report: null }, now: 60_000, startedAt: 0, freshMs: 5000,
      voters: ["0000000000000001", "0000000000000003"], leader: "0000000000000001", peers: [{ id: "0000000000000003", name: "n3", role: "database", mesh: "10.0.0.3:7400", address: "10.0.0.3", connected: false }],
      reports: new Map([["0000000000000003", { report: stale, role: "database", at: 40_000, nofailover: false }]]),
    },
    election: { role: "leader", term: 4, leader: "0000000000000001", votedFor: null, membership: { voters: ["0000000000000001", "0000000000000003"], term: 1, index: 1 }, position: { timeline: 2, lsn: "0/3000000" } },
    lease: null, electionNote: "", bootstrapNote: "", selfHost: "10.0.0.1", meshAddr: "", flags: { paused: false, scheduled: null }, durabilityLine: "",
    counters: {}, peers: [], rejects: { beacon: {}, mesh: {} }, uptimeMs: 0,
  } as unknown as StatusInput;
  const n3 = composeLocalView(input).members.find((m) => m.name === "n3")!;
  expect(n3).toMatchObject({ host: "10.0.0.3", port: 5433, state: "unreachable", role: "unknown", lagBytes: null });
});

test("a standby on another timeline than the leader's primary has no known lag: /replica?lag= answers 503 (review: a standby holding the old primary's WAL past the switch point answered 200)", () => {
  const me = "0000000000000001";
  const leader = "0000000000000002";
  const pg = (o: Record<string, unknown>) => ({ port: 5432, data: "present", systemId: "7000000000000000001", running: true, up: true, receiveLsn: null, upstream: null, streaming: false, replication: [], slots: [], note: "", error: null, action: "standby", haveSecrets: true, ...o });
  // The new primary promoted at 0/5000000 onto timeline 3 and wrote 64 kB since; this standby replayed the old primary's timeline 2 up to 0/5000100.
  const primary = pg({ inRecovery: false, position: { timeline: 3, lsn: "0/5010000" }, action: "primary" });
  const status = (own: Record<string, unknown>) => composeStatus({
    cfg: { cluster: "c", node_name: "n1", role: "database", tags: {}, failover: { max_lag_bytes: 1048576 } },
    nodeId: me,
    facts: {
      self: { id: me, name: "n1", role: "database", neverPromoted: false, report: pg(own) }, now: 10_000, startedAt: 0, freshMs: 5000,
      voters: [me, leader], leader, peers: [{ id: leader, name: "n2", role: "database", mesh: "10.0.0.2:7400", address: "10.0.0.2", connected: true }],
      reports: new Map([[leader, { report: primary, role: "database", at: 9_500, nofailover: false }]]),
    },
    election: { role: "follower", term: 5, leader, votedFor: null, membership: { voters: [me, leader], term: 1, index: 1 }, position: { timeline: 2, lsn: "0/5000100" } },
    lease: null, electionNote: "", bootstrapNote: "", selfHost: "10.0.0.1", meshAddr: "", flags: { paused: false, scheduled: null }, durabilityLine: "",
    counters: {}, peers: [], rejects: { beacon: {}, mesh: {} }, uptimeMs: 0,
  } as unknown as StatusInput);
  const q = parseHealthQuery(new URLSearchParams("lag=1MB"));
  if (typeof q === "string") throw new Error(q);
  const diverged = status({ inRecovery: true, position: { timeline: 2, lsn: "0/5000100" }, replayLsn: "0/5000100" });
  expect(diverged.postgres!.lagBytes).toBeNull();
  expect(checkHealth("/replica", q, healthFacts(diverged))).toMatchObject({ status: 503, reason: expect.stringContaining("unknown") });
  expect(checkHealth("/readiness", q, healthFacts(diverged)).status).toBe(503);
  // On the primary's timeline the lag is what it was: 4 kB behind, within 1 MB.
  const following = status({ inRecovery: true, streaming: true, position: { timeline: 3, lsn: "0/500F000" }, replayLsn: "0/500F000" });
  expect(following.postgres!.lagBytes).toBe(4096);
  expect(checkHealth("/replica", q, healthFacts(following)).status).toBe(200);
});
