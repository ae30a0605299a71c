// A former primary (or a stuck standby) rejoining as a standby of the primary with pg_rewind, a
// fresh clone when that is impossible (rebuild.ts makes clones). A failed connection is tried
// again before a clone is taken (core/rewind-retry.ts); a vote while pg_rewind runs is given the
// position the data held before it (rewind-vote.ts).
import type { Position } from "../../core/position.ts";
import { afterRewindFailure, connectEpisode, type ConnectEpisode, REWIND_CONNECT_RETRY_MS, rewindDue } from "../../core/rewind-retry.ts";
import { rewind, RewindError } from "../../postgres/index.ts";
import { type PgHost, splitAddr } from "./host.ts";
import type { RejoinEvent } from "./rejoin.ts";
import { CopyInterrupted } from "./rebuild-errors.ts";
import { RewindVote } from "./rewind-vote.ts";

/** The position of the stopped data directory read before pg_rewind (a WAL scan: 9–23 ms here) waits at most this long. */
const BEFORE_REWIND_MS = 2_000;

/** What a rewind uses of the rebuild around it (rebuild.ts). */
export interface RewindParts {
  progress(e: RejoinEvent): void;
  /** The stopped data directory's position (at-rest.ts), known by clock time `deadline`, else null. */
  restingPosition(deadline: number): Promise<Position | null>;
  /** Clone `from` with the server already stopped; `stuck`: it could not stream with a matching history. */
  clone(from: string, stuck: boolean): Promise<void>;
  /** Throws when a clone was refused for want of room lately, and still would be. */
  refuseWhileShort(): void;
  endLeftoverCopies(): Promise<void>;
  /** The data directory was rewound: what was known of the one before goes. */
  rebuilt(): void;
  startAsStandby(from: string): Promise<void>;
}

export class Rewinder {
  /** pg_rewind's connection failures without a break (core/rewind-retry.ts), or null. */
  private connectFailing: ConnectEpisode | null = null;
  /** A vote while pg_rewind runs (loop.ts detach asks it first). */
  readonly vote = new RewindVote();

  constructor(private readonly h: PgHost, private readonly parts: RewindParts) {}

