// The etcd backend's final position: once the leader key of a term is gone, this node stops
// streaming (the agent's detach hook) and publishes its position as final for the next term, the
// report candidates count (elect-core.ts finalPositionDue decides when). It owns the detach in
// flight and the term the last confirmed detach was for, forgotten when etcd was restored from a
// snapshot (term-core.ts): the next vacancy is detached for anew.
import type { DriverHooks } from "../../agent/election-driver.ts";
import type { Position } from "../../core/position.ts";
import type { Logger } from "../../log.ts";
import { finalPositionDue } from "./elect-core.ts";

export interface FinalPositionDeps {
  hooks: DriverHooks;
  log: Logger;
  /** A detach was confirmed (`position`: where streaming stopped, null: not reported): publish now. */
  detached(position: Position | null): void;
}

export class FinalPosition {
  private detaching = false;
  private detachedFor: number | null = null;
  /** Counts resets: a detach confirmed after one is not recorded for its (forgotten) term. */
  private epoch = 0;

  constructor(private readonly d: FinalPositionDeps) {}

  /** The term this node's published position is final for (null: none yet). */
  term(): number | null {
    return this.detachedFor;
  }

  /** The leader key of `vacatedTerm` is gone: detach for the next term when due (`promised`: under a failsafe promise). */
  vacated(vacatedTerm: number, promised: boolean, positionKnown: boolean): void {
    const due = finalPositionDue({ vacatedTerm, detaching: this.detaching, detachedFor: this.detachedFor, promised, positionKnown });
    if (due !== null) this.detach(due);
  }

  /** etcd was restored: the term of the last detach no longer names a vacancy of etcd's terms. */
  reset(): void {
    this.detachedFor = null;
    this.epoch++;
  }

  private detach(term: number): void {
    this.detaching = true;
    const epoch = this.epoch;
    const hook = this.d.hooks.detach ?? (() => Promise.resolve({ ok: true, position: null }));
    void hook(term).then(
      (r) => {
        if (!r.ok) return this.d.log.warn(`could not stop streaming for term ${term}: ${r.error ?? "unconfirmed"}; retrying`);
        if (epoch === this.epoch) this.detachedFor = term;
        this.d.detached(r.position ?? null);
      },
      (e: Error) => this.d.log.warn(`stop streaming for term ${term}: ${e.message}`),
    ).finally(() => {
      this.detaching = false;
    });
  }
}
