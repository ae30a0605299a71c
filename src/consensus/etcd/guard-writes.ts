// The leader's writes of the durability guard key in etcd: each a compare-and-swap against the
// guard's modification revision in the last read, with the leader key still this node's. A refused
// write is said once per term (each round asks again), then once more when a write is stored.
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
  cas: (compare: Compare[], key: string, value: string) => Promise<boolean>;
}

export class GuardWrites {
  /** What was refused ("durability guard", "timeline reservation"), in which term, and not stored since. */
  private readonly refused = new Map<string, number>();

  constructor(private readonly o: GuardWritesOptions) {}

  /** The block and floor (nextGuard). */
  set(block: boolean, floor: Position | null): Promise<void> {
    return this.write("durability guard", (current, term) => nextGuard(current, term, this.o.self, block, floor));
  }

  /** A timeline reserved before a promotion (reservedGuard). */
  reserve(n: number): Promise<void> {
    return this.write("timeline reservation", (current, term) => reservedGuard(current, term, n));
  }

  private async write(what: string, next: (current: Guard | null, term: number) => Guard): Promise<void> {
    const leading = this.o.leading();
    const snap = this.o.snap();
    if (!leading || !snap) return;
    const g = next(snap.guard?.value ?? null, leading.term);
    const ok = await this.o.cas([this.o.holdsKey(), { key: this.o.keys.guard, target: "MOD", modRevision: snap.guardMod }], this.o.keys.guard, JSON.stringify(g));
    if (ok) {
      if (this.refused.delete(what)) this.o.log.info(`${what} stored`);
      return;
    }
    if (this.refused.get(what) === leading.term) return this.o.log.debug(`${what} not stored (again)`);
    this.refused.set(what, leading.term); // a refusal in a later term is said again
    this.o.log.warn(`${what} not stored: the guard changed meanwhile or this node lost the leader key (said once until one is stored)`);
  }
}