  /** Former primary (or stuck standby) → standby of `from`: pg_rewind, else a fresh clone. */
  async rewindFrom(from: string, stuck: boolean): Promise<void> {
    const h = this.h;
    const s = h.ctx.secrets();
    if (!s) throw new Error("no replication credentials");
    // A stuck standby that found no room for a clone lately would only be stopped and rewound to be refused again.
    if (stuck) this.parts.refuseWhileShort();
    // It could not connect a moment ago: the next attempt waits its turn (core/rewind-retry.ts). The
    // round clears the note before each action: it says again why nothing happens.
    if (!rewindDue(this.connectFailing, from, h.clock.now())) {
      h.note = connectNote(from);
      return;
    }
    this.parts.progress({ kind: "rebuild", how: "rewind" });
    await h.stopServer("fast", 60);
    const [host, port] = splitAddr(from);
    h.log.info(`rejoining as a standby of ${from}: pg_rewind`);
    // Before pg_rewind runs and outside its failure handling: a failure here touched nothing (the
    // round tries again), it is no reason for a clone.
    const o = { host, port, passfile: await h.writePassfile(host, port), tls: await h.tls.client() };
    await this.parts.endLeftoverCopies();
    // What the data holds at rest before pg_rewind changes it: a vote while it runs is given this (rewind-vote.ts).
    const before = await this.parts.restingPosition(h.clock.now() + BEFORE_REWIND_MS).catch(() => null);
    if (!before) h.log.warn(`the position of the stopped data directory is not known: a vote while pg_rewind runs waits for it (refused after its bound)`);
    h.rewindMarker.set(from); // fsync'd before pg_rewind may write: a rewind cut short is never started (store/rewind-marker.ts)
    let r: "rewound" | "not-needed";
    this.vote.begin(before);
    try {
      r = await rewind({ bins: h.node.bins, osUser: h.node.osUser, log: h.log, dataDir: h.node.dataDir, user: h.cfg.postgres.repl_user, timeoutMs: 3600_000, ...o });
    } catch (e) {
      const voted = this.vote.end();
      if (e instanceof RewindError && !e.targetTouched) h.rewindMarker.clear(); // it stopped before its first write
      else if (h.rewindMarker.get()) h.log.error(`pg_rewind stopped after it began to change ${h.node.dataDir}: that directory is only ever replaced by a fresh clone now`);
      if (voted !== null) {
        // Nothing more from `from`, the source of an older term (no clone of it either): the next round decides.
        this.connectFailing = null;
        throw new CopyInterrupted(`pg_rewind failed (${(e as Error).message.slice(0, 200)}); while it ran this node was asked for its vote in term ${voted}: the next round rebuilds it from the leader then`);
      }
      const connect = e instanceof RewindError && e.couldNotConnect && !e.targetTouched;
      this.connectFailing = connect ? connectEpisode(this.connectFailing, from, h.clock.now()) : null;
      const failingForMs = this.connectFailing ? this.connectFailing.last - this.connectFailing.since : 0;
      const next = afterRewindFailure({ touched: e instanceof RewindError ? e.targetTouched : true, couldNotConnect: connect, failingForMs });
      if (next === "retry") {
        h.note = connectNote(from);
        h.log.warn(`${(e as Error).message}; tried again shortly (a fresh clone only if it cannot connect for ${REWIND_CONNECT_RETRY_MS / 1000} s)`);
        return;
      }
      this.connectFailing = null;
      h.log.warn(`${(e as Error).message}; taking a fresh clone instead`);
      await this.parts.clone(from, false);
      h.record("rejoin", `pg_rewind impossible (${(e as Error).message.slice(0, 200)}): rebuilt from a fresh clone of ${from}`);
      return;
    }
    const voted = this.vote.end();
    // The standby's configuration (standby.signal) before the marker goes: a crash in between leaves
    // a standby's data, not one taken for a former primary and rewound again (a failure here keeps
    // the marker: a clone, as after any rewind not seen to its end). On the new primary's history, a
    // restore from a backup that had not ended here is over: its target goes with the standby's files.
    h.restoreMarker.clear();
    await h.writeConfig(true, from);
    h.rewindMarker.clear();
    h.ownTimelineMarker.clear(); // on the new primary's history now (or it was already: not needed)
    this.connectFailing = null;
    h.log.info(r === "rewound" ? "pg_rewind: rewound onto the new primary's timeline" : "pg_rewind: histories agree, no rewind needed");
    if (voted !== null) {
      // Not started as a standby of `from`: this node was asked for its vote in a newer term while
      // pg_rewind ran (and gave it, unless the election found another reason not to), and `from`
      // is the primary of an older one (it may still run until its lease ends, and this
      // standby would acknowledge its commits after the vote). The next round starts it with the
      // leader of the newer term (rewound again if it must be).
      this.parts.rebuilt();
      h.record("rejoin", `${r === "rewound" ? "rewound (pg_rewind)" : "no rewind needed"} onto ${from}; not started as its standby: this node was asked for its vote in term ${voted} meanwhile`);
      throw new CopyInterrupted(`pg_rewind ended after this node was asked for its vote in term ${voted} while it ran: not started as a standby of ${from} (the next round starts it with the leader then)`);
    }
    if (r === "not-needed" && stuck) {
      // Same history, yet it could not stream: the WAL it needs is gone from the primary.
      h.log.warn("this standby could not stream although its history matches (the WAL it needs is gone): taking a fresh clone");
      await this.parts.clone(from, true);
      h.record("rejoin", `standby could not catch up (WAL removed on the primary): rebuilt from a fresh clone of ${from}`);
      return;
    }
    h.record("rejoin", r === "rewound" ? `former primary rewound (pg_rewind) onto ${from}` : `former primary follows ${from} (no rewind needed)`);
    await this.parts.startAsStandby(from);
  }
}

/** The node's note while pg_rewind waits to try `from` again after it could not connect. */
function connectNote(from: string): string {
  return `pg_rewind could not connect to ${from}: tried again shortly (a fresh clone after ${REWIND_CONNECT_RETRY_MS / 1000} s of this)`;
}
