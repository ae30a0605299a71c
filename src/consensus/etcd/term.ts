// The etcd backend's term as this agent keeps it (term-core.ts readTerm decides), and what an etcd
// restored from a snapshot resets besides: the final position this node published (final-position.ts)
// and its member report (member-report.ts), written again. It owns the term and the log lines.
import type { Logger } from "../../log.ts";
import type { Snapshot } from "./elect-core.ts";
import type { FinalPosition } from "./final-position.ts";
import type { MemberReporter } from "./member-report.ts";
import { NO_TERM, readTerm, termTaken, type TermView } from "./term-core.ts";

export class Terms {
  private view: TermView = NO_TERM;

  constructor(private readonly d: { log: Logger; final: FinalPosition; reporter: MemberReporter }) {}

  /** The term of the latest leader this node knows of (the vacancy it detaches for once that key is gone). */
  term(): number {
    return this.view.term;
  }

  /**
   * This node took the key of `term`. The final position it took it with is of the vacancy before:
   * forgotten, so that this key's own vacancy is detached for (a take in a restored etcd, whose term
   * is below the one that position was for, would otherwise leave this node's report final for it).
   */
  taken(term: number): void {
    this.view = termTaken(this.view, term);
    this.d.final.reset();
  }

  /** A poll's read. */
  read(s: Snapshot): void {
    const r = readTerm(this.view, this.d.final.term(), s);
    this.view = r.view;
    if (r.restored) {
      const then = r.view.restoredAt !== null
        ? `no leader key: the term stays ${r.view.term} (the vacancy of the leader before the restore) until a leader takes the key`
        : `the term is ${r.view.term} now, and its vacancy is detached for anew`;
      this.d.log.warn(`etcd was restored from a snapshot (or its keys rewritten): ${r.restored}; ${then} (docs/etcd.md, "Restoring etcd")`);
    } else if (r.reset === "final") this.d.log.info(`the first leader after the etcd restore took the key: term ${r.view.term}, detached for anew once it is gone`);
    if (r.reset === "final") this.d.final.reset();
    if (r.reset) this.d.reporter.reset();
  }
}
