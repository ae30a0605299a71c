// This agent's member report in etcd (name, role, position, the term it detached for), bound to
// its lease: written when it changed, a position that only moved at most once a second. It owns
// what was last written and when.
import { comparePosition } from "../../core/position.ts";
import type { EtcdClient } from "./client.ts";
import type { ClusterKeys, MemberReport, Snapshot } from "./elect-core.ts";

/** A report is re-published at most this often when only the position moved. */
const PUBLISH_EVERY_MS = 1000;

export class MemberReporter {
  private published = "";
  private publishedAt = -Infinity;

  constructor(private readonly o: { client: EtcdClient; keys: ClusterKeys; self: string; clock: () => number }) {}

  /** A new lease: the report is written again at the next publish. */
  reset(): void {
    this.published = "";
  }

  /** Writes `report` under `leaseId` when due; the snapshot then shows its revision. */
  async publish(leaseId: string, report: MemberReport, snap: Snapshot | null): Promise<void> {
    const text = JSON.stringify(report);
    if (text === this.published) return;
    const prev = snap?.members.get(this.o.self)?.report;
    const urgent = !prev || prev.detachedFor !== report.detachedFor || comparePosition(prev.position, report.position) > 0;
    if (!urgent && this.o.clock() - this.publishedAt < PUBLISH_EVERY_MS && this.published !== "") return;
    const key = this.o.keys.member(this.o.self);
    const r = await this.o.client.txn([], [{ put: { key, value: text, lease: leaseId } }, { range: { key } }]);
    this.published = text;
    this.publishedAt = this.o.clock();
    const kv = r.ranges[0]?.[0];
    if (snap && kv) snap.members.set(this.o.self, { report, mod: kv.modRevision });
  }
}
