// Who votes: the first membership formed from discovered peers (bootstrap), then the leader's voter
// changes one at a time: removals an operator asked for, and nodes an operator approved (or every
// authenticated node with `[election] auto_join`), each after suspending automatic failover.
import { decideBootstrap, nextVoterChange, type PeerView } from "../core/bootstrap.ts";
import type { ProposeOp, Status } from "../core/election.ts";
import { isNodeId, type Membership } from "../core/messages.ts";
import type { Position } from "../core/position.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import type { PeerTable } from "./peers.ts";

/** What the keeper needs of the consensus backend (the election driver). */
export interface MembershipConsensus {
  status(): Status;
  lease(): { term: number; until: number } | null;
  setGuard(block: boolean, floor: Position | null): Promise<unknown>;
  propose(op: ProposeOp, node: string): Promise<void>;
  bootstrap(m: Membership): Promise<void>;
}

export interface MembershipDeps {
  cfg: Config;
  log: Logger;
  nodeId: string;
  store: ElectionStore;
  consensus: MembershipConsensus;
  peers: PeerTable;
  durability(): "quorum" | "strict" | "async";
  /** This node's PostgreSQL answers as a writable primary (its last monitoring round). */
  primaryWritable(): boolean;
  /** The primary's next re-sync must publish a floor (a block guard was set outside its plan). */
  markDegraded(): void;
  announce(): void;
  nameOf(id: string): string;
  /** Why node `id` may not become a voter yet, null: it may (core/cluster-facts.ts joinBlocker). */
  joinBlocker(id: string): string | null;
  /** null when the cluster-wide configuration this node holds is held by a majority of `voters`; else what is missing (dynamic-config-leader.ts). */
  configMissing(voters: readonly string[]): string | null;
}

export class MembershipKeeper {
  private note = "";
  /** Voters an operator asked to remove while this node leads; once removed the membership's `removed` keeps them out of auto_join. */
  private readonly removals: string[] = [];
  private warnedBadIds = new Set<string>();
  /** The voter change waiting for its failover guard to be stored ("add:<id>"), null: none. */
  private waiting: string | null = null;
  /** The voter changes logged as waiting for the configuration (each once). */
  private readonly configWaits = new Set<string>();

  constructor(private readonly d: MembershipDeps) {}

  /**
   * A voter change waits for its failover guard: the primary's re-sync must not lift that guard
   * meanwhile (durability.ts), or the two would take turns setting and lifting it and the change
   * would never be proposed.
   */
  changePending(): boolean {
    return this.waiting !== null;
  }

  /** While there is no membership: why not yet ("formed" once it is). */
  bootstrapNote(): string {
    return this.note;
  }

  /** An operator asked to remove voter `id`: done by step() after the failover guard. */
  requestRemoval(id: string): void {
    if (!this.removals.includes(id)) this.removals.push(id);
  }

  /** An operator approved `id` again: an earlier removal no longer holds it back. */
  clearRemoval(id: string): void {
    const i = this.removals.indexOf(id);
    if (i >= 0) this.removals.splice(i, 1);
  }

