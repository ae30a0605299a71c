// The leader's writes of the durability guard key in etcd: each a compare-and-swap against the
// guard's modification revision in the last read, with the leader key still this node's. A refused
// write is said once per term (each round asks again), then once more when a write is stored.
// settle() writes the guard read again, unchanged, after a write that got no answer (guard-core.ts).
import type { Position } from "../../core/position.ts";
import type { Guard } from "../../core/messages.ts";
import type { Logger } from "../../log.ts";
import type { Compare } from "./client.ts";
import { type ClusterKeys, nextGuard, reservedGuard, type Snapshot } from "./elect-core.ts";

export interface GuardWritesOptions {
  keys: ClusterKeys;
  self: string;
  log: Logger;
  /** This node's leadership now, and the last read. */
  leading: () => { term: number } | null;
  snap: () => Snapshot | null;
  /** The compare that the leader key is still this node's (term = its create revision). */
  holdsKey: () => Compare;
  /** True: stored; false: refused; throws when no answer came (or the read after it failed). */
  cas: (compare: Compare[], key: string, value: string) => Promise<boolean>;
}

export class GuardWrites {
  /** What was refused ("durability guard", "timeline reservation"), in which term, and not stored since. */
  private readonly refused = new Map<string, number>();

  constructor(private readonly o: GuardWritesOptions) {}

  /** The block and floor (nextGuard). True: etcd stored it; false: it refused it (or nothing was sent). */
  set(block: boolean, floor: Position | null): Promise<boolean> {
    return this.write("durability guard", (current, term) => nextGuard(current, term, this.o.self, block, floor));
  }

  /** A timeline reserved before a promotion (reservedGuard). */
  reserve(n: number): Promise<boolean> {
    return this.write("timeline reservation", (current, term) => reservedGuard(current, term, n));
  }

  /**
   * The guard the last read showed, written again as it is against its mod revision: a write that
   * got no answer and compared that revision can no longer apply once this one is stored, and if it
   * applies first, this one is refused and the read after it shows it (guard-core.ts settleDue).
   */
  async settle(): Promise<void> {
    const snap = this.o.snap();
    if (!this.o.leading() || !snap?.guard) return;
    this.o.log.debug("a guard write got no answer and may still apply: writing the guard etcd holds again, unchanged");
    await this.o.cas([this.o.holdsKey(), { key: this.o.keys.guard, target: "MOD", modRevision: snap.guardMod }], this.o.keys.guard, JSON.stringify(snap.guard.value));
  }

  private async write(what: string, next: (current: Guard | null, term: number) => Guard): Promise<boolean> {
    const leading = this.o.leading();
    const snap = this.o.snap();
    if (!leading || !snap) return false;
    const g = next(snap.guard?.value ?? null, leading.term);
    const ok = await this.o.cas([this.o.holdsKey(), { key: this.o.keys.guard, target: "MOD", modRevision: snap.guardMod }], this.o.keys.guard, JSON.stringify(g));
    if (ok) {
      if (this.refused.delete(what)) this.o.log.info(`${what} stored`);
      return true;
    }
    if (this.refused.get(what) === leading.term) {
      this.o.log.debug(`${what} not stored (again)`);
      return false;
    }
    this.refused.set(what, leading.term); // a refusal in a later term is said again
    this.o.log.warn(`${what} not stored: the guard changed meanwhile or this node lost the leader key (said once until one is stored)`);
    return false;
  }
}
