// The primary's half of "standbys that cannot lead are never synchronous" (core/sync-exclusion.ts):
// find the position from which synchronous_standby_names leaving them out is in force, confirmed
// (the checkpointer took non-empty names, and no walsender of a standby left out still counts),
// and keep it while those names stay in force. The leader publishes the record in its state message.
import { exclusionRecord, namedIn, type Exclusion } from "../../core/sync-exclusion.ts";
import type { Position } from "../../core/position.ts";
import { probe, syncCandidatesInForce, type Probe } from "../../postgres/index.ts";
import { slotFor } from "./context.ts";
import type { PgHost } from "./host.ts";

export class ExclusionKeeper {
  /** Confirmed for one generation of the names in force (PgHost.syncNamesGen), never by the string alone. */
  private confirmed: { names: string; gen: number; at: Position } | null = null;

  constructor(private readonly h: PgHost) {}

  /** Not a primary (or its server down): nothing is confirmed any more. */
  reset(): void {
    this.confirmed = null;
  }

  /** Every round of a primary, after the upkeep (names planned, written, reloaded). */
  async step(p: Probe): Promise<void> {
    const h = this.h;
    const [names, gen] = [h.syncNames, h.syncNamesGen];
    const holds = p.up && !p.inRecovery && names !== "" && h.syncNamesTaken && p.syncNames === names;
    if (!holds) return this.reset();
    if (this.confirmed?.names === names && this.confirmed.gen === gen) return;
    this.confirmed = null;
    const now = await syncCandidatesInForce(h.localDb()).catch((e: Error) => {
      h.log.warn(`cannot read the synchronous candidates in force: ${e.message} (tried again next round)`);
      return null;
    });
    if (!now) return;
    if (now.names !== names || now.counting.some((n) => !namedIn(names, n))) return; // a walsender has not taken the reload yet
    // A probe that starts after the check: every commit a left-out standby acknowledged is at or below its position.
    const q = await probe(h.localDb(), h.queryDeadlineMs);
    if (!q.up || q.inRecovery || !q.currentLsn || q.syncNames !== names || h.syncNames !== names || h.syncNamesGen !== gen || !h.syncNamesTaken) return;
    this.confirmed = { names, gen, at: { timeline: q.timeline, lsn: q.currentLsn } };
    const out = h.ctx.standbyMembers().filter((id) => !namedIn(names, slotFor(id)));
    h.log.info(`synchronous_standby_names '${names}' confirmed in force from ${q.timeline}/${q.currentLsn}` +
      (out.length > 0 ? `: ${out.join(", ")} (left out) no longer acknowledge commits` : " (no standby left out)"));
  }

  /** The record the leader publishes in `term` (null: nothing confirmed, or nobody left out). */
  record(term: number): Exclusion | null {
    const c = this.confirmed;
    if (!c || c.names !== this.h.syncNames || c.gen !== this.h.syncNamesGen) return null;
    const members = this.h.ctx.standbyMembers().map((id) => ({ id, slot: slotFor(id), epoch: this.h.ctx.announcedEpoch(id) }));
    // Never a standby the fill wants (it is named once it can hold no cap: a record naming it would keep one).
    return exclusionRecord({ term, at: c.at, names: c.names, members, keepOut: this.h.ctx.syncSet().wanted });
  }
}