  /**
   * One housekeeping step; `heard`: run at once for a peer's beacon (bootstrap only), where a
   * membership already formed here is not handed to the backend or announced again (every node
   * answering every beacon with one of its own would double the beacons each hop).
   */
  step(heard = false): void {
    const st = this.d.consensus.status();
    if (!st.membership) return this.tryBootstrap(heard);
    if (heard) return;
    if (st.role !== "leader") {
      this.removals.length = 0; // a request to the old leader; the operator asks the new one
      this.waiting = null;
      return;
    }
    // Not before this node's own primary runs: a failover block names this node as the only one
    // holding every acknowledged write, and before the promotion that may not be so. A voter that
    // was the old primary can hold WAL past this node's (written, never acknowledged): if this node
    // then lost its leadership unpromoted, that voter would refuse it as behind and it would refuse
    // the voter for the block, forever (the simulator found the two-voter case).
    if (!st.membershipCommitted || !this.d.consensus.lease() || !this.d.primaryWritable()) {
      this.waiting = null;
      return;
    }
    const peers = this.d.peers.list();
    this.warnBadIds(peers.map((p) => p.id));
    // The new voter set's majorities must meet the configuration's holders (S28): a later leader
    // reads a majority of the new set. A joiner that cannot be added for it yet (one holding a
    // document of its own) does not hold up the next one (re-review).
    const held: string[] = [];
    let change: ReturnType<typeof nextVoterChange> = null;
    if (this.configWaits.size > 100) this.configWaits.clear(); // said once each, within bounds
    for (;;) {
      change = nextVoterChange({
        voters: st.membership.voters, approved: (st.membership.approved ?? []).filter((a) => !held.includes(a)), autoJoin: this.d.cfg.election.auto_join,
        peers: peers.filter((p) => !held.includes(p.id)), removals: this.removals, removed: st.membership.removed ?? [],
      });
      if (!change) break;
      const c = change;
      // Not a node whose data it could not vote with (another cluster's, unreadable, not reported yet).
      const blocked = c.op === "add" ? this.d.joinBlocker(c.node) : null;
      if (blocked) {
        const key = `join:${c.node}:${blocked}`;
        if (!this.configWaits.has(key)) this.d.log.warn(`not adding ${this.d.nameOf(c.node)} (${c.node}) as a voter yet: ${blocked}`);
        this.configWaits.add(key);
        change = null;
        held.push(c.node);
        continue;
      }
      const next = c.op === "add" ? [...st.membership.voters, c.node] : st.membership.voters.filter((v) => v !== c.node);
      const missing = this.d.configMissing(next);
      if (!missing) break;
      const key = `${c.op}:${c.node}:${missing}`;
      if (!this.configWaits.has(key)) this.d.log.info(`before the voter change (${c.op} ${this.d.nameOf(c.node)}): waiting until every majority of the new voter set includes a node holding the cluster-wide configuration (${missing})`);
      this.configWaits.add(key);
      change = null; // none this step (re-review: a removal that must wait went ahead)
      if (c.op !== "add") break;
      held.push(c.node);
    }
    this.waiting = change ? `${change.op}:${change.node}` : null;
    if (!change) return;
    // A voter change changes k (synchronous standbys needed): suspend automatic failover (a guard
    // stored by a majority) before it; the primary's next re-sync lifts it with a floor.
    const g = st.guard;
    if (this.d.durability() !== "async" && !(g?.block && g.holder === this.d.nodeId && st.guardCommitted >= g.seq)) {
      if (!g?.block || g.holder !== this.d.nodeId) {
        this.d.log.info(`about to ${change.op} voter ${this.d.nameOf(change.node)}: suspending automatic failover until the primary is synchronous with the new voter set`);
        this.d.markDegraded();
        void this.d.consensus.setGuard(true, null);
      }
      return;
    }
    // Still pending until the membership shows the change (the next steps then find none): the
    // re-sync lifts the guard only with the new voter set in force.
    const p = peers.find((x) => x.id === change.node);
    this.d.log.info(change.op === "add"
      ? `adding ${this.d.nameOf(change.node)} (${change.node}, ${p?.role ?? "database"}) as a voter${this.d.cfg.election.auto_join ? " (auto_join)" : " (approved)"}`
      : `removing voter ${this.d.nameOf(change.node)} (${change.node}) as an operator asked`);
    void this.d.consensus.propose(change.op, change.node);
  }

  /** A peer whose id is not a node id (a bug or an attack upstream) is never a member: say so once. */
  private warnBadIds(ids: string[]): void {
    for (const id of ids) {
      if (isNodeId(id) || this.warnedBadIds.has(id)) continue;
      this.warnedBadIds.add(id);
      this.d.log.warn(`ignoring peer ${JSON.stringify(id.slice(0, 80))}: not a node id, never made a member`);
    }
  }

  private tryBootstrap(heard: boolean): void {
    const { cfg, log, store, peers } = this.d;
    const st = store.get();
    const views: PeerView[] = peers.list().filter((p) => isNodeId(p.id)).map((p) => ({ id: p.id, role: p.role, vote: p.vote, member: p.member }));
    const d = decideBootstrap({
      self: this.d.nodeId, expect: cfg.bootstrap_expect, state: { vote: st.bootstrapVote }, peers: views,
      stableForMs: peers.stableForMs(), settleMs: 2 * cfg.discovery.interval_ms,
    });
    const names = (ids: string[]) => ids.map((v) => this.d.nameOf(v)).join(", ");
    if (d.kind === "wait") {
      if (d.reason !== this.note) log.info(`bootstrap: ${d.reason}`);
      this.note = d.reason;
      return;
    }
    if (d.kind === "vote") {
      store.saveBootstrapVote(d.voters);
      log.info(`bootstrap: voting for the first voters ${names(d.voters)}`);
      this.d.announce();
      return;
    }
    // Formed before (the backend has not shown it yet: an etcd not read yet, a save under way): the
    // housekeeping step hands it to the backend again, quietly; a beacon's step does nothing.
    const again = this.note === "formed";
    if (again && heard) return;
    if (!again) log.info(`bootstrap: membership formed: ${names(d.voters)}`);
    this.note = "formed";
    void this.d.consensus.bootstrap({ term: 0, index: 1, voters: d.voters });
    if (!again) this.d.announce();
  }
}
