// The etcd leader key this node holds, as recorded in its state directory (src/store/election-state.ts
// etcdKey): written when this node takes a key (a take it won, a take whose answer was lost, a
// migration's open writes it too), dropped once a read shows that key gone or another's. A key with
// this node's id is led on, or taken back after a restart, only when it is the recorded one
// (elect-core.ts ownKeyAction): not one an etcd restore brought back.
import type { Logger } from "../../log.ts";
import type { ElectionStore } from "../../store/election-state.ts";
import type { Candidate } from "./candidacy.ts";
import { heldAfterRead, type OwnKeyAction, type Snapshot } from "./elect-core.ts";
import type { Resignation } from "./resign.ts";

export class HeldKey {
  constructor(private readonly d: { store: ElectionStore; self: string; log: Logger; resignation: Resignation; candidate: () => Candidate }) {}

  /** This node took (or leads on) the key of `term`: durable before it leads on it. */
  took(term: number): void {
    this.d.store.saveEtcdKey(term);
  }

  /** A poll's read showed `leader`: the record goes unless it is this node's recorded key. */
  read(leader: Snapshot["leader"]): void {
    const held = this.d.store.etcdKey();
    if (heldAfterRead(held, leader, this.d.self) !== held) this.d.store.saveEtcdKey(null);
  }

  /** `l` carries this node's id while this process does not lead: what to do with it (`leaseId`: this process's lease). */
  action(l: NonNullable<Snapshot["leader"]>, leaseId: string | null): OwnKeyAction {
    const a = this.d.resignation.ownKey({ keyTerm: l.term, onOwnLease: l.lease === leaseId, held: this.d.store.etcdKey(), lostTake: this.d.candidate().lostTake() });
    if (a === "ignore") {
      const why = `the leader key of term ${l.term} carries this node's id on a lease this process does not hold, but it is not the key this node recorded taking (brought back by an etcd restore?): not taken back, waiting for it to run out`;
      if (this.d.candidate().note() !== why) this.d.log.warn(why);
      this.d.candidate().noted(why);
    }
    return a;
  }
}
