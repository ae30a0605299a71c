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
//    a majority acknowledged, and steps down the moment it runs out, or when the
//    shell reports a host suspend (`now`'s clock stood still through it);
//  - a heartbeat that arrives after the lease it was sent under ran out (held
//    in a queue while a link was cut) is neither acknowledged nor counted as
//    leader contact: like a lost message, so a flapping leader link does not
//    keep followers from electing a new leader;
//  - pre-vote first, so a node that was cut off cannot raise the term and
//    depose a healthy leader when it returns;
//  - a voter refuses a candidate whose membership version or data position is
//    behind its own;
//  - membership changes one voter at a time, only once the leader's current
//    membership is committed (Raft's single-server change rule);
//  - a database node (detachBeforeVote) neither grants a vote or pre-vote nor stands before
//    this process's shell reported its data position once (a `position` event): until then the
//    core's position is ZERO, not the node's, and any candidate would look up to date;
//  - a database node (detachBeforeVote) answers a vote it would grant only after
//    the shell stopped streaming from the old primary and reported its final
//    position (Ready.detach → `detached`), the way etcd/raft holds responses
//    until storage confirms; it then decides again with that position.

import { comparePosition, type Position, ZERO_POSITION } from "./position.ts";
import { maxTimeline, withTimeline } from "./timelines.ts";
import { hasMajority, majority, quorumMin } from "./quorum.ts";
import type { ElectionMsg, Guard, Membership, MembershipVersion } from "./messages.ts";
import { arrivedLate, guardCommitted, heardLeaderRecently, leaseUntil, type HbClock } from "./election-contact.ts";
import { electionMargins } from "../config/margins.ts";
import { compareVersion, isNewer, newerMembership, planMembershipChange, proposed, restamp, storedByMajority, versionOf, type ProposeOp } from "./election-membership.ts";
import { DETACH_TIMEOUT_MS, FORCED_CAMPAIGN_MS, type Consensus, type ElectionOptions, type Event, type Notice, type Persistent, type Ready, type Role, type Status } from "./election-types.ts";

export { planMembershipChange, proposed, type ProposeOp } from "./election-membership.ts";
export { DETACH_TIMEOUT_MS, type Consensus, type ElectionOptions, type Event, type Notice, type Persistent, type Ready, type Role, type Status } from "./election-types.ts";

type VoteMsg = Extract<ElectionMsg, { t: "vote" }>;

/** Why a database node whose shell has not reported its position yet neither votes nor stands. */
const POSITION_UNKNOWN = "own position not known yet (no monitoring round since the agent started)";

