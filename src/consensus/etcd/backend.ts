// The etcd consensus backend's shell: one lease per agent, renewed every poll; one range read of
// the cluster's prefix per poll; the leader key taken, the guard and the membership changed, only
// by transactions (compare-and-swap). Decisions are pure (elect-core.ts, lease-core.ts); this
// file does the I/O in order: renew → read → (fence | detach | publish | take the key).
// It owns the snapshot, its poll timer and the position; term.ts owns the term (and what an etcd
// restored from a snapshot resets), held-key.ts the record of the key this node holds; lease.ts owns this agent's
// etcd lease, leadership.ts the lease-deadline timer, candidacy.ts the take (and the operator's
// request), resign.ts the release and the resign pause, final-position.ts the detach, membership.ts
// the first membership, the stored copy of each read's membership and a leader's change of it,
// guard-writes.ts the guard's writes, clusters-read.ts the read for `GET /clusters`.
import type { Membership } from "../../core/messages.ts";
import type { ProposeOp, Role, Status } from "../../core/election.ts";
import { type Position, ZERO_POSITION } from "../../core/position.ts";
import type { Logger } from "../../log.ts";
import type { ElectionStore } from "../../store/election-state.ts";
import type { Consensus, DriverCounters, DriverHooks } from "../../agent/election-driver.ts";
import { type Compare, type EtcdClient, EtcdError, OutcomeUnknown } from "./client.ts";
import { type ClusterKeys, decodeSnapshot, guardRepair, type MemberReport, ownsKey, type Snapshot } from "./elect-core.ts";
import { Terms } from "./term.ts";
import { HeldKey } from "./held-key.ts";
import { usableLeaseMs } from "./lease-core.ts";
import { AgentLease } from "./lease.ts";
import { effectiveDeadline } from "./failsafe-core.ts";
import { Failsafe, type FailsafeMsg } from "./failsafe.ts";
import type { ClusterSummary } from "../clusters.ts";
import { clustersRead } from "./clusters-read.ts";
import { Leadership } from "./leadership.ts";
import { MemberReporter } from "./member-report.ts";
import { Resignation } from "./resign.ts";
import { Candidate } from "./candidacy.ts";
import { FinalPosition } from "./final-position.ts";
import { MembershipKeeper } from "./membership.ts";
import { GuardWrites } from "./guard-writes.ts";
import { guardRead, guardSettled, guardWritten, NO_DOUBT, settleDue } from "./guard-core.ts";
import { closedBy } from "../migrate-etcd.ts";

export interface EtcdConsensusOptions {
  client: EtcdClient;
  keys: ClusterKeys;
  self: { id: string; name: string; role: "database" | "witness"; canLead: boolean; priority: number };
  ttlS: number;
  pollMs: number;
  maxDrift: number;
  fenceMs: number;
  /** How long a transfer's target (or a better-placed equal candidate) is waited for; also the resign pause. */
  deferMs: number;
  store: ElectionStore;
  hooks: DriverHooks;
  log: Logger;
  clock?: () => number;
}

export class EtcdConsensus implements Consensus {
  readonly counters: DriverCounters;
  private readonly clock: () => number;
  /** Every cluster under the prefix (clusters()): one read at a time, reused for a second (clusters-read.ts). */
  private readonly clustersRead: ReturnType<typeof clustersRead>;
  private readonly guard: GuardWrites;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly etcdLease: AgentLease;
  /** The lease's deadline (lease.ts valid) as of the last tick whose read (sent with the renewal) showed etcd open: the deadline a leader acts on, and the failsafe's. */
  private verified: number | null = null;
  private readonly lead: Leadership;
  private readonly resignation: Resignation;
  private readonly candidate: Candidate;
  private readonly final: FinalPosition;
  private readonly membership: MembershipKeeper;
  private snap: Snapshot | null = null;
  /**
   * A guard write sent without an answer that may still apply, or one whose read after it failed:
   * etcd may hold, or come to hold, another guard than the snapshot's (a lift applied late), so no
   * guard counts as committed until that is settled (guard-core.ts; review: a primary degraded on
   * the block its lost lift had removed, and on one its lift removed after the next poll).
   */
  private guardDoubt = NO_DOUBT;
  private readonly terms: Terms;
  private readonly held: HeldKey;
  private lastLeaderContact: number | null = null;
  private position: Position = ZERO_POSITION;
  /** setPosition was called in this process (always true on a witness: it holds no data). */
  private positionKnown: boolean;
  private readonly reporter: MemberReporter;
  private lastError = "";
  /** [consensus] failsafe (failsafe.ts); null until the agent attaches the mesh. */
  private failsafe: Failsafe | null = null;
  private observed = false;
  /** The keys that did not validate in the last read, as last logged. */
  private invalidSaid = "";
  /** Why etcd is closed by a return to builtin (migrate-etcd.ts closedBy), from the last read; null: open. */
  private closed: string | null = null;

