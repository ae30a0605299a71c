// A vote while pg_rewind runs (rebuild.ts rewindFrom, loop.ts detach). pg_rewind holds the serial
// executor for as long as it runs (up to an hour), and a vote's detach may wait 2.5 s for it: until
// 8 December a node rewinding refused every vote meanwhile, so in a three-node cluster the
// primary's loss while the third node rewound (a former primary rejoining, a stuck standby) meant
// no failover until the rewind ended. A rewind cannot give way as a clone's copy does (stopped
// halfway, the data directory is only ever replaced by a fresh clone), but its server is stopped
// and acknowledges nothing while it runs: the node votes with the position its data held at rest
// just before pg_rewind began (pg_control, the end of its WAL, never below what it was seen to
// hold: at-rest.ts), as any stopped server does. The rewind then never starts the server as a
// standby of the source it was given, which belongs to the older term: the next round decides
// with the leader of the newer one.
import type { Position } from "../../core/position.ts";

export class RewindVote {
  /** While pg_rewind runs: the position to vote with (null: not known, votes wait as before), and the newest term a vote was asked for meanwhile. */
  private running: { position: Position | null; votedIn: number | null } | null = null;

  /** pg_rewind is about to start on a stopped server whose data holds `position` at rest (null when not known in time). */
  begin(position: Position | null): void {
    this.running = { position, votedIn: null };
  }

  /** pg_rewind ended (either way): the newest term a vote was asked for while it ran, else null. */
  end(): number | null {
    const voted = this.running?.votedIn ?? null;
    this.running = null;
    return voted;
  }

  /** Whether pg_rewind runs with a known position at rest (a vote need not wait for it). */
  active(): boolean {
    return this.running?.position != null;
  }

  /**
   * A vote in `term` while pg_rewind runs: the position to vote with, remembered so the rewind does
   * not start the server after it; null when no rewind with a known position runs (the detach takes
   * its turn on the executor).
   */
  vote(term: number): Position | null {
    const r = this.running;
    if (!r?.position) return null;
    r.votedIn = Math.max(r.votedIn ?? term, term);
    return r.position;
  }
}
