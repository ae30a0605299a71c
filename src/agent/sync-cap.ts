// A node that can never lead votes with a capped position (core/sync-exclusion.ts): this carries
// the data. It announces its promotability with an epoch of this process, keeps the current
// leader's latest exclusion record, and turns every position it hands to the consensus backend
// (each round's, a detach's final one) into min(position, cap). The rules are in the core.
// It also numbers this node's state messages and echoes the last leader message it processed; as
// leader, it remembers the last message whose record named each standby (the fill, syncSet).
import type { Config } from "../config/schema.ts";
import { syncSet, type FactsSnapshot } from "../core/cluster-facts.ts";
import { canLead, capFor, heardRecord, keepRecord, laterMessage, votingPosition, withholdState, type Leadership, type Exclusion, type Heard, type HeldRecord, type SyncSet } from "../core/sync-exclusion.ts";
import { comparePosition, type Position } from "../core/position.ts";
import type { Logger } from "../log.ts";
import type { Consensus, DetachResult } from "./election-driver.ts";

export class SyncCap {
  private record: HeldRecord | null = null;
  private real: Position | null = null;
  private lastCap: Position | null = null;
  /** The last leader state message processed (announced as `heard`). */
  private echo: Heard | null = null;
  /** A state message of the leader this node follows was processed in this run (an older leader's carries no numbers: no echo). */
  private leaderHeard = false;
  /** This node's state messages, numbered; as leader, the last one whose record named each standby. */
  private sent = 0;
  private readonly named = new Map<string, number>();

  private readonly canLead: boolean;
  private readonly role: "database" | "witness";
  private readonly startedAt: number;

  /**
   * `epoch`: this run's, above every earlier run's of this node (store/run-epoch.ts). Promotability
   * changes only with an agent restart (tags and priority are not reloaded live), so a record the
   * leader computed for an earlier run of this node never caps this one, and a standby orders this
   * node's messages as leader by (epoch, seq).
   */
  constructor(
    cfg: Pick<Config, "role" | "tags" | "priority">, private readonly self: string, readonly epoch: number,
    private readonly consensus: () => Consensus, private readonly log: Logger, private readonly now: () => number,
  ) {
    this.canLead = canLead({ role: cfg.role, nofailover: cfg.tags.nofailover, priority: cfg.priority });
    this.role = cfg.role;
    this.startedAt = now();
  }

  /** Whether this run keeps its state messages back for now (core/sync-exclusion.ts withholdState). */
  withholding(): boolean {
    return withholdState({ canLead: this.canLead, role: this.role, echoed: this.leaderHeard, sinceStartMs: this.now() - this.startedAt });
  }

  announce(): { promotable: boolean; epoch: number; heard?: Heard } {
    return { promotable: this.canLead, epoch: this.epoch, ...(this.echo ? { heard: this.echo } : {}) };
  }

  /** Number the state message about to be sent with `exclusion` (this node's record as leader, or null). */
  stamp(exclusion: Exclusion | null): number {
    const seq = ++this.sent;
    for (const e of exclusion?.excluded ?? []) this.named.set(e.id, seq);
    return seq;
  }

  /** As leader: the synchronous set of this run, needing k standbys (core/cluster-facts.ts syncSet). */
  syncSet(facts: FactsSnapshot, k: number): SyncSet {
    return syncSet(facts, { k, run: { id: this.self, epoch: this.epoch }, lastNamed: (id) => this.named.get(id) });
  }

  /** The cap that applies now (null: vote with the full position). */
  cap(): Position | null {
    const now = this.leadership();
    this.record = keepRecord(this.record, now);
    const cap = capFor({ canLead: this.canLead, self: this.self, epoch: this.epoch, record: this.record, now });
    if ((cap === null) !== (this.lastCap === null) || (cap && this.lastCap && comparePosition(cap, this.lastCap) !== 0)) {
      this.log.info(cap ? `not a synchronous standby since ${cap.timeline}/${cap.lsn}: votes compare positions up to there only` : "votes compare the full position (no confirmed exclusion from the synchronous standbys)");
      this.lastCap = cap;
    }
    return cap;
  }

  private leadership(): Leadership {
    const st = this.consensus().status();
    return { leader: st.leader, term: st.term };
  }

  /** The position to hand to the consensus backend for this node's real `position`. */
  position(position: Position): Position {
    this.real = position;
    return votingPosition(position, this.cap());
  }

  /** A detach's final position, capped the same way (null stays null: unchanged). */
  detached(r: DetachResult): DetachResult {
    if (!r.position) return r;
    this.real = r.position;
    return { ...r, position: votingPosition(r.position, this.cap()) };
  }

  /** The current leader's state message: its record (null: none). Re-feeds the position when the cap changed. */
  heard(from: string, exclusion: Exclusion | null, msg: { epoch?: number; seq?: number } = {}): void {
    if (this.canLead || !laterMessage(this.echo, from, msg.epoch, msg.seq)) return;
    const now = this.leadership();
    this.record = heardRecord(this.record, from, exclusion, now);
    // Echoed only once processed as the leader's: the leader may then name this node (syncSet).
    if (now.leader === from && !this.leaderHeard) {
      this.leaderHeard = true;
      this.log.info("processed a first state message of the leader: this run's state messages go out (they carry its echo)");
    }
    if (now.leader === from && msg.epoch !== undefined && msg.seq !== undefined) this.echo = { leader: from, epoch: msg.epoch, seq: msg.seq };
    this.refeed();
  }

  /** The leader or term changed (a cap is for one leader's term only): hand the backend the position again. */
  refeed(): void {
    if (this.canLead || !this.real) return;
    const st = this.consensus().status();
    if (!st.positionKnown) return;
    const p = votingPosition(this.real, this.cap());
    if (comparePosition(p, st.position) !== 0) void this.consensus().setPosition(p);
  }
}