  constructor(private readonly o: EtcdConsensusOptions) {
    this.clock = o.clock ?? (() => performance.now());
    this.clustersRead = clustersRead(o.client, o.keys.root, this.clock);
    this.positionKnown = o.self.role !== "database";
    this.lead = new Leadership({ hooks: o.hooks, log: o.log, clock: this.clock, missing: () => this.failsafe?.missing() ?? [] });
    this.counters = this.lead.counters;
    this.reporter = new MemberReporter({ client: o.client, keys: o.keys, self: o.self.id, clock: this.clock });
    this.etcdLease = new AgentLease({ client: o.client, ttlS: o.ttlS, maxDrift: o.maxDrift, fenceMs: o.fenceMs, log: o.log, replaced: () => this.reporter.reset() });
    this.resignation = new Resignation({ client: o.client, keys: o.keys, deferMs: o.deferMs, log: o.log, clock: this.clock });
    this.candidate = new Candidate({
      client: o.client, keys: o.keys, self: o.self, deferMs: o.deferMs, ttlS: o.ttlS, log: o.log, clock: this.clock, failsafe: () => this.failsafe,
      won: (term, voters, until) => {
        this.held.took(term); // before it leads: a later run (or read) leads on this key only if recorded
        this.terms.taken(term);
        this.lead.leaderChanged(o.self.id, `took the leader key (term ${term}) with final positions of ${voters} voters`);
        this.lastLeaderContact = this.clock();
        this.lead.win(term, until);
      },
    });
    this.guard = new GuardWrites({
      keys: o.keys, self: o.self.id, log: o.log, leading: () => this.leading, snap: () => this.snap, holdsKey: () => this.holdsKey(),
      cas: (compare, key, value) => this.cas(compare, key, value),
    });
    this.membership = new MembershipKeeper({ keys: o.keys, store: o.store, hooks: o.hooks, log: o.log, cas: (compare, key, value) => this.cas(compare, key, value) });
    this.final = new FinalPosition({
      hooks: o.hooks, log: o.log,
      detached: (position) => {
        if (position) this.position = position;
        this.schedule(0); // publish the final position now
      },
    });
    this.terms = new Terms({ log: o.log, final: this.final, reporter: this.reporter });
    this.held = new HeldKey({ store: o.store, self: o.self.id, log: o.log, resignation: this.resignation, candidate: () => this.candidate });
  }

  private get leading(): { term: number; until: number } | null {
    return this.lead.current();
  }

  start(): void {
    this.failsafe?.start();
    this.schedule(0);
  }

  /** Failsafe mode needs the mesh: the agent attaches it (enabled or not: a node with it off still answers, refusing). */
  attachFailsafe(enabled: boolean, send: (to: string, msg: FailsafeMsg) => void, nameOf: (id: string) => string): void {
    this.failsafe = new Failsafe({
      enabled, self: this.o.self.id, promiseMs: this.o.ttlS * 1000, pollMs: this.o.pollMs, maxDrift: this.o.maxDrift, fenceMs: this.o.fenceMs,
      usableMs: usableLeaseMs(this.o.ttlS, this.o.maxDrift, this.o.fenceMs), send, nameOf, log: this.o.log, clock: this.clock,
      view: () => ({
        leading: this.leading, etcdUntil: this.verified, voters: this.snap?.membership?.value.voters ?? [], taking: this.candidate.taking(),
        leader: this.snap?.leader ? { id: this.snap.leader.id, term: this.snap.leader.term } : null,
      }),
      extended: (until) => {
        if (this.leading && !this.closed && until > this.leading.until) this.lead.extend(this.leading.term, until);
      },
    });
  }

  /** A failsafe request or answer from a peer (validated at receipt). */
  failsafeMessage(from: string, msg: FailsafeMsg): void {
    this.failsafe?.receive(from, msg);
  }

  /** The lease is left to run out (never revoked): a primary left running keeps its key until its watchdog deadline has passed. */
  stop(): void {
    this.stopped = true;
    this.failsafe?.stop();
    clearTimeout(this.pollTimer);
    this.lead.stop();
  }

