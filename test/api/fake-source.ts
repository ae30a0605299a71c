// A NodeStatus and an ApiSource made of plain values, for API tests where the agent is not the
// point (routing, token checks, what a route hands to the agent and what it answers).
import type { ActionRequest, ActionResult } from "../../src/api/actions-contract.ts";
import type { ApiSource } from "../../src/api/source.ts";
import type { ClusterView } from "../../src/core/cluster-view.ts";
import type { NodePostgres, NodeStatus } from "../../src/core/node-status.ts";

export function standbyPg(over: Partial<NodePostgres> = {}): NodePostgres {
  return {
    port: 5432, data: "present", systemId: "7000000000000000001", running: true, up: true, inRecovery: true,
    position: { timeline: 1, lsn: "0/3000148" }, receiveLsn: "0/3000148", replayLsn: "0/3000148", upstream: "n1",
    streaming: true, replication: [], action: "stream", note: "", error: null, haveSecrets: true,
    lagBytes: 0, syncState: null, slots: [], ...over,
  };
}

export function nodeStatus(over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    cluster: "test",
    node: { id: "0000000000000002", name: "n2", role: "database", mesh: "127.0.0.1:7401" },
    election: {
      role: "follower", term: 3, leader: "0000000000000001", leaderName: "n1", votedFor: null, leading: false,
      leaseRemainingMs: 0, voters: [], membershipVersion: "1.0", position: { timeline: 1, lsn: "0/3000148" }, votingCap: null,
    },
    bootstrap: null,
    postgres: standbyPg(),
    tags: { nofailover: false, noloadbalance: false },
    paused: false,
    durability: "quorum",
    counters: { leaderChanges: 0, leadershipsWon: 0, leasesLost: 0, fences: 0, loopMs: 0, loops: 0 },
    peers: [],
    rejects: { beacon: {}, mesh: {} },
    uptimeMs: 1000,
    ...over,
  };
}

export function clusterView(over: Partial<ClusterView> = {}): ClusterView {
  return { cluster: "test", leader: "0000000000000001", leaderName: "n1", term: 3, primary: "0000000000000001", members: [], ...over };
}

/** Records every action it is asked for and answers with `answer`. */
export function fakeSource(o: { status?: NodeStatus; view?: ClusterView; answer?: (req: ActionRequest) => ActionResult } = {}): ApiSource & { requests: ActionRequest[] } {
  const requests: ActionRequest[] = [];
  return {
    requests,
    status: () => o.status ?? nodeStatus(),
    clusterView: async () => ({ source: "leader", view: o.view ?? clusterView() }),
    history: () => [],
    action: async (req) => {
      requests.push(req);
      return o.answer?.(req) ?? { status: 200, ok: true, message: `${req.kind} done` };
    },
  };
}