/** peerGuardTimeline for a follower that acknowledges guards without echoing their reservation (an older version). */
const LEGACY = -1;

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
  /** The `now` of the last step if it moved electionDeadline (moved again by a "sent" event), else null. */
  private deadlineSetAt: number | null = null;
  private position: Position = ZERO_POSITION;
  /** A `position` event arrived in this process (always true on a witness: it holds no data). */
  private positionKnown: boolean;

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
  /** The highest timeline reservation the votes of this node's candidacies carried (core/timelines.ts). */
  private votersTimeline: number | undefined = undefined;
  private readonly peerGuardSeq = new Map<string, number>();
  /** Leader: the timeline reservation each follower said it stored with this term's guard. */
  private readonly peerGuardTimeline = new Map<string, number>();
  /** This candidacy was forced by a human (--accept-data-loss): voters skip the guard. */
  private forceRound = false;
  /** Why this node's guard keeps it from standing, as last noticed (said once per reason). */
  private ownRefusal: string | null = null;
  /** Rounds started from here on are not forced (FORCED_CAMPAIGN_MS after the campaign). */
  private forceUntil = -Infinity;
  /** After resigning, give the others their full election timeout (with jitter) to take over before standing again. */
  private noCampaignUntil = -Infinity;
  /** Highest term for which the shell confirmed that streaming from the old primary stopped (this process). */
  private detachedTerm = -1;
  /** A vote this node would grant, held until `detached` for its term (or the deadline: refused). */
  private pendingVote: { term: number; from: string; msg: VoteMsg; until: number } | null = null;
  /** The highest term for whose pre-vote this node gave a candidate a head start (onPreVote). */
  private yieldedFor = -1;
  /** The term whose leader resigned naming this node its successor: its rounds for the next term say so. */
  private handedTerm = -1;
  /** Follower: the current leader's clock as seen here (send-time estimates, election-contact.ts). */
  private hbClock: HbClock | null = null;
  /**
   * Follower: how long the leader of the last heartbeat said to wait after it before voting or
   * standing (its own lease, fence and drift as margins.ts counts them; 0: not said, an older leader).
   * Timers may differ per host: a leader with a longer lease than this node's timeout covers would
   * otherwise still hold it when this node helps elect another (review: 3.4 s of two leases).
   */
  private leaderHoldMs = 0;
  /** Leader: the hold its heartbeats announce (0 without max_drift: not announced). */
  private readonly holdMs: number;

  private out!: Ready;

  constructor(o: ElectionOptions, saved: Persistent, now: number) {
    this.o = o;
    this.holdMs = o.maxDrift === undefined ? 0 : electionMargins({ lease_ms: o.leaseMs, fence_ms: o.fenceMs, max_drift: o.maxDrift, timeout_ms: o.timeoutMs }).minTimeoutMs;
    this.positionKnown = !o.detachBeforeVote;
    this.term = saved.term;
    this.votedFor = saved.votedFor;
    this.membership = saved.membership;
    this.lastLeaderContact = now;
    // It may have acknowledged a heartbeat just before it stopped: that leader's hold counts from now.
    this.leaderHoldMs = saved.hold ?? 0;
    this.electionDeadline = Math.max(this.randomDeadline(now), now + this.leaderHoldMs);
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
      positionKnown: this.positionKnown,
      guard: this.guard,
      prevVoters: this.role === "leader" ? this.prevVoters : null,
      guardCommitted: this.role === "leader" ? this.guardCommitted() : 0,
      timelineCommitted: this.role === "leader" ? this.timelineCommitted() : 0,
      pendingVote: this.pendingVote ? { term: this.pendingVote.term, candidate: this.pendingVote.from, until: this.pendingVote.until } : null,
    };
  }

  step(ev: Event): Ready {
    this.out = { persist: null, leading: null, send: [], detach: null, fence: false, notices: [], wakeAt: Infinity };
    const now = ev.now;
    const deadlineBefore = this.electionDeadline;
    // A process that was frozen must find out its lease ran out before it does anything else.
    this.checkLease(now);
    this.checkPendingVote(now);
    switch (ev.type) {
      case "tick": this.onTick(now); break;
      case "recv": this.onMessage(now, ev.from, ev.msg); break;
      case "position":
        this.position = ev.position;
        this.positionKnown = true;
        break;
      case "propose": this.onPropose(now, ev.op, ev.node); break;
      case "bootstrap": this.onBootstrap(now, ev.membership); break;
      case "resign": this.onResign(now, ev.reason, ev.transferTo); break;
      case "campaign":
        if (this.pendingVote) this.notice("campaign-refused", `not standing: ${this.pendingReason()}`);
        else if (!this.positionKnown) this.notice("campaign-refused", `not standing: ${POSITION_UNKNOWN}`);
        else if (this.role !== "leader" && this.o.canLead && this.membership && this.isVoter(this.o.id)) {
          this.forceRound = ev.force === true;
          this.forceUntil = now + FORCED_CAMPAIGN_MS;
          this.noCampaignUntil = -Infinity;
          this.startPreVote(now);
        }
        break;
      case "guard":
        if (this.role === "leader") {
          this.guard = withTimeline<Guard>({ term: this.term, seq: (this.guard?.seq ?? 0) + 1, block: ev.block, holder: ev.block ? this.o.id : null, floor: ev.floor }, this.guard?.timeline);
          this.persist();
          this.sendHeartbeats(now);
        }
        break;
      case "reserve-timeline":
        if (this.role === "leader") {
          const g = this.guard ?? { seq: 0, block: false, holder: null, floor: null };
          this.guard = withTimeline<Guard>({ ...g, term: this.term, seq: g.seq + 1 }, maxTimeline(g.timeline, ev.timeline));
          this.persist();
          this.sendHeartbeats(now);
        }
        break;
      case "detached": this.onDetached(now, ev); break;
      case "suspended":
        if (this.role === "leader") this.stepDown(now, `the host was suspended for about ${Math.round(ev.ms)} ms: the lease of term ${this.term} was counted on a clock that stood still meanwhile`, false);
        break;
      case "sent":
        // The round (or the wait for a leader) set in the persisting step starts as its messages leave.
        if (this.deadlineSetAt !== null && this.role !== "leader" && this.electionDeadline === deadlineBefore) this.electionDeadline += now - this.deadlineSetAt;
        break;
    }
    this.deadlineSetAt = ev.type !== "sent" && this.electionDeadline !== deadlineBefore ? now : null;
    this.checkLease(now);
    if (this.role === "leader") {
      const until = this.leaseUntil(now);
      if (until > now) this.out.leading = { term: this.term, until };
      this.out.wakeAt = Math.min(this.nextHeartbeat, Math.max(until, this.becameLeaderAt + this.o.leaseMs));
    } else {
      // A held vote keeps a follower from standing, so nothing is due before its deadline.
      this.out.wakeAt = this.pendingVote ? this.pendingVote.until : this.electionDeadline;
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
    this.out.persist = { term: this.term, votedFor: this.votedFor, membership: this.membership, ledTerm: this.ledTerm, guard: this.guard, hold: this.leaderHoldMs };
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

  /** How long after the last leader contact this node neither votes nor stands: its timeout, or the leader's announced hold if longer. */
  private contactTimeoutMs(): number {
    return Math.max(this.o.timeoutMs, this.leaderHoldMs);
  }

  private heardLeaderRecently(now: number): boolean {
    return heardLeaderRecently({ leading: this.role === "leader", quietUntil: this.quietUntil, lastLeaderContact: this.lastLeaderContact }, now, this.contactTimeoutMs());
  }

  private leaseUntil(now: number): number {
    return leaseUntil(this.o.id, this.acks, now, this.o.leaseMs, this.voters(), this.prevVoters);
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
      this.out.fence = true;
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
      const p = this.pendingVote;
      if (p) {
        this.pendingVote = null;
        this.refuseVote(p.from, p.msg, `term moved on to ${term} while stopping replication`);
      }
    }
    if (this.role !== "follower") this.stepDown(now, `saw term ${term}`, false);
  }

  private upToDate(cfg: MembershipVersion, pos: Position, force = false, candidate?: string): string | null {
    if (!this.positionKnown) return POSITION_UNKNOWN;
    if (compareVersion(cfg, versionOf(this.membership)) < 0) return "membership-behind";
    if (comparePosition(pos, this.position) < 0) return "position-behind";
    return force ? null : this.guardRefusal(pos, candidate);
  }

  /** Why the durability guard this node holds refuses `candidate` at `pos`, or null. */
  private guardRefusal(pos: Position, candidate: string | undefined): string | null {
    if (this.guard?.block && candidate !== this.guard.holder) return "no candidate is known to hold every acknowledged write (the primary ran without enough synchronous standbys)";
    if (this.guard?.floor && comparePosition(pos, this.guard.floor) < 0) return "behind the last primary position the cluster must keep";
    return null;
  }

  /**
   * Leader: the highest timeline reservation a majority stored. A follower echoes the one it stored
   * with each acknowledgement; one of an older version acknowledges the guard's seq without the
   * field, and counts as storing it: failover keeps working through a rolling upgrade, and the
   * reservation's guarantee holds once every voter runs this version (docs/design.md, S24).
   */
  private timelineCommitted(): number {
    const own = this.guard?.timeline ?? 0;
    const seq = this.guard?.seq ?? 0;
    return Math.max(0, quorumMin(this.voters(), {
      get: (v) => {
        if (v === this.o.id) return own;
        const echoed = this.peerGuardTimeline.get(v);
        if (echoed !== LEGACY) return echoed;
        return (this.peerGuardSeq.get(v) ?? 0) >= seq ? own : 0;
      },
    }));
  }

  /** Leader: the highest guard seq stored by a majority of voters (itself included). */
  private guardCommitted(): number {
    return guardCommitted(this.o.id, this.guard?.seq ?? 0, this.peerGuardSeq, this.voters());
  }

  /**
   * Adopt a newer membership a voter told us about (election-membership.ts isNewer): without it a
   * node with the newest data but an old membership and a node with the newest membership but old
   * data could refuse each other forever.
   */
  private learnMembership(m: Membership | undefined): void {
    if (this.role === "leader" || !isNewer(m, this.membership)) return;
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
      this.electionDeadline = Math.max(this.randomDeadline(now), (this.lastLeaderContact ?? now) + this.contactTimeoutMs());
      return;
    }
    if (now < this.noCampaignUntil) {
      this.electionDeadline = this.noCampaignUntil;
      return;
    }
    // Standing now would vote for ourselves in the term whose vote we hold: a split vote.
    if (this.pendingVote) return; // woken again at its deadline
    // Standing with ZERO for a position: our own vote would go to a candidate (us) maybe behind our data.
    if (!this.positionKnown) {
      this.electionDeadline = this.randomDeadline(now);
      return;
    }
    if (now >= this.forceUntil) this.forceRound = false; // the human's failover has given up by now
    // Its own vote by the rule it applies to others' candidacies: a voter that missed the guard learns
    // it from the request and refuses anyway, but a lone voter (`pgherd member force` left one) had
    // only its own vote and elected itself behind its floor or past a block it does not hold.
    const own = this.forceRound ? null : this.guardRefusal(this.position, this.o.id);
    if (own !== null) {
      if (own !== this.ownRefusal) this.notice("campaign-refused", `not standing: ${own}`);
      this.ownRefusal = own;
      this.leader = null; // not heard for an election timeout: no leader known, as a round would say
      this.electionDeadline = this.randomDeadline(now);
      return;
    }
    this.ownRefusal = null;
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
    this.broadcast({ t: "prevote", term: this.roundTerm, cfg: versionOf(this.membership), pos: this.position, ...this.roundFlags() });
    this.maybeWinPreVote(now);
  }

  /** What a round's requests carry besides term, membership and position. */
  private roundFlags(): { force?: true; guard?: Guard; transfer?: number } {
    return {
      ...(this.forceRound ? { force: true } : {}), ...(this.guard ? { guard: this.guard } : {}),
      // Handed the next term by its resigned leader: a voter the resign has not reached yet grants anyway.
      ...(this.handedTerm === this.roundTerm - 1 ? { transfer: this.handedTerm } : {}),
    };
  }

  /**
   * A candidate says the leader of `transfer` resigned, handing that term on to it. The resign went
   * out over other connections and may arrive after the candidate's requests; the leader stopped
   * writes and fenced before it sent the resign, and never leads that term again, so the leader
   * contact of this term ends here as it would at the resign. An ex-leader's quiet period stands.
   */
  private takeTransfer(from: string, transfer: number | undefined): void {
    if (transfer === undefined || transfer !== this.term || this.role === "leader") return;
    if (this.leader !== null) this.notice("leader-changed", `${from} was handed term ${transfer + 1} by ${this.leader}, which resigned term ${transfer}`);
    this.leader = null;
    this.lastLeaderContact = null;
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
    this.broadcast({ t: "vote", term: this.term, cfg: versionOf(this.membership), pos: this.position, ...this.roundFlags() });
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
    this.membership = restamp(this.membership!, this.term);
    this.committed = this.voters().length === 1;
    this.ledTerm = this.term;
    this.peerGuardSeq.clear();
    this.peerGuardTimeline.clear();
    // Elected past the guard's checks; a forced (accept-data-loss) election starts a clean slate.
    // The timeline reservation is kept even then: it says which numbers other histories may hold.
    this.guard = withTimeline<Guard>({
      term: this.term, seq: (this.guard?.seq ?? 0) + 1, block: this.forceRound ? false : (this.guard?.block ?? false),
      holder: this.forceRound ? null : (this.guard?.holder ?? null), floor: this.forceRound ? null : (this.guard?.floor ?? null),
    }, maxTimeline(this.guard?.timeline, this.votersTimeline));
    this.forceRound = false;
    this.persist();
    this.notice("became-leader", `won term ${this.term} with ${[...this.granted].sort().join(",")}`);
    this.sendHeartbeats(now);
  }

  private sendHeartbeats(now: number): void {
    this.nextHeartbeat = now + this.o.heartbeatMs;
    // left: how long this leader goes on accepting acknowledgements unless newer ones arrive (its
    // lease, or the first lease_ms of a fresh term); an ack of this heartbeat counts only within it.
    const window = this.hadLease ? this.leaseUntil(now) : Math.max(this.leaseUntil(now), this.becameLeaderAt + this.o.leaseMs);
    const left = Math.max(0, Math.ceil(window - now));
    this.broadcast({ t: "hb", term: this.term, seq: now, left, ...(this.holdMs > 0 ? { hold: this.holdMs } : {}), membership: this.membership!, pos: this.position, ...(this.guard ? { guard: this.guard } : {}) });
  }

  /** A heartbeat held past its leader's lease (election-contact.ts arrivedLate); updates the leader's clock. */
  private arrivedLate(now: number, from: string, m: Extract<ElectionMsg, { t: "hb" }>): boolean {
    const r = arrivedLate(this.hbClock, now, from, m, this.o);
    this.hbClock = r.clock;
    return r.late;
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
          // A majority stored every reservation made before a promotion: the votes carry the highest.
          this.votersTimeline = maxTimeline(this.votersTimeline, msg.timeline);
          // And the guard a majority stored (a floor, a block): every majority of votes includes one
          // of its holders, so the new leader carries it on (review: a winner that never heard the
          // guard re-stamped its own older one, and its followers took it: the floor went back).
          this.learnGuard(msg.guard);
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
            this.handedTerm = msg.term;
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
    if (mine && ((g.term ?? 0) < (mine.term ?? 0) || ((g.term ?? 0) === (mine.term ?? 0) && g.seq <= mine.seq))) {
      // An older guard replaces nothing, but a timeline reservation only ever grows.
      if ((g.timeline ?? 0) <= (mine.timeline ?? 0)) return;
      this.guard = withTimeline(mine, g.timeline);
    } else this.guard = withTimeline(g, maxTimeline(g.timeline, mine?.timeline));
    this.persist();
  }

  private onPreVote(now: number, from: string, m: Extract<ElectionMsg, { t: "prevote" }>): void {
    this.learnGuard(m.guard);
    this.takeTransfer(from, m.transfer);
    let reason: string | null = null;
    if (this.heardLeaderRecently(now)) reason = "leader-alive";
    else if (this.pendingVote) reason = this.pendingReason();
    else if (m.term <= this.term) reason = "stale-term";
    else reason = this.upToDate(m.cfg, m.pos, m.force === true, from);
    // Pre-votes change nothing here: no term bump, no vote recorded.
    if (reason) return this.send(from, { t: "prevote-resp", term: this.term, granted: false, reason, membership: newerMembership(this.membership, m.cfg) });
    this.send(from, { t: "prevote-resp", term: m.term, granted: true });
    // Liveness only: a candidate found fit gets a head start. Two followers whose timeouts fell
    // within one pre-vote round trip of each other would otherwise both stand, vote for themselves
    // and split the vote, and each then waits a whole election timeout to try again. A follower
    // granting waits a timeout before standing itself; a pre-candidate gives up its own round only
    // for a candidate ahead of it (position, then the lower id), so that of two exactly one stands.
    // Once per term: a candidate that cannot win (another voter refuses it) must not hold this node
    // back round after round (the simulator found that starvation).
    if (this.yieldedFor >= m.term) return;
    if (this.role === "precandidate" && !aheadOf(m.pos, from, this.position, this.o.id)) return;
    this.yieldedFor = m.term;
    if (this.role === "precandidate") {
      this.role = "follower";
      this.granted.clear();
    }
    if (this.role === "follower") this.electionDeadline = Math.max(this.electionDeadline, this.randomDeadline(now));
  }

  private onVote(now: number, from: string, m: VoteMsg): void {
    this.learnGuard(m.guard);
    this.takeTransfer(from, m.transfer);
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
    // Adopting the term is safe before the detach: it promises nothing to anyone.
    if (m.term > this.term) this.becomeFollowerOf(now, m.term);
    const p = this.pendingVote;
    if (p?.from === from) return; // a retransmission: the answer follows the detach
    if (p) return this.refuseVote(from, m, this.pendingReason());
    this.decideVote(now, from, m);
  }

  /** The vote rules proper, for a request in the current term; held behind a detach when needed. */
  private decideVote(now: number, from: string, m: VoteMsg): void {
    let reason = this.upToDate(m.cfg, m.pos, m.force === true, from);
    if (!reason && this.votedFor !== null && this.votedFor !== from) reason = `already voted for ${this.votedFor}`;
    if (reason) return this.refuseVote(from, m, reason);
    // votedFor === from: granted before (persisted only after a detach for this term), so repeat it.
    if (this.o.detachBeforeVote && this.detachedTerm < this.term && this.votedFor !== from) {
      if (this.role === "precandidate") { // our own round would compete with the vote we hold
        this.role = "follower";
        this.granted.clear();
      }
      this.pendingVote = { term: this.term, from, msg: m, until: now + (this.o.detachTimeoutMs ?? DETACH_TIMEOUT_MS) };
      this.out.detach = { term: this.term };
      this.notice("vote-held", `term ${this.term} to ${from}: stopping replication from the old primary first`);
      return;
    }
    if (this.votedFor !== from) {
      this.votedFor = from;
      this.persist();
    }
    this.electionDeadline = this.randomDeadline(now);
    this.notice("vote-granted", `term ${this.term} to ${from}`);
    // The guard goes with the vote (its reservation also alone, for a candidate of an older version).
    this.send(from, { t: "vote-resp", term: this.term, granted: true, ...(this.guard ? { guard: this.guard } : {}), ...(this.guard?.timeline !== undefined ? { timeline: this.guard.timeline } : {}) });
  }

  private refuseVote(to: string, m: VoteMsg, reason: string): void {
    this.notice("vote-refused", `term ${m.term} to ${to}: ${reason}`);
    this.send(to, { t: "vote-resp", term: this.term, granted: false, reason: reason.slice(0, 200), membership: newerMembership(this.membership, m.cfg) });
  }

  private pendingReason(): string {
    const p = this.pendingVote!;
    return `vote for term ${p.term} pending for ${p.from} (stopping replication first)`;
  }

  /** The shell's answer to Ready.detach. Only the one for the held vote's term counts. */
  private onDetached(now: number, ev: Extract<Event, { type: "detached" }>): void {
    const p = this.pendingVote;
    if (!p || ev.term !== p.term || p.term !== this.term) return; // stale: another term, or after the deadline
    this.pendingVote = null;
    // Safety first: without a confirmed stop the old primary may still count our acknowledgements.
    if (!ev.ok) return this.refuseVote(p.from, p.msg, `could not stop replication from the old primary: ${ev.error ?? "unknown error"}`);
    this.detachedTerm = p.term;
    if (ev.position && comparePosition(ev.position, this.position) > 0) this.position = ev.position;
    if (this.heardLeaderRecently(now)) return this.refuseVote(p.from, p.msg, "leader-alive");
    this.decideVote(now, p.from, p.msg); // again, against the final position
  }

  /** A held vote whose detach did not report within detachTimeoutMs is refused, never granted. */
  private checkPendingVote(now: number): void {
    const p = this.pendingVote;
    if (!p || now < p.until) return;
    this.pendingVote = null;
    this.refuseVote(p.from, p.msg, `replication did not stop within ${this.o.detachTimeoutMs ?? DETACH_TIMEOUT_MS} ms`);
  }

  private onHeartbeat(now: number, from: string, m: Extract<ElectionMsg, { t: "hb" }>): void {
    if (m.term < this.term) {
      this.send(from, { t: "hb-resp", term: this.term, seq: m.seq, ok: false, cfg: versionOf(this.membership) });
      return;
    }
    if (this.role === "leader" && m.term === this.term) return; // impossible: one leader per term
    // Late: what a lost message would do (the term still counts). Not acknowledged: the ack would
    // be leader contact this node does not count, so it must not count toward any lease either.
    if (this.arrivedLate(now, from, m)) {
      if (m.term > this.term) this.becomeFollowerOf(now, m.term);
      return;
    }
    this.becomeFollowerOf(now, m.term);
    // A human's forced campaign that did not win is over once a leader is heard: later rounds of
    // this node are its own and respect the guard (review: the flag stayed set, and an automatic
    // round long after skipped a block and elected this node without the writes only the holder had).
    this.forceRound = false;
    if (this.leader !== from) {
      this.leader = from;
      this.notice("leader-changed", `${from} leads term ${m.term}`);
    }
    this.lastLeaderContact = now;
    if ((m.hold ?? 0) !== this.leaderHoldMs) {
      // Stored before the acknowledgement leaves (Ready.persist): a restart right after it still waits it.
      this.leaderHoldMs = m.hold ?? 0;
      this.persist();
    }
    this.electionDeadline = Math.max(this.randomDeadline(now), now + this.leaderHoldMs);
    // The leader of the current term is authoritative for membership (Raft: its log wins), but only
    // forward: it re-stamped the membership in its term when it won (maybeWinVote), so its version
    // beats any older term's, and within its term its versions only grow. An older one is a
    // heartbeat delivered out of order (a retiring duplicate connection's queued frames): taking
    // it would undo a change this node acknowledged and the leader counted as committed, and the
    // two voter sets' majorities need not overlap (review: two leases at once).
    if (compareVersion(versionOf(m.membership), versionOf(this.membership)) > 0) {
      this.membership = m.membership;
      this.persist();
      this.notice("membership-changed", `voters ${m.membership.voters.join(",")} (v${m.membership.term}.${m.membership.index})`);
    }
    // Only a newer guard: a delayed heartbeat carrying an older one must not undo a block this
    // node already acknowledged (the leader counts that acknowledgement before it degrades).
    this.learnGuard(m.guard);
    // Acknowledge only this leader's guards: a seq of another term's guard says nothing about its own.
    // ... and the timeline reservation stored with it: a follower of an older version acknowledges
    // the seq having dropped the field, so a reservation counts only where it is echoed.
    const guardSeq = this.guard && (this.guard.term ?? 0) === m.term ? { guardSeq: this.guard.seq, ...(this.guard.timeline !== undefined ? { guardTimeline: this.guard.timeline } : {}) } : {};
    this.send(from, { t: "hb-resp", term: this.term, seq: m.seq, ok: true, cfg: versionOf(this.membership), ...guardSeq });
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
    if (m.guardTimeline !== undefined) this.peerGuardTimeline.set(from, Math.max(this.peerGuardTimeline.get(from) ?? 0, m.guardTimeline));
    else if (m.guardSeq !== undefined && this.guard?.timeline !== undefined) this.peerGuardTimeline.set(from, LEGACY); // an older version: no echo
    this.peerVersions.set(from, m.cfg);
    if (!this.committed && storedByMajority(this.o.id, this.voters(), versionOf(this.membership), this.peerVersions)) this.commitMembership();
  }

  private commitMembership(): void {
    const v = versionOf(this.membership);
    this.committed = true;
    this.prevVoters = null;
    this.notice("membership-committed", `voters ${this.voters().join(",")} (v${v.term}.${v.index})`);
  }

  // ---------------------------------------------------------------- commands

  private onPropose(now: number, op: ProposeOp, node: string): void {
    const reject = (why: string) => this.notice("proposal-rejected", `${op} ${node}: ${why}`);
    if (this.role !== "leader" || !this.membership) return reject("not the leader");
    if (!this.committed) return reject("previous membership change not committed yet");
    const plan = planMembershipChange(this.membership, op, node, this.o.id);
    if ("reject" in plan) return reject(plan.reject);
    this.prevVoters = this.membership.voters;
    this.membership = proposed(this.membership, this.term, plan);
    this.committed = false;
    this.peerVersions.clear();
    this.persist();
    const pending = plan.approved.length > 0 ? `; approved, not yet voters: ${plan.approved.join(",")}` : "";
    this.notice("membership-changed", `${op} ${node}: voters ${plan.voters.join(",")}${pending}`);
    // A lone voter is its own majority: nobody's acknowledgement is awaited (an approval in a
    // one-voter cluster would otherwise stay uncommitted and block every later change).
    if (hasMajority(plan.voters, new Set([this.o.id]))) this.commitMembership();
    this.sendHeartbeats(now);
  }

  private onBootstrap(now: number, m: Membership): void {
    if (this.membership) return; // only ever the first membership
    this.membership = m;
    this.persist();
    this.notice("membership-changed", `bootstrapped with voters ${m.voters.join(",")}`);
    // Every voter formed the same set at about the same moment, and none has a leader to wait for:
    // the lowest id stands at once (a tick now), the others keep their random deadlines. Only
    // liveness: the rules for standing (onTick: boot quiet period, position known) and for
    // granting are unchanged, and a witness first in the set simply does not stand.
    if ([...m.voters].sort()[0] === this.o.id) this.electionDeadline = Math.min(this.electionDeadline, now);
  }

  private onResign(now: number, reason: string, transferTo?: string): void {
    if (this.role !== "leader") return;
    const term = this.term;
    // Stepping down ends the lease now; the shell fences before these messages go out.
    this.stepDown(now, `resigned: ${reason}`, false, true);
    // Past the others' latest deadline (timeout + jitter) and their campaign: one of them goes first.
    this.noCampaignUntil = now + this.o.timeoutMs + this.o.jitterMs + this.o.heartbeatMs;
    this.broadcast({ t: "resign", term, transferTo });
  }
}

/** Whether candidate `id` at `pos` goes before `selfId` at `self`: the further position, then the lower id. */
function aheadOf(pos: Position, id: string, self: Position, selfId: string): boolean {
  const c = comparePosition(pos, self);
  return c > 0 || (c === 0 && id < selfId);
}