  status(): Status {
    const s = this.snap;
    const role: Role = this.leading ? "leader" : this.candidate.taking() ? "candidate" : "follower";
    return {
      id: this.o.self.id, role, term: this.terms.term(), votedFor: null, leader: this.lead.leader(),
      membership: s?.membership?.value ?? null, membershipCommitted: !!s?.membership,
      leaseUntil: this.leading?.until ?? null, lastLeaderContact: this.lastLeaderContact, position: this.position, positionKnown: this.positionKnown,
      guard: s?.guard?.value ?? null, prevVoters: null, guardCommitted: guardSettled(this.guardDoubt) ? s?.guard?.value.seq ?? 0 : 0, timelineCommitted: s?.guard?.value.timeline ?? 0, pendingVote: null,
    };
  }

  /** The lease held now: none past its deadline, before the timer that fences has run (election-driver.ts). */
  lease(): { term: number; until: number } | null {
    return this.leading && this.leading.until > this.clock() ? this.leading : null;
  }

  /** Whether etcd was read since the agent started (and a key of its previous run, if taken back, read again): before, whether that key makes it the leader is unknown. */
  settled(): boolean {
    return this.observed;
  }

  note(): string {
    return this.lastError || this.candidate.note();
  }

  /** Every cluster under the prefix (clusters-read.ts). */
  clusters(): Promise<ClusterSummary[]> {
    return this.clustersRead.get();
  }

  receive(): void {
    // Election messages belong to the built-in backend; with etcd the mesh carries none.
  }

  setPosition(p: Position): Promise<void> {
    this.position = p;
    this.positionKnown = true;
    return Promise.resolve();
  }

  campaign(force: boolean): Promise<void> {
    this.candidate.request(force);
    return this.serial(() => this.tick());
  }

  resign(reason: string, transferTo?: string): Promise<void> {
    return this.serial(async () => {
      const was = this.leading;
      if (!was) return;
      this.resignation.pause();
      // Fenced before the key is released; a fence that could not stop PostgreSQL leaves it to the
      // watchdog at the lease's deadline: the key is not released before that and its budget
      // (review: the others took it at once while the old primary still wrote).
      if (!(await this.lead.lose(`resigned: ${reason}`))) {
        const deadline = was.until + this.o.fenceMs;
        this.o.log.warn(`the fence could not confirm PostgreSQL stopped: the leader key is released in ${Math.round(Math.max(0, deadline - this.clock()))} ms, once the watchdog has stopped it`);
        // A timer may fire a fraction of a millisecond before its delay (CI199): wait until the clock says so.
        while (this.clock() < deadline) await new Promise((r) => setTimeout(r, Math.ceil(deadline - this.clock())));
        if (this.stopped) return; // stopped or replaced meanwhile: nothing more to write
        this.resignation.pause();
      }
      await this.resignation.release(was.term, transferTo);
    });
  }

  /** True: etcd stored it; false: it did not, or whether it did is unknown (no answer). */
  reserveTimeline(n: number): Promise<boolean> {
    return this.serial(() => this.guard.reserve(n)).then((ok) => ok === true);
  }

  /** True: etcd stored it; false: it did not, or whether it did is unknown (no answer). */
  setGuard(block: boolean, floor: Position | null): Promise<boolean> {
    return this.serial(() => this.guard.set(block, floor)).then((ok) => ok === true);
  }

  propose(op: ProposeOp, node: string): Promise<void> {
    return this.serial(() => this.membership.propose(op, node, this.o.self.id, this.leading, this.snap, this.holdsKey()));
  }

  /** Stores the first membership unless etcd has one; kept and tried again at each poll until a read shows one (an etcd error loses nothing). */
  bootstrap(m: Membership): Promise<void> {
    this.membership.bootstrap(m);
    return this.serial(() => this.membership.storeFirst());
  }

  // ------------------------------------------------------------------ the loop

  private serial<T>(fn: () => Promise<T>): Promise<T | undefined> {
    const run = this.chain.then(() => (this.stopped ? undefined : fn())).catch((e: Error) => void this.failed(e));
    this.chain = run.then(() => undefined);
    return run;
  }

