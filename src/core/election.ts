// Raft leader election with a leader lease, without log replication.
//
// Pure and deterministic: every input is an Event carrying the local monotonic
// time `now`; every output is a Ready saying what to persist (durably, first),
// whether this node may act as leader, which messages to send, and when to be
// woken next. No sockets, timers, clocks or randomness of its own (the random
// source is injected), so a simulator can drive thousands of faulty schedules.
//
// Safety rules (docs/design.md explains why they hold):
//  - term, votedFor and the membership are persisted before any message that
//    depends on them leaves the node (Ready.persist before Ready.send);
//  - a node that heard a live leader within timeoutMs (or booted less than
//    timeoutMs ago) neither grants votes nor campaigns: this, and
//    leaseMs/(1-drift) + fence < timeoutMs/(1+drift), keeps leases disjoint;
//  - the leader counts its lease from the *send* time of the newest heartbeat
//    a majority acknowledged, and steps down the moment it runs out;
//  - pre-vote first, so a node that was cut off cannot raise the term and
//    depose a healthy leader when it returns;
//  - a voter refuses a candidate whose membership version or data position is
//    behind its own;
//  - membership changes one voter at a time, only once the leader's current
//    membership is committed (Raft's single-server change rule).

import { comparePosition, type Position, samePosition, ZERO_POSITION } from "./position.ts";
import { hasMajority, majority, quorumMin } from "./quorum.ts";
import type { ElectionMsg, Guard, Membership, MembershipVersion } from "./messages.ts";

export type Role = "follower" | "precandidate" | "candidate" | "leader";

export interface ElectionOptions {
  id: string;
  /** false for witnesses: they vote but never stand. */
  canLead: boolean;
  heartbeatMs: number;
  leaseMs: number;
  timeoutMs: number;
  jitterMs: number;
  /** Time to stop PostgreSQL after a lease runs out; an ex-leader does not vote before it has passed. */
  fenceMs: number;
  /**
   * 0..1: the share of jitter_ms this node waits on top of timeout_ms before standing. Nodes with
   * a higher `priority` get a smaller share, so among equally advanced standbys they stand first.
   */
  jitterShare?: number;
  /** Uniform in [0, 1). Injected so runs are reproducible. */
  random: () => number;
}

/** What survives a restart. Written with fsync before dependent messages are sent. */
export interface Persistent {
  term: number;
  votedFor: string | null;
  membership: Membership | null;
  /**
   * The term this node won, if it is the current one: an agent restart (PostgreSQL left
   * running) resumes leadership of that term instead of forcing an election. Safe because
   * no other node can lead that term, and followers that moved on reject its heartbeats.
   */
  ledTerm?: number | null;
  /** The last durability guard learned from a leader (or set as leader). */
  guard?: Guard | null;
}

export type Event =
  | { type: "tick"; now: number }
  | { type: "recv"; now: number; from: string; msg: ElectionMsg }
  | { type: "position"; now: number; position: Position }
  | { type: "propose"; now: number; op: "add" | "remove"; node: string }
  | { type: "bootstrap"; now: number; membership: Membership }
  | { type: "resign"; now: number; reason: string; transferTo?: string }
  /**
   * A human picked this node (`pgherd failover --to`): stand now; voters still apply every check,
   * except the durability guard when `force` (--accept-data-loss).
   */
  | { type: "campaign"; now: number; force?: boolean }
  /** Leader only: the new durability guard (seq assigned here). */
  | { type: "guard"; now: number; block: boolean; floor: Position | null };

export interface Notice {
  kind:
    | "became-leader" | "lease-acquired" | "stepped-down" | "leader-changed" | "campaign"
    | "prevote-failed" | "vote-granted" | "vote-refused" | "membership-changed"
    | "membership-committed" | "proposal-rejected";
  detail: string;
}

