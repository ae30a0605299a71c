// Who votes: the first membership formed from discovered peers (bootstrap), then the leader adding
// authenticated nodes it discovered, one at a time, after suspending automatic failover.
import { decideBootstrap, type PeerView } from "../core/bootstrap.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import type { Consensus } from "./election-driver.ts";
import type { PeerTable } from "./peers.ts";

export interface MembershipDeps {
  cfg: Config;
  log: Logger;
  nodeId: string;
  store: ElectionStore;
  consensus: Consensus;
  peers: PeerTable;
  durability(): "quorum" | "strict" | "async";
  /** The primary's next re-sync must publish a floor (a block guard was set outside its plan). */
  markDegraded(): void;
  announce(): void;
  nameOf(id: string): string;
}

export class MembershipKeeper {
  private note = "";

  constructor(private readonly d: MembershipDeps) {}

  /** While there is no membership: why not yet ("formed" once it is). */
  bootstrapNote(): string {
    return this.note;
  }

  /** One housekeeping step. */
  step(): void {
    const st = this.d.consensus.status();
    if (!st.membership) return this.tryBootstrap();
    if (st.role !== "leader" || !st.membershipCommitted || !this.d.consensus.lease()) return;
    const voters = st.membership.voters;
    const joiner = this.d.peers.list().find((p) => p.connected && !voters.includes(p.id));
    if (!joiner) return;
    // A new voter changes k (synchronous standbys needed): suspend automatic failover (a guard
    // stored by a majority) before the change; the primary's next re-sync lifts it with a floor.
    const g = st.guard;
    if (this.d.durability() !== "async" && !(g?.block && g.holder === this.d.nodeId && st.guardCommitted >= g.seq)) {
      if (!g?.block || g.holder !== this.d.nodeId) {
        this.d.log.info(`about to add ${joiner.name}: suspending automatic failover until the primary is synchronous with the new voter set`);
        this.d.markDegraded();
        this.d.consensus.setGuard(true, null);
      }
      return;
    }
    this.d.log.info(`adding ${joiner.name} (${joiner.id}, ${joiner.role}) as a voter`);
    this.d.consensus.propose("add", joiner.id);
  }

  private tryBootstrap(): void {
    const { cfg, log, store, peers } = this.d;
    const st = store.get();
    const views: PeerView[] = peers.list().map((p) => ({ id: p.id, role: p.role, vote: p.vote, member: p.member }));
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
    log.info(`bootstrap: membership formed: ${names(d.voters)}`);
    this.note = "formed";
    this.d.consensus.bootstrap({ term: 0, index: 1, voters: d.voters });
    this.d.announce();
  }
}
