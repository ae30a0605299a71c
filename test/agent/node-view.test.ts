// /node: the position in `election` is the one this node votes with; a node that cannot lead
// shows the cap on it (docs/design.md, "Standbys that cannot lead").
import { expect, test } from "bun:test";
import { composeLocalView, composeStatus, type StatusInput } from "../../src/agent/node-view.ts";

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
