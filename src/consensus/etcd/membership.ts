// The etcd backend's membership as this agent keeps it: a bootstrap's first membership, stored in
// etcd (only if etcd has none) and tried again at each poll until a read shows one; each
// membership a read shows, persisted to the agent's election state; and a leader's change of one
// voter (compare-and-swap on the membership it read). It owns the first membership not yet stored.
import type { DriverHooks } from "../../agent/election-driver.ts";
import { planMembershipChange, proposed, type ProposeOp } from "../../core/election-membership.ts";
import type { Membership } from "../../core/messages.ts";
import type { Logger } from "../../log.ts";
import type { ElectionStore } from "../../store/election-state.ts";
import type { Compare } from "./client.ts";
import type { ClusterKeys, Snapshot } from "./elect-core.ts";

export interface MembershipDeps {
  keys: ClusterKeys;
  store: ElectionStore;
  hooks: DriverHooks;
  log: Logger;
  /** The backend's compare-and-swap of one key (it reads the prefix again either way). */
  cas(compare: Compare[], key: string, value: string): Promise<boolean>;
}

export class MembershipKeeper {
  /** A bootstrap's membership not yet stored (an etcd error): stored at the next poll unless etcd shows one. */
  private first: Membership | null = null;

  constructor(private readonly d: MembershipDeps) {}

  bootstrap(m: Membership): void {
    this.first = m;
  }

  /** Stores the first membership unless etcd has one (an etcd error keeps it for the next poll). */
  async storeFirst(): Promise<void> {
    const m = this.first;
    if (!m) return;
    const ok = await this.d.cas([{ key: this.d.keys.membership, target: "CREATE", createRevision: 0 }], this.d.keys.membership, JSON.stringify(m));
    this.first = null;
    this.d.log.info(ok ? `membership stored in etcd: voters ${m.voters.join(",")}` : "membership already in etcd: adopting it");
  }

  /** A poll's read: a membership in etcd ends the bootstrap's; without one the bootstrap's is stored. */
  async polled(s: Snapshot): Promise<void> {
    if (s.membership) this.first = null;
    else if (this.first) await this.storeFirst();
  }

  /** Persists the membership `s` shows when it differs from the stored one. */
  adopt(s: Snapshot): void {
    const m = s.membership?.value ?? null;
    if (!m || JSON.stringify(m) === JSON.stringify(this.d.store.get().membership)) return;
    // Kept locally too: the beacon tells peers this node is a member, and bootstrap does not run again.
    try {
      this.d.store.saveElection({ ...this.d.store.get(), membership: m });
    } catch (e) {
      this.d.hooks.fatal(`cannot persist the membership to ${this.d.store.file}: ${(e as Error).message}`);
    }
  }

  /** A leader's change of one voter or approval, written only over the membership `s` showed and while `holdsKey` holds. */
  async propose(op: ProposeOp, node: string, self: string, leading: { term: number } | null, s: Snapshot | null, holdsKey: Compare): Promise<void> {
    const m = s?.membership;
    if (!leading || !m) return;
    const plan = planMembershipChange(m.value, op, node, self);
    if ("reject" in plan) return this.d.log.warn(`proposal-rejected: ${op} ${node}: ${plan.reject}`);
    const next = proposed(m.value, leading.term, plan); // term: the leader's, as a compare-and-swap value
    if (await this.d.cas([holdsKey, { key: this.d.keys.membership, target: "MOD", modRevision: m.mod }], this.d.keys.membership, JSON.stringify(next))) {
      this.d.log.info(`membership-changed: voters ${next.voters.join(",")}`);
    }
  }
}