export interface Ready {
  /** Write durably before sending anything below. */
  persist: Persistent | null;
  /**
   * Leader with a valid lease: the data service may accept writes until
   * `until` (local monotonic ms). null: it must not (fence before sending).
   */
  leading: { term: number; until: number } | null;
  send: Array<{ to: string; msg: ElectionMsg }>;
  notices: Notice[];
  /** Local time at which a tick is due. */
  wakeAt: number;
}

export interface Status {
  id: string;
  role: Role;
  term: number;
  votedFor: string | null;
  leader: string | null;
  membership: Membership | null;
  membershipCommitted: boolean;
  leaseUntil: number | null;
  lastLeaderContact: number | null;
  position: Position;
  guard: Guard | null;
  /** Leader during a membership change: the previous voters, whose majority still counts for the lease. */
  prevVoters: readonly string[] | null;
  /** Leader: highest guard seq a majority has stored (0 before any). */
  guardCommitted: number;
}

/** The seam an etcd-backed implementation could satisfy later. */
export interface Consensus {
  step(ev: Event): Ready;
  status(now: number): Status;
}

function versionOf(m: Membership | null): MembershipVersion {
  return m ? { term: m.term, index: m.index } : { term: -1, index: -1 };
}

function compareVersion(a: MembershipVersion, b: MembershipVersion): number {
  return a.term !== b.term ? a.term - b.term : a.index - b.index;
}

export class Election implements Consensus {
  private readonly o: ElectionOptions;
  private term: number;
  private votedFor: string | null;
  private membership: Membership | null;

  private role: Role = "follower";
  private leader: string | null = null;
  /** Last time a live leader was heard; boot time counts (we may have acked one just before a crash). */
  private lastLeaderContact: number | null;
  private electionDeadline: number;
  private position: Position = ZERO_POSITION;

  // candidate / precandidate
  private granted = new Set<string>();
  private readonly refusals = new Map<string, string>();
  private roundTerm = 0;
  // leader
  private becameLeaderAt = 0;
  private acks = new Map<string, number>();
  private peerVersions = new Map<string, MembershipVersion>();
  private committed = false;
  private nextHeartbeat = 0;
  private hadLease = false;
  /** An ex-leader neither votes nor campaigns before its fencing surely finished. */
  private quietUntil = -Infinity;
  private ledTerm: number | null = null;
  /** The voters before the latest, not yet committed, membership change. */
  private prevVoters: readonly string[] | null = null;
  private guard: Guard | null = null;
  private readonly peerGuardSeq = new Map<string, number>();
  /** This candidacy was forced by a human (--accept-data-loss): voters skip the guard. */
  private forceRound = false;
  /** After resigning, give the others a full election timeout to take over before standing again. */
  private noCampaignUntil = -Infinity;

  private out!: Ready;

  constructor(o: ElectionOptions, saved: Persistent, now: number) {
    this.o = o;
    this.term = saved.term;
    this.votedFor = saved.votedFor;
    this.membership = saved.membership;
    this.lastLeaderContact = now;
    this.electionDeadline = this.randomDeadline(now);
    this.ledTerm = saved.ledTerm ?? null;
    this.guard = saved.guard ?? null;
    if (this.ledTerm === this.term && this.votedFor === o.id && this.membership && o.canLead) {
      // Resume: no lease until a majority acknowledges heartbeats sent by this process.
      this.role = "leader";
      this.leader = o.id;
      this.becameLeaderAt = now;
      this.committed = false;
      this.nextHeartbeat = now;
    }
  }

  status(now: number): Status {
    return {
      id: this.o.id,
      role: this.role,
      term: this.term,
      votedFor: this.votedFor,
      leader: this.leader,
      membership: this.membership,
      membershipCommitted: this.role === "leader" ? this.committed : true,
      leaseUntil: this.role === "leader" ? this.leaseUntil(now) : null,
      lastLeaderContact: this.lastLeaderContact,
      position: this.position,
      guard: this.guard,
      prevVoters: this.role === "leader" ? this.prevVoters : null,
      guardCommitted: this.role === "leader" ? this.guardCommitted(now) : 0,
    };
  }

