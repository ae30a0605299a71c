// This agent's etcd lease (its arithmetic: lease-core.ts): granted at the first poll, kept alive by
// every poll's renewal (sent with the read: backend.ts tick), its local deadline counted from the
// renewal's send time; after an agent restart, the previous run's lease taken back while the leader
// key is still bound to it. It owns the lease id and its deadline; the member key and the leader
// key are put on it by member-report.ts and candidacy.ts.
import type { Logger } from "../../log.ts";
import type { EtcdClient } from "./client.ts";
import { leaseDeadline } from "./lease-core.ts";

export interface AgentLeaseDeps {
  client: EtcdClient;
  ttlS: number;
  maxDrift: number;
  fenceMs: number;
  log: Logger;
  /** The lease id changed (granted, expired, taken back): the member report goes on the new one. */
  replaced(): void;
}

export class AgentLease {
  private leaseId: string | null = null;
  /** Local deadline of this agent's etcd lease, from the last renewal that succeeded. */
  private leaseValid: number | null = null;

  constructor(private readonly o: AgentLeaseDeps) {}

  id(): string | null {
    return this.leaseId;
  }

  /**
   * A TTL etcd answered, at most the one this agent asks for: etcd grants what it is asked (or its
   * minimum, which is shorter), so more is a misbehaving etcd's, and a deadline past 2^31 ms made
   * the leadership's deadline timer fire at once, again and again (review).
   */
  private asked(ttlS: number): number {
    return Math.min(ttlS, this.o.ttlS);
  }

  /** The local deadline from the last renewal that succeeded (null: no lease, or it expired). */
  valid(): number | null {
    return this.leaseValid;
  }

  /** Renews (or grants) the lease with a request sent at `sentAt`; false: etcd said it expired (a new one is granted at the next poll). */
  async renew(sentAt: number): Promise<boolean> {
    let ttl: number;
    if (this.leaseId) ttl = await this.o.client.leaseKeepAlive(this.leaseId);
    else {
      const g = await this.o.client.leaseGrant(this.o.ttlS);
      this.leaseId = g.id;
      this.o.replaced();
      ttl = g.ttlS;
    }
    this.leaseValid = leaseDeadline(sentAt, this.asked(ttl), this.o.maxDrift, this.o.fenceMs);
    if (this.leaseValid !== null) return true;
    this.o.log.warn(`etcd lease ${this.leaseId} expired; a new one is granted at the next poll`);
    this.leaseId = null;
    this.o.replaced();
    return false;
  }

  /**
   * After an agent restart the key may still be bound to this node's previous lease: take the lease
   * back (like ledTerm in builtin), but do not win on it yet (true: taken back). The read that showed
   * the key was sent before this keepalive, so a delete applied in between (a resign or transfer of
   * the previous run still in flight) would go unseen; the next tick renews and reads after it, and
   * wins only if that read still shows the key (one poll later). The lease's deadline counts from
   * `readSentAt`: the keepalive, sent later, renews the lease for at least as long.
   */
  async takeBack(lease: string, readSentAt: number): Promise<boolean> {
    const ttl = await this.o.client.leaseKeepAlive(lease);
    const until = leaseDeadline(readSentAt, this.asked(ttl), this.o.maxDrift, this.o.fenceMs);
    if (until === null) return false;
    const old = this.leaseId;
    this.leaseId = lease;
    this.leaseValid = until;
    this.o.replaced();
    if (old) await this.o.client.leaseRevoke(old);
    this.o.log.info(`resuming the leader key of a previous run of this agent (lease ${lease}); leading once the next read still shows it`);
    return true;
  }
}