  private schedule(ms: number): void {
    clearTimeout(this.pollTimer);
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => void this.serial(() => this.tick()).finally(() => this.schedule(this.o.pollMs)), ms);
  }

  private failed(e: Error): void {
    const msg = `etcd: ${e.message}`;
    if (msg !== this.lastError) this.o.log.warn(`${msg}${this.leading ? " (the lease runs out unless a renewal succeeds)" : ""}`);
    this.lastError = msg;
  }

  private async tick(): Promise<void> {
    // The renewal and the read go out together, the renewal first: the deadline counts from a send
    // time taken before the read was sent, and a round costs one request deadline (lease-core.ts).
    const sentAt = this.clock();
    const [renewed, read] = await Promise.allSettled([this.renew(sentAt), this.o.client.range(this.o.keys.root, { prefix: true })]);
    // A failed renewal moves no deadline, but a read that shows this node's key gone or another's (or etcd closed) fences now, not at the deadline.
    if (renewed.status === "rejected" && read.status === "fulfilled" && !(await this.observeClosed(read.value.kvs))) await this.loseUnlessOwned(decodeSnapshot(this.o.keys, read.value.revision, read.value.kvs).leader);
    if (renewed.status === "rejected") throw renewed.reason;
    if (read.status === "rejected") throw read.reason;
    const r = read.value;
    this.lastError = "";
    const snap = decodeSnapshot(this.o.keys, r.revision, r.kvs);
    const invalid = snap.invalid.join(", ").slice(0, 300); // said once until it changes, not every poll (a migration's pending membership lasts seconds)
    if (invalid && invalid !== this.invalidSaid && !this.closed) this.o.log.warn(`etcd: ignoring keys that do not validate: ${invalid}`);
    this.invalidSaid = invalid;
    this.membership.adopt(snap);
    this.snap = snap;
    this.guardDoubt = guardRead(this.guardDoubt, snap.guardMod);
    await this.membership.polled(snap);
    // The renewal's deadline counts only once this read showed etcd still open (a closed etcd's
    // former holder acts at most until a renewal sent before the close, which the members' hold covers).
    // The failsafe asks from this verified deadline, not from a renewal alone (renewals may answer while reads fail).
    this.verified = (await this.observeClosed(r.kvs)) ? null : this.etcdLease.valid();
    // Only while this read shows the key still this node's on this lease: else observeLeader fences
    // (a deadline moved first would be in the lease file, and armed in the watchdog, meanwhile).
    if (this.verified !== null && this.leading && ownsKey(snap.leader, this.o.self.id, this.etcdLease.id(), this.leading.term)) this.lead.extend(this.leading.term, this.deadline(this.leading.term));
    // A key of a previous run taken back on this read: still unknown whether it leads (the next read decides).
    if (!(await this.observeLeader(snap, sentAt))) this.observed = true;
    if (settleDue(this.guardDoubt)) await this.guard.settle().catch((e: Error) => this.failed(e));
    await this.publish();
    if (!snap.leader && !this.leading && !this.closed) await this.candidate.take(snap, this.terms.term(), this.resignation.pausedUntil(), this.etcdLease.id(), this.etcdLease.valid());
  }

  /** Renew (or grant) this agent's lease (lease.ts); a leader's deadline moves only with a renewal etcd answered, and a read sent with it (tick). */
  private async renew(sentAt: number): Promise<void> {
    if (!(await this.etcdLease.renew(sentAt)) && this.leading) await this.lead.lose("the etcd lease expired");
  }

  /** etcd closed by a return to builtin (true): a leader loses its leadership at once, and nobody leads on it again. */
  private async observeClosed(kvs: readonly { key: string; value: string }[]): Promise<boolean> {
    const closed = closedBy(this.o.keys, kvs);
    if (closed && closed !== this.closed) this.o.log.warn(`etcd is closed: ${closed}; this node does not lead on it (the migration's record decides the backend)`);
    this.closed = closed;
    if (closed && this.leading) await this.lead.lose(`etcd is closed: ${closed}`);
    return closed !== null;
  }

  /** The later of the etcd lease's deadline and the failsafe confirmations' (failsafe-core.ts). */
  private deadline(term: number): number {
    return effectiveDeadline(this.verified, this.failsafe?.deadline(term) ?? null) ?? -Infinity;
  }

  /** `readSentAt`: when the read that gave `s` was sent (a resumed key's deadline counts from it). True: a key of a previous run was taken back. */
  private async observeLeader(s: Snapshot, readSentAt: number): Promise<boolean> {
    const l = s.leader;
    this.terms.read(s);
    this.held.read(l);
    const own = l && l.id === this.o.self.id && !this.leading && !this.closed ? this.held.action(l, this.etcdLease.id()) : null;
    // A key taken back is not won on this read, sent before its keepalive: the next tick's read decides.
    const adopted = own === "resume" && (await this.etcdLease.takeBack(l!.lease, readSentAt));
    const mine = ownsKey(l, this.o.self.id, this.etcdLease.id());
    await this.loseUnlessOwned(l);
    if (l) {
      if (l.id !== this.lead.leader()) this.lead.leaderChanged(l.id, `leader ${l.id} (term ${l.term})`);
      this.lastLeaderContact = this.clock();
      this.candidate.leaderSeen(this.lead.leader());
      const repair = guardRepair(s, { leading: mine && this.leading !== null, position: this.position });
      if (repair) {
        this.o.log.warn(`the durability guard in etcd does not validate: writing a new one (no block, floor at ${repair.floor.timeline}/${repair.floor.lsn})`);
        void this.setGuard(repair.block, repair.floor);
      }
      const valid = this.etcdLease.valid();
      if (mine && !adopted && !this.leading && valid !== null && !this.closed) {
        if (own === "win") {
          this.held.took(l.term); // already so, or a take of this process whose answer was lost
          this.candidate.carriedOut();
          this.lead.win(l.term, valid);
        } else if (own === "release") {
          this.candidate.noted(`resigned from term ${l.term}, whose key is still this node's: deleting it again`);
          await this.resignation.releaseAgain().catch((e: Error) => this.failed(e));
        } else if (own === "drop") await this.resignation.drop(l.term).catch((e: Error) => this.failed(e));
      }
      return adopted;
    }
    if (this.lead.leader() !== null) this.lead.leaderChanged(null, `no leader: the key of term ${this.terms.term()} is gone`);
    this.candidate.vacant();
    // A failsafe promise holds the final position back too: it is this node's vote for the next term;
    // and so does a position this process has not reported yet (elect-core.ts finalPositionDue).
    this.final.vacated(this.terms.term(), !!this.failsafe?.promised(), this.positionKnown);
    return false;
  }

  /** A leader fences once a read shows its key gone or another's; the key of its term: a restored etcd may show an older key of this node's on the same lease. */
  private async loseUnlessOwned(l: Snapshot["leader"]): Promise<void> {
    if (!this.leading || ownsKey(l, this.o.self.id, this.etcdLease.id(), this.leading.term)) return;
    await this.lead.lose(!l ? "the leader key is gone" : l.id === this.o.self.id ? `the leader key is of term ${l.term} now (etcd restored?)` : `the leader key now belongs to ${l.id}`);
  }

  private async publish(): Promise<void> {
    const leaseId = this.etcdLease.id();
    if (!leaseId) return;
    const report: MemberReport = {
      name: this.o.self.name, role: this.o.self.role, canLead: this.o.self.canLead, priority: this.o.self.priority,
      position: this.position, detachedFor: this.final.term(),
    };
    await this.reporter.publish(leaseId, report, this.snap);
  }

  private holdsKey(): Compare {
    return { key: this.o.keys.leader, target: "CREATE", createRevision: this.leading?.term ?? -1 };
  }

  /**
   * Compare-and-swap one key; reads the prefix again either way so status() reflects it, also after a
   * transaction sent without an answer (OutcomeUnknown, passed on after the read: what etcd holds decides).
   */
  private async cas(compare: Compare[], key: string, value: string): Promise<boolean> {
    const r = await this.o.client.txn(compare, [{ put: { key, value } }]).catch((e: Error) => e);
    const guardMod = compare.find((c) => c.key === this.o.keys.guard && c.target === "MOD");
    if (key === this.o.keys.guard && guardMod?.target === "MOD") {
      // etcd's own refusal (and a request no member took) applied nothing; any other failure may still apply.
      const outcome = r instanceof Error ? (r instanceof EtcdError && !(r instanceof OutcomeUnknown) ? "refused" : "unknown") : r.succeeded ? "stored" : "refused";
      this.guardDoubt = guardWritten(this.guardDoubt, guardMod.modRevision, outcome);
    }
    const all = await this.o.client.range(this.o.keys.root, { prefix: true });
    const snap = decodeSnapshot(this.o.keys, all.revision, all.kvs);
    this.membership.adopt(snap);
    this.snap = snap;
    this.guardDoubt = guardRead(this.guardDoubt, snap.guardMod);
    await this.observeClosed(all.kvs);
    if (r instanceof Error) throw r;
    return r.succeeded;
  }
}