  step(ev: Event): Ready {
    this.out = { persist: null, leading: null, send: [], notices: [], wakeAt: Infinity };
    const now = ev.now;
    // A process that was frozen must find out its lease ran out before it does anything else.
    this.checkLease(now);
    switch (ev.type) {
      case "tick": this.onTick(now); break;
      case "recv": this.onMessage(now, ev.from, ev.msg); break;
      case "position": this.position = ev.position; break;
      case "propose": this.onPropose(now, ev.op, ev.node); break;
      case "bootstrap": this.onBootstrap(ev.membership); break;
      case "resign": this.onResign(now, ev.reason, ev.transferTo); break;
      case "campaign":
        if (this.role !== "leader" && this.o.canLead && this.membership && this.isVoter(this.o.id)) {
          this.forceRound = ev.force === true;
          this.noCampaignUntil = -Infinity;
          this.startPreVote(now);
        }
        break;
      case "guard":
        if (this.role === "leader") {
          this.guard = { term: this.term, seq: (this.guard?.seq ?? 0) + 1, block: ev.block, holder: ev.block ? this.o.id : null, floor: ev.floor };
          this.persist();
          this.sendHeartbeats(now);
        }
        break;
    }
    this.checkLease(now);
    if (this.role === "leader") {
      const until = this.leaseUntil(now);
      if (until > now) this.out.leading = { term: this.term, until };
      this.out.wakeAt = Math.min(this.nextHeartbeat, Math.max(until, this.becameLeaderAt + this.o.leaseMs));
    } else {
      this.out.wakeAt = this.electionDeadline;
    }
    return this.out;
  }

  // ---------------------------------------------------------------- helpers

  private voters(): readonly string[] {
    return this.membership?.voters ?? [];
  }

  private isVoter(id: string): boolean {
    return this.voters().includes(id);
  }

  private notice(kind: Notice["kind"], detail: string): void {
    this.out.notices.push({ kind, detail });
  }

  private persist(): void {
    this.out.persist = { term: this.term, votedFor: this.votedFor, membership: this.membership, ledTerm: this.ledTerm, guard: this.guard };
  }

  private send(to: string, msg: ElectionMsg): void {
    if (to !== this.o.id) this.out.send.push({ to, msg });
  }

  private broadcast(msg: ElectionMsg): void {
    for (const v of this.voters()) this.send(v, msg);
  }

  private randomDeadline(now: number): number {
    return now + this.o.timeoutMs + Math.floor(this.o.random() * (this.o.jitterMs * (this.o.jitterShare ?? 1) + 1));
  }

  private heardLeaderRecently(now: number): boolean {
    if (this.role === "leader" || now < this.quietUntil) return true;
    return this.lastLeaderContact !== null && now - this.lastLeaderContact < this.o.timeoutMs;
  }

  private leaseUntil(now: number): number {
    const values = new Map(this.acks);
    values.set(this.o.id, now);
    const under = (voters: readonly string[]) => quorumMin(voters, values) + this.o.leaseMs;
    // During a one-voter change a majority of the previous set also meets every majority of the
    // new one, so its acknowledgements still hold the lease (a joiner that has not answered yet
    // must not cost the leader its lease).
    return this.prevVoters ? Math.max(under(this.voters()), under(this.prevVoters)) : under(this.voters());
  }

  private checkLease(now: number): void {
    if (this.role !== "leader") return;
    const until = this.leaseUntil(now);
    if (until > now) {
      if (!this.hadLease) {
        this.hadLease = true;
        this.notice("lease-acquired", `term ${this.term}: a majority acknowledged; lease valid`);
      }
      return;
    }
    // Without acks yet a fresh leader gets leaseMs to collect them; it does not lead meanwhile.
    if (!this.hadLease && now < this.becameLeaderAt + this.o.leaseMs) return;
    this.stepDown(now, `lease expired in term ${this.term}: no majority acknowledged a heartbeat within lease_ms (${this.o.leaseMs} ms)`, false);
  }

