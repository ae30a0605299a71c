// The etcd backend's candidacy: whether this node takes the vacant leader key (elect-core.ts
// decideCandidacy), and the take itself, one transaction on the key's absence, the membership, the
// guard and the counted voters' final positions. It owns the operator's request (campaign), when
// the key was first seen vacant, the take in flight, and the election note (why it does not stand;
// the backend also notes a resign's re-release in it, through noted()).
import type { Logger } from "../../log.ts";
import type { Compare, EtcdClient } from "./client.ts";
import { type ClusterKeys, decideCandidacy, type Snapshot } from "./elect-core.ts";
import type { Failsafe } from "./failsafe.ts";

export interface CandidateDeps {
  client: EtcdClient;
  keys: ClusterKeys;
  self: { id: string; canLead: boolean; priority: number };
  /** How long a transfer's target (or a better-placed equal candidate) is waited for; a request lasts twice this. */
  deferMs: number;
  ttlS: number;
  log: Logger;
  clock: () => number;
  failsafe: () => Failsafe | null;
  /** The take succeeded: this node leads `term` (taken with the final positions of `voters` voters) until `until`. */
  won(term: number, voters: number, until: number): void;
}

export class Candidate {
  private requested: { force: boolean; until: number } | null = null;
  private vacantSince: number | null = null;
  private inFlight = false;
  /** A take sent without an answer: the revision of the read it was decided on (its key, if it applied, has a term above it). */
  private lost: number | null = null;
  private why = "";

  constructor(private readonly d: CandidateDeps) {}

  /** An operator asked this node to take the key (`force`: the guard is ignored). */
  request(force: boolean): void {
    this.requested = { force, until: this.d.clock() + 2 * this.d.deferMs };
  }

  /** A take is in flight (the failsafe's view). */
  taking(): boolean {
    return this.inFlight;
  }

  note(): string {
    return this.why;
  }

  noted(why: string): void {
    this.why = why;
  }

  /** The revision of the read a take without an answer was decided on (until the next read settles it: elect-core.ts ownKeyAction), or null. */
  lostTake(): number | null {
    return this.lost;
  }

  /** A read showed a leader key (`leader`: the leader as the backend now sees it): the vacancy is over, and a request for another leader is dropped. */
  leaderSeen(leader: string | null): void {
    this.vacantSince = null;
    this.lost = null;
    if (this.requested && leader !== this.d.self.id) this.requested = null;
  }

  /** This node won its own key: the request is carried out (a later loss of the key gets the resign pause again). */
  carriedOut(): void {
    this.requested = null;
  }

  /** A read showed no leader key: the vacancy counts from the first such read; a request runs out. */
  vacant(): void {
    this.vacantSince ??= this.d.clock();
    this.lost = null;
    if (this.requested && this.d.clock() > this.requested.until) this.requested = null;
  }

  /** Takes the vacant key when decideCandidacy says so, under this node's lease (`leaseId`, valid until `leaseValid`). */
  async take(s: Snapshot, vacatedTerm: number, resignedUntil: number, leaseId: string | null, leaseValid: number | null): Promise<void> {
    const now = this.d.clock();
    const d = decideCandidacy({
      self: this.d.self.id, canLead: this.d.self.canLead, priority: this.d.self.priority, snapshot: s,
      vacatedTerm, vacantSince: this.vacantSince ?? now, now, requested: this.requested, resignedUntil, deferMs: this.d.deferMs,
    });
    if (d.kind === "wait") {
      if (d.reason !== this.why && s.membership) this.d.log.debug(`not standing: ${d.reason}`);
      this.why = d.reason;
      return;
    }
    if (!leaseId || leaseValid === null || leaseValid <= now) return;
    const promised = this.d.failsafe()?.promised();
    if (promised) return void (this.why = promised);
    const compare: Compare[] = [
      { key: this.d.keys.leader, target: "CREATE", createRevision: 0 },
      { key: this.d.keys.membership, target: "MOD", modRevision: s.membership!.mod },
      { key: this.d.keys.guard, target: "MOD", modRevision: s.guardMod },
      ...d.counted.map((id): Compare => ({ key: this.d.keys.member(id), target: "MOD", modRevision: s.members.get(id)!.mod })),
    ];
    this.inFlight = true;
    try {
      const r = await this.d.client.txn(compare, [
        { put: { key: this.d.keys.leader, value: this.d.self.id, lease: leaseId } },
        { put: { key: this.d.keys.lastLeader, value: this.d.self.id } },
        { del: { key: this.d.keys.transfer } },
      ]).catch((e: Error) => {
        // etcd may have applied it without answering: confirm no other leader until that shows (a lease's length).
        this.d.failsafe()?.takeUncertain(this.d.ttlS * 1000);
        this.lost = s.revision;
        throw e;
      });
      if (!r.succeeded) return void (this.why = "another node took the key, or a report changed: reading again");
      this.why = "";
      this.requested = null;
      this.vacantSince = null;
      this.d.won(r.revision, d.counted.length, leaseValid);
    } finally {
      this.inFlight = false;
    }
  }
}
