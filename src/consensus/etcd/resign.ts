// The etcd backend's resign: the pause (set before the fence and counted again from its end and
// from a failed delete) and the release of the leader key (a delete, with a transfer's target when
// named) once the fence is over. It owns the resign pause (no
// automatic take before it ends: elect-core.ts decideCandidacy) and the leader key of the last
// resign, released again while a read still shows it as this node's in the pause (ownKeyAction).
// It also deletes a key with this node's id on its lease that this node does not hold (drop).
import type { Logger } from "../../log.ts";
import type { EtcdClient, Op } from "./client.ts";
import { type ClusterKeys, type OwnKeyAction, ownKeyAction } from "./elect-core.ts";

export interface ResignationDeps {
  client: EtcdClient;
  keys: ClusterKeys;
  /** The resign pause. */
  deferMs: number;
  log: Logger;
  clock: () => number;
}

export class Resignation {
  private until = -Infinity;
  /** The leader key of the last resign: its term, the pause, and the release (delete, transfer). */
  private resigned: { term: number; until: number; ops: Op[] } | null = null;

  constructor(private readonly d: ResignationDeps) {}

  /** No automatic take before this (decideCandidacy's resignedUntil). */
  pausedUntil(): number {
    return this.until;
  }

  /** A resign starts (before the fence): the pause counts from now, and again from the release. */
  pause(): void {
    this.until = this.d.clock() + this.d.deferMs;
  }

  /** Releases the leader key of `term` (this node fenced already); throws what the release threw. */
  async release(term: number, transferTo?: string): Promise<void> {
    const ops: Op[] = [{ del: { key: this.d.keys.leader } }];
    if (transferTo) ops.push({ put: { key: this.d.keys.transfer, value: JSON.stringify({ to: transferTo, term }) } });
    // If the delete fails the key stays bound to this node's lease: the next reads must not win it
    // back (the backend's observeLeader). The pause counts from the end of the fence, and again from
    // a failed delete (its answer may take request_timeout_ms): a slow fence and a lost answer together
    // outlasted a pause counted from the resign, and the node led the same term again at once.
    this.pause();
    this.resigned = { term, until: this.until, ops };
    try {
      await this.send(this.resigned, transferTo);
    } catch (e) {
      this.pause();
      this.resigned = { ...this.resigned, until: this.until };
      throw e;
    }
  }

  /** A key with this node's id read while not leading (elect-core.ts ownKeyAction): the resign pause is this module's. */
  ownKey(k: { keyTerm: number; onOwnLease: boolean; held: number | null; lostTake: number | null }): OwnKeyAction {
    return ownKeyAction({ ...k, resigned: this.resigned, now: this.d.clock() });
  }

  /** Deletes the leader key of `term` (this node's id on its lease) that this node does not hold: nobody leads on it. */
  async drop(term: number): Promise<void> {
    const t = await this.d.client.txn([{ key: this.d.keys.leader, target: "CREATE", createRevision: term }], [{ del: { key: this.d.keys.leader } }]);
    if (t.succeeded) this.d.log.warn(`deleted the leader key of term ${term}: it carries this node's id on its lease, but it is not the key this node recorded taking (brought back by an etcd restore?); not led on`);
  }

  /** Sends the last resign's release again (ownKey answered "release"). */
  releaseAgain(): Promise<void> {
    return this.send(this.resigned!);
  }

  private async send(r: { term: number; ops: Op[] }, transferTo?: string): Promise<void> {
    const t = await this.d.client.txn([{ key: this.d.keys.leader, target: "CREATE", createRevision: r.term }], r.ops);
    this.d.log.info(`released the leader key of term ${r.term}${transferTo ? ` for ${transferTo}` : ""}${t.succeeded ? "" : " (it was gone already)"}`);
  }
}