  /**
   * Leave leadership or candidacy. heardLeader: whether to start the vote quiet period.
   * fenced: the shell already stopped writes (resign); otherwise the watchdog may
   * still be fencing, so stay quiet for fenceMs past the lease.
   */
  private stepDown(now: number, reason: string, heardLeader: boolean, fenced = false): void {
    const wasLeader = this.role === "leader";
    if (wasLeader && !fenced) this.quietUntil = Math.max(now, this.leaseUntil(now)) + this.o.fenceMs;
    if (wasLeader) {
      this.ledTerm = null;
      this.persist();
    }
    this.role = "follower";
    this.leader = null;
    this.granted.clear();
    this.acks.clear();
    this.hadLease = false;
    this.prevVoters = null;
    if (heardLeader) this.lastLeaderContact = now;
    this.electionDeadline = this.randomDeadline(now);
    if (wasLeader) this.notice("stepped-down", reason);
  }

  private becomeFollowerOf(now: number, term: number): void {
    if (term > this.term) {
      this.term = term;
      this.votedFor = null;
      this.leader = null; // the old term's leader leads nothing in this one
      this.persist();
    }
    if (this.role !== "follower") this.stepDown(now, `saw term ${term}`, false);
  }

  private upToDate(cfg: MembershipVersion, pos: Position, force = false, candidate?: string): string | null {
    if (compareVersion(cfg, versionOf(this.membership)) < 0) return "membership-behind";
    if (comparePosition(pos, this.position) < 0) return "position-behind";
    if (!force && this.guard?.block && candidate !== this.guard.holder) return "no candidate is known to hold every acknowledged write (the primary ran without enough synchronous standbys)";
    if (!force && this.guard?.floor && comparePosition(pos, this.guard.floor) < 0) return "behind the last primary position the cluster must keep";
    return null;
  }

  /** Leader: the highest guard seq stored by a majority of voters (itself included). */
  private guardCommitted(now: number): number {
    void now;
    const values = new Map(this.peerGuardSeq);
    values.set(this.o.id, this.guard?.seq ?? 0);
    return Math.max(0, quorumMin(this.voters(), values));
  }

  /** Would a vote request be granted right now? Pure: lets the shell stop replication before answering. */
  wouldGrant(now: number, from: string, m: Extract<ElectionMsg, { t: "vote" }>): boolean {
    if (this.heardLeaderRecently(now) || m.term < this.term) return false;
    if (m.term === this.term && this.votedFor !== null && this.votedFor !== from) return false;
    return this.upToDate(m.cfg, m.pos, m.force === true, from) === null;
  }

  /** Our membership when it is newer than the candidate's, so a behind candidate can catch up. */
  private newerMembership(theirs: MembershipVersion): Membership | undefined {
    return this.membership && compareVersion(versionOf(this.membership), theirs) > 0 ? this.membership : undefined;
  }

  /**
   * Adopt a newer membership a voter told us about. Versions are (term, index)
   * and only a leader stamps a new term's version after committing its no-op,
   * so moving to a higher version is what the leader's heartbeat would have
   * done; without it a node with the newest data but an old membership and a
   * node with the newest membership but old data could refuse each other forever.
   */
  private learnMembership(m: Membership | undefined): void {
    if (!m || this.role === "leader" || compareVersion(versionOf(m), versionOf(this.membership)) <= 0) return;
    this.membership = m;
    this.persist();
    this.notice("membership-changed", `learned voters ${m.voters.join(",")} (v${m.term}.${m.index}) from a voter`);
  }

  // ---------------------------------------------------------------- timers

