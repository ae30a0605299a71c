// This agent's member report in etcd (name, role, position, the term it detached for), bound to
// its lease: written whenever the last read shows another one (elect-core.ts reportDue), a
// position that only moved at most once a second. It owns when it last wrote under this lease.
import type { EtcdClient } from "./client.ts";
import { type ClusterKeys, type MemberReport, reportDue, type Snapshot } from "./elect-core.ts";

export class MemberReporter {
  /** A report was written under the current lease. */
  private bound = false;
  private publishedAt = -Infinity;

  constructor(private readonly o: { client: EtcdClient; keys: ClusterKeys; self: string; clock: () => number }) {}

  /** A new lease: the report is written again at the next publish. */
  reset(): void {
    this.bound = false;
  }

  /** Writes `report` under `leaseId` when due; the snapshot then shows its revision. */
  async publish(leaseId: string, report: MemberReport, snap: Snapshot | null): Promise<void> {
    const shown = snap?.members.get(this.o.self)?.report ?? null;
    if (!reportDue({ report, shown, bound: this.bound, sinceMs: this.o.clock() - this.publishedAt })) return;
    const key = this.o.keys.member(this.o.self);
    const r = await this.o.client.txn([], [{ put: { key, value: JSON.stringify(report), lease: leaseId } }, { range: { key } }]);
    this.bound = true;
    this.publishedAt = this.o.clock();
    const kv = r.ranges[0]?.[0];
    if (snap && kv) snap.members.set(this.o.self, { report, mod: kv.modRevision });
  }
}
