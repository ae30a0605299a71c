// /node: the position in `election` is the one this node votes with; a node that cannot lead
// shows the cap on it (docs/design.md, "Standbys that cannot lead").
import { expect, test } from "bun:test";
import { composeStatus, type StatusInput } from "../../src/agent/node-view.ts";

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