  private onTick(now: number): void {
    if (this.role === "leader") {
      if (now >= this.nextHeartbeat) this.sendHeartbeats(now);
      return;
    }
    if (now < this.electionDeadline) return;
    if (this.role === "precandidate" || this.role === "candidate") {
      const why = [...this.refusals].map(([v, r]) => `${v}: ${r}`).join("; ");
      this.notice("prevote-failed", `${this.role} round for term ${this.roundTerm} got ${this.granted.size} of ${majority(this.voters().length)} needed${why ? ` (refused by ${why})` : ""}`);
      this.role = "follower";
      this.granted.clear();
    }
    if (!this.o.canLead || !this.membership || !this.isVoter(this.o.id)) {
      this.electionDeadline = this.randomDeadline(now);
      return;
    }
    if (this.heardLeaderRecently(now)) {
      this.electionDeadline = Math.max(this.randomDeadline(now), (this.lastLeaderContact ?? now) + this.o.timeoutMs);
      return;
    }
    if (now < this.noCampaignUntil) {
      this.electionDeadline = this.noCampaignUntil;
      return;
    }
    this.startPreVote(now);
  }

  private startPreVote(now: number): void {
    this.role = "precandidate";
    this.leader = null;
    this.roundTerm = this.term + 1;
    this.granted = new Set([this.o.id]);
    this.refusals.clear();
    this.electionDeadline = this.randomDeadline(now);
    this.notice("campaign", `pre-vote for term ${this.roundTerm}`);
    this.broadcast({ t: "prevote", term: this.roundTerm, cfg: versionOf(this.membership), pos: this.position, ...(this.forceRound ? { force: true } : {}), ...(this.guard ? { guard: this.guard } : {}) });
    this.maybeWinPreVote(now);
  }

  private maybeWinPreVote(now: number): void {
    if (this.role !== "precandidate" || !hasMajority(this.voters(), this.granted)) return;
    this.role = "candidate";
    this.term = this.roundTerm;
    this.votedFor = this.o.id;
    this.persist();
    this.granted = new Set([this.o.id]);
    this.electionDeadline = this.randomDeadline(now);
    this.notice("campaign", `election for term ${this.term}`);
    this.broadcast({ t: "vote", term: this.term, cfg: versionOf(this.membership), pos: this.position, ...(this.forceRound ? { force: true } : {}), ...(this.guard ? { guard: this.guard } : {}) });
    this.maybeWinVote(now);
  }

  private maybeWinVote(now: number): void {
    if (this.role !== "candidate" || !hasMajority(this.voters(), this.granted)) return;
    this.role = "leader";
    this.leader = this.o.id;
    this.becameLeaderAt = now;
    this.acks.clear();
    this.peerVersions.clear();
    this.hadLease = false;
    // Re-stamp the membership in our term (Raft's no-op entry): until a majority
    // stores it, no membership change may start.
    const m = this.membership!;
    this.membership = { term: this.term, index: m.index + 1, voters: m.voters };
    this.committed = this.voters().length === 1;
    this.ledTerm = this.term;
    this.peerGuardSeq.clear();
    // Elected past the guard's checks; a forced (accept-data-loss) election starts a clean slate.
    this.guard = {
      term: this.term, seq: (this.guard?.seq ?? 0) + 1, block: this.forceRound ? false : (this.guard?.block ?? false),
      holder: this.forceRound ? null : (this.guard?.holder ?? null), floor: this.forceRound ? null : (this.guard?.floor ?? null),
    };
    this.forceRound = false;
    this.persist();
    this.notice("became-leader", `won term ${this.term} with ${[...this.granted].sort().join(",")}`);
    this.sendHeartbeats(now);
  }

  private sendHeartbeats(now: number): void {
    this.nextHeartbeat = now + this.o.heartbeatMs;
    this.broadcast({ t: "hb", term: this.term, seq: now, membership: this.membership!, pos: this.position, ...(this.guard ? { guard: this.guard } : {}) });
  }

  // ---------------------------------------------------------------- messages

