// Leader contact for the election (src/core/election.ts): how fresh a follower's last contact with
// its leader is, when a heartbeat arrived too late to count (held in a queue while a link was cut),
// and the leader's side: the lease a majority's acknowledgements give it. Pure; time passed in.
import { quorumMin } from "./quorum.ts";

/** Follower: the current leader's clock as seen here (send-time estimates). */
export interface HbClock {
  leader: string;
  term: number;
  minOffset: number;
  at: number;
  lastSeq: number;
  /** Since when heartbeats keep arriving late (null: the last one was on time). */
  lateSince: number | null;
}

/** What of a heartbeat these functions read: its term, send time (seq, leader clock) and window. */
export interface HbTimes { term: number; seq: number; left?: number }

export interface ContactOptions { leaseMs: number; heartbeatMs: number; maxDrift?: number }

/**
 * Whether this node heard a live leader within timeoutMs (a leader counts itself; an ex-leader is
 * quiet until its fencing surely finished). Neither votes nor campaigns while true.
 */
export function heardLeaderRecently(
  s: { leading: boolean; quietUntil: number; lastLeaderContact: number | null }, now: number, timeoutMs: number,
): boolean {
  if (s.leading || now < s.quietUntil) return true;
  return s.lastLeaderContact !== null && now - s.lastLeaderContact < timeoutMs;
}

/**
 * Follower: the earliest local time at which heartbeat `m` can have been sent, never before its
 * true send time: its send time (leader clock) plus the smallest (receipt − send) offset seen from
 * this leader in this term, which is the clock offset plus the shortest delay, aged by the largest
 * relative rate error so that drift cannot make it too small. The first heartbeat of a term
 * counts as sent on arrival, and so does one whose send time is below the last one's (the
 * leader's agent restarted: a new clock). An estimate that is too early only makes a heartbeat count as late
 * (lost): safety never depends on it, because a late heartbeat is not acknowledged either.
 * Returns the estimate and the updated clock.
 */
export function hbSendTime(clock: HbClock | null, now: number, from: string, m: HbTimes, maxDrift = 0.5): { sent: number; clock: HbClock } {
  const rel = (2 * maxDrift) / (1 - maxDrift);
  let c = clock;
  if (!c || c.leader !== from || c.term !== m.term || m.seq < c.lastSeq) c = { leader: from, term: m.term, minOffset: Infinity, at: now, lastSeq: m.seq, lateSince: null };
  const aged = c.minOffset + rel * (now - c.at);
  c = { ...c, minOffset: Math.min(aged, now - m.seq), at: now, lastSeq: m.seq };
  const est = m.seq + c.minOffset;
  return { sent: Math.min(now, est + rel * (now - est)), clock: c };
}

/**
 * A heartbeat that arrives after the leader stopped accepting acknowledgements for it (held in
 * a queue while a link was cut): its ack could not extend any lease, so it is not leader contact.
 * Without `left` (an older leader) the bound is lease_ms: no lease outlives its heartbeat by more.
 * A held backlog arrives at once; late heartbeats that keep coming for heartbeat_ms mean the
 * leader's clock changed (its agent restarted and resumed the term): start its clock afresh.
 * Returns whether it is late and the updated clock.
 */
export function arrivedLate(clock: HbClock | null, now: number, from: string, m: HbTimes, o: ContactOptions): { late: boolean; clock: HbClock } {
  const d = o.maxDrift ?? 0.5;
  const { sent, clock: c } = hbSendTime(clock, now, from, m, d);
  const left = Math.max(0, m.left ?? o.leaseMs);
  if (sent + (left * (1 + d)) / (1 - d) >= now) return { late: false, clock: { ...c, lateSince: null } };
  if (c.lateSince !== null && now - c.lateSince >= o.heartbeatMs) return { late: false, clock: hbSendTime(null, now, from, m, d).clock };
  return { late: true, clock: { ...c, lateSince: c.lateSince ?? now } };
}

/**
 * Leader: the end of the lease that the newest heartbeats a majority acknowledged give it (acks:
 * send time of the newest acknowledged heartbeat per voter; itself counts as now). During a
 * one-voter change a majority of the previous set also meets every majority of the new one, so its
 * acknowledgements still hold the lease (a joiner that has not answered yet must not cost the
 * leader its lease).
 */
export function leaseUntil(
  self: string, acks: ReadonlyMap<string, number>, now: number, leaseMs: number, voters: readonly string[], prevVoters: readonly string[] | null,
): number {
  const values = { get: (v: string) => (v === self ? now : acks.get(v)) };
  const under = (vs: readonly string[]) => quorumMin(vs, values) + leaseMs;
  return prevVoters ? Math.max(under(voters), under(prevVoters)) : under(voters);
}

/** Leader: the highest guard seq stored by a majority of voters (itself included, with `ownSeq`). */
export function guardCommitted(self: string, ownSeq: number, peerGuardSeq: ReadonlyMap<string, number>, voters: readonly string[]): number {
  return Math.max(0, quorumMin(voters, { get: (v) => (v === self ? ownSeq : peerGuardSeq.get(v)) }));
}
