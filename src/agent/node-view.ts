// What this node tells the API (status) and the cluster table it composes itself (local view):
// pure compositions of the agent's facts, so the agent only gathers them.
import { maxLagBytesInForce } from "./dynamic-config.ts";
import type { Config } from "../config/schema.ts";
import * as F from "../core/cluster-facts.ts";
import { composeView, type ClusterView, type MemberInput } from "../core/cluster-view.ts";
import type { Status } from "../core/election.ts";
import type { NodeStatus } from "../core/node-status.ts";
import { lsnToBigInt, type Position } from "../core/position.ts";
import type { PeerInfo } from "./peers.ts";
import type { Flags } from "./flags.ts";
import { slotFor } from "./pg/context.ts";

export interface StatusInput {
  cfg: Config;
  nodeId: string;
  facts: F.FactsSnapshot;
  election: Status;
  lease: { term: number; until: number } | null;
  electionNote: string;
  bootstrapNote: string;
  selfHost: string;
  meshAddr: string;
  flags: Readonly<Flags>;
  durabilityLine: string;
  counters: { fences: number; loopMs: number; loops: number; leaderChanges: number; leadershipsWon: number; leasesLost: number };
  peers: PeerInfo[];
  rejects: { beacon: Record<string, number>; mesh: Record<string, number> };
  uptimeMs: number;
  backend?: { backend: "builtin" | "etcd"; epoch: number };
  /** The cap on the position this node votes with (agent/sync-cap.ts; null: none). */
  votingCap?: Position | null;
  /** The cluster's system identifier as this node recorded it (null: none yet). */
  clusterSystemId?: string | null;
}

export function composeStatus(i: StatusInput): NodeStatus {
  const s = i.election;
  const f = i.facts;
  const own = f.self.report;
  const names = (ids: readonly string[] | undefined) => (ids ?? []).map((id) => ({ id, name: F.nameOf(f, id) }));
  const leaderPg = F.leaderPg(f);
  return {
    cluster: i.cfg.cluster,
    node: { id: i.nodeId, name: i.cfg.node_name, role: i.cfg.role, mesh: i.meshAddr },
    election: {
      role: s.role, term: s.term, leader: s.leader, leaderName: s.leader ? F.nameOf(f, s.leader) : null,
      // A lease past its deadline is none (the deadline's timer may not have fired yet: a stalled event loop).
      votedFor: s.votedFor, leading: i.lease !== null && i.lease.until > f.now,
      leaseRemainingMs: i.lease ? Math.max(0, Math.round(i.lease.until - f.now)) : 0,
      voters: names(s.membership?.voters), membershipVersion: s.membership ? `${s.membership.term}.${s.membership.index}` : null,
      position: s.position, votingCap: i.votingCap ?? null, ...(i.backend ? { backend: i.backend } : {}),
    },
    bootstrap: s.membership ? null : i.bootstrapNote,
    postgres: own
      ? {
          ...own, lagBytes: ownLagBytes(f),
          syncState: leaderPg?.report.replication.find((r) => r.name === slotFor(i.nodeId))?.syncState ?? null,
          slots: own.slots.map((name) => ({ name, retainedBytes: own.slotBytes?.[name] ?? null })),
        }
      : null,
    tags: i.cfg.tags,
    maxLagBytes: maxLagBytesInForce(i.cfg.failover.max_lag_bytes),
    paused: i.flags.paused,
    durability: i.durabilityLine,
    counters: i.counters,
    peers: i.peers,
    rejects: i.rejects,
    uptimeMs: i.uptimeMs,
  };
}

/**
 * Bytes this standby's replay is behind the leader's primary (null when unknown or not a standby).
 * Unknown too on another timeline than the primary's: positions of two timelines compare as one
 * history only up to the switch point, which the reports do not carry, and a standby that replayed
 * an old primary's WAL past it (never acknowledged, not in the new primary's history) showed lag 0,
 * or the new primary's few bytes since its promotion, to /replica?lag= (review). Timeline numbers
 * are unique across histories (S24), so on the same timeline the subtraction holds.
 */
function ownLagBytes(f: F.FactsSnapshot): number | null {
  const me = f.self.report;
  const l = F.leaderPg(f);
  if (!me || !me.inRecovery || !me.replayLsn || !l || l.report.inRecovery !== false) return null;
  if (me.position.timeline !== l.report.position.timeline) return null;
  const d = lsnToBigInt(l.report.position.lsn) - lsnToBigInt(me.replayLsn);
  return d > 0n ? Number(d) : 0;
}

export function composeLocalView(i: StatusInput): ClusterView {
  const f = i.facts;
  const members: MemberInput[] = F.knownIds(f).map((id) => ({
    id, name: F.nameOf(f, id), role: F.roleOf(f, id),
    host: id === i.nodeId ? i.selfHost : (F.peerHost(f, id) ?? ""),
    voter: f.voters.includes(id), reachable: F.reachable(f, id), report: F.freshReport(f, id), lastPort: F.lastPort(f, id), neverPromoted: F.neverPromoted(f, id),
    // Why a non-voter is not made one (the leader's rule), where this node knows the cluster's identity.
    joinBlocked: id !== i.nodeId && !f.voters.includes(id) && i.clusterSystemId ? F.joinBlocker(f, id, i.clusterSystemId) : null,
  }));
  const s = i.flags.scheduled;
  return composeView({
    scheduledSwitchover: s ? { at: s.at, to: s.to ? F.nameOf(f, s.to) : null, requestedAt: s.requestedAt } : null,
    paused: i.flags.paused, note: i.electionNote, durability: i.durabilityLine, cluster: i.cfg.cluster,
    term: i.election.term, leader: i.election.leader, members, slotOf: slotFor, approved: i.election.membership?.approved ?? [],
  });
}

/** "mode: what the primary's plan guarantees" (the mode alone while the primary said nothing). */
export function durabilityLine(mode: string, guarantee: string | undefined): string {
  if (!guarantee) return mode;
  return guarantee.startsWith(`${mode}:`) ? guarantee : `${mode}: ${guarantee}`;
}