  private onMessage(now: number, from: string, msg: ElectionMsg): void {
    switch (msg.t) {
      case "prevote": return this.onPreVote(now, from, msg);
      case "prevote-resp":
        this.learnMembership(msg.membership);
        // Refusals carry the voter's own term; grants echo the round's term.
        if (!msg.granted && this.role === "precandidate" && msg.reason) this.refusals.set(from, msg.reason);
        if (!msg.granted && msg.term > this.term) this.becomeFollowerOf(now, msg.term);
        else if (this.role === "precandidate" && msg.term === this.roundTerm && msg.granted) {
          this.granted.add(from);
          this.maybeWinPreVote(now);
        }
        return;
      case "vote": return this.onVote(now, from, msg);
      case "vote-resp":
        this.learnMembership(msg.membership);
        if (msg.term > this.term) return this.becomeFollowerOf(now, msg.term);
        if (this.role === "candidate" && msg.term === this.term && msg.granted) {
          this.granted.add(from);
          this.maybeWinVote(now);
        }
        return;
      case "hb": return this.onHeartbeat(now, from, msg);
      case "hb-resp": return this.onHeartbeatResp(now, from, msg);
      case "resign":
        if (msg.term === this.term && this.leader === from) {
          this.leader = null;
          this.lastLeaderContact = null;
          this.electionDeadline = msg.transferTo === this.o.id ? now : this.randomDeadline(now);
          this.notice("leader-changed", `${from} resigned term ${msg.term}`);
          if (msg.transferTo === this.o.id) {
            this.noCampaignUntil = -Infinity; // handed to us: our own earlier resignation no longer holds us back
            this.onTick(now);
          }
        }
        return;
    }
  }

  /** A guard set by a later leader supersedes ours (that leader was elected past ours). */
  private learnGuard(g: Guard | undefined): void {
    if (!g || this.role === "leader") return;
    const mine = this.guard;
    if (mine && ((g.term ?? 0) < (mine.term ?? 0) || ((g.term ?? 0) === (mine.term ?? 0) && g.seq <= mine.seq))) return;
    this.guard = g;
    this.persist();
  }

  private onPreVote(now: number, from: string, m: Extract<ElectionMsg, { t: "prevote" }>): void {
    this.learnGuard(m.guard);
    let reason: string | null = null;
    if (this.heardLeaderRecently(now)) reason = "leader-alive";
    else if (m.term <= this.term) reason = "stale-term";
    else reason = this.upToDate(m.cfg, m.pos, m.force === true, from);
    // Pre-votes change nothing here: no term bump, no vote recorded.
    if (reason) this.send(from, { t: "prevote-resp", term: this.term, granted: false, reason, membership: this.newerMembership(m.cfg) });
    else this.send(from, { t: "prevote-resp", term: m.term, granted: true });
  }

  private onVote(now: number, from: string, m: Extract<ElectionMsg, { t: "vote" }>): void {
    this.learnGuard(m.guard);
    // Within timeoutMs of a live leader we do not even adopt the higher term:
    // that is what makes the leader's lease safe.
    if (this.heardLeaderRecently(now)) {
      this.send(from, { t: "vote-resp", term: this.term, granted: false, reason: "leader-alive" });
      return;
    }
    if (m.term < this.term) {
      this.send(from, { t: "vote-resp", term: this.term, granted: false, reason: "stale-term" });
      return;
    }
    if (m.term > this.term) this.becomeFollowerOf(now, m.term);
    let reason = this.upToDate(m.cfg, m.pos, m.force === true, from);
    if (!reason && this.votedFor !== null && this.votedFor !== from) reason = `already voted for ${this.votedFor}`;
    if (reason) {
      this.notice("vote-refused", `term ${m.term} to ${from}: ${reason}`);
      this.send(from, { t: "vote-resp", term: this.term, granted: false, reason, membership: this.newerMembership(m.cfg) });
      return;
    }
    if (this.votedFor !== from) {
      this.votedFor = from;
      this.persist();
    }
    this.electionDeadline = this.randomDeadline(now);
    this.notice("vote-granted", `term ${m.term} to ${from}`);
    this.send(from, { t: "vote-resp", term: this.term, granted: true });
  }

  private onHeartbeat(now: number, from: string, m: Extract<ElectionMsg, { t: "hb" }>): void {
    if (m.term < this.term) {
      this.send(from, { t: "hb-resp", term: this.term, seq: m.seq, ok: false, cfg: versionOf(this.membership) });
      return;
    }
    if (this.role === "leader" && m.term === this.term) return; // impossible: one leader per term
    this.becomeFollowerOf(now, m.term);
    if (this.leader !== from) {
      this.leader = from;
      this.notice("leader-changed", `${from} leads term ${m.term}`);
    }
    this.lastLeaderContact = now;
    this.electionDeadline = this.randomDeadline(now);
    // The leader of the current term is authoritative for membership (Raft: its log wins).
    if (compareVersion(versionOf(m.membership), versionOf(this.membership)) !== 0) {
      this.membership = m.membership;
      this.persist();
      this.notice("membership-changed", `voters ${m.membership.voters.join(",")} (v${m.membership.term}.${m.membership.index})`);
    }
    if (m.guard && (this.guard?.seq !== m.guard.seq || this.guard.block !== m.guard.block || this.guard.holder !== m.guard.holder || !samePosition(this.guard.floor, m.guard.floor))) {
      this.guard = m.guard;
      this.persist();
    }
    this.send(from, { t: "hb-resp", term: this.term, seq: m.seq, ok: true, cfg: versionOf(this.membership), ...(this.guard ? { guardSeq: this.guard.seq } : {}) });
  }

  private onHeartbeatResp(now: number, from: string, m: Extract<ElectionMsg, { t: "hb-resp" }>): void {
    if (m.term > this.term) {
      if (this.role === "leader") this.stepDown(now, `a voter is in term ${m.term}`, false);
      this.becomeFollowerOf(now, m.term);
      return;
    }
    if (this.role !== "leader" || m.term !== this.term || !m.ok) return;
    if (m.seq > now) return; // not a time we sent; ignore
    this.acks.set(from, Math.max(this.acks.get(from) ?? -Infinity, m.seq));
    if (m.guardSeq !== undefined) this.peerGuardSeq.set(from, Math.max(this.peerGuardSeq.get(from) ?? 0, m.guardSeq));
    this.peerVersions.set(from, m.cfg);
    if (!this.committed) {
      const have = new Set([this.o.id]);
      const mine = versionOf(this.membership);
      for (const [p, v] of this.peerVersions) if (compareVersion(v, mine) === 0) have.add(p);
      if (hasMajority(this.voters(), have)) {
        this.committed = true;
        this.prevVoters = null;
        this.notice("membership-committed", `voters ${this.voters().join(",")} (v${mine.term}.${mine.index})`);
      }
    }
  }

  // ---------------------------------------------------------------- commands

  private onPropose(now: number, op: "add" | "remove", node: string): void {
    const reject = (why: string) => this.notice("proposal-rejected", `${op} ${node}: ${why}`);
    if (this.role !== "leader" || !this.membership) return reject("not the leader");
    if (!this.committed) return reject("previous membership change not committed yet");
    const voters = this.membership.voters;
    if (op === "add" && voters.includes(node)) return reject("already a voter");
    if (op === "remove" && !voters.includes(node)) return reject("not a voter");
    if (op === "remove" && node === this.o.id) return reject("the leader cannot remove itself; transfer leadership first");
    const next = op === "add" ? [...voters, node].sort() : voters.filter((v) => v !== node);
    this.prevVoters = voters;
    this.membership = { term: this.term, index: this.membership.index + 1, voters: next };
    this.committed = false;
    this.peerVersions.clear();
    this.persist();
    this.notice("membership-changed", `${op} ${node}: voters ${next.join(",")}`);
    this.sendHeartbeats(now);
  }

  private onBootstrap(m: Membership): void {
    if (this.membership) return; // only ever the first membership
    this.membership = m;
    this.persist();
    this.notice("membership-changed", `bootstrapped with voters ${m.voters.join(",")}`);
  }

  private onResign(now: number, reason: string, transferTo?: string): void {
    if (this.role !== "leader") return;
    const term = this.term;
    // Stepping down ends the lease now; the shell fences before these messages go out.
    this.stepDown(now, `resigned: ${reason}`, false, true);
    this.noCampaignUntil = now + this.o.timeoutMs;
    this.broadcast({ t: "resign", term, transferTo });
  }
}

