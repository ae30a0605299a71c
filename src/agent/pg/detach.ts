// Detach before a vote: a standby about to grant a vote for a newer term stops streaming from the
// old primary first, so that primary can no longer count its acknowledgements, and votes with its
// final position. This file holds the confirmation rule, with the server behind a small read
// function so the rule is tested without one (detach-target.ts reads a real one). The server is
// looked at afresh, never through the last monitoring round's view: that round may not have seen
// the server answer (a probe timeout, the agent's first round still running) or may just have
// started it streaming. Only a server verifiably not running, or one that answers as a primary,
// has nothing to stop.
import type { Position } from "../../core/position.ts";
import type { Clock } from "../../fence/clock.ts";
import type { DetachResult } from "./context.ts";
import type { SerialExecutor } from "./executor.ts";

/** The whole detach (queue wait, config reload, confirmation) stays below the agent's 3 s hold. */
export const DETACH_BOUND_MS = 2500;
const POLL_MS = 20;

/** What the rule reads from the server, once per poll. */
export interface DetachRead {
  /** A postmaster runs for this data directory (false only when verifiably not: no live postmaster.pid process serving it). */
  running: boolean;
  /** It answered the probe. */
  up: boolean;
  inRecovery: boolean;
  /** primary_conninfo in force (null when it could not be read). */
  conninfo: string | null;
  walReceiver: boolean;
  timeline: number;
  /** Received, else replayed, WAL position. */
  lsn: string | null;
}

export type Confirmation =
  /** Nothing streams: the server stopped, or it answers as a primary. */
  | { kind: "nothing"; stopped: boolean }
  | { kind: "confirmed"; last: DetachRead }
  | { kind: "unconfirmed"; last: DetachRead | null };

/**
 * Detached means: the reload is in force (primary_conninfo empty), no walreceiver, and the received
 * position did not move between two reads of a server that answered. Polls until that holds or
 * `deadline` (clock ms) passes. A server that stopped, or answers as a primary, has nothing to
 * detach; one that runs but does not answer (starting up, hung) may be streaming: never confirmed.
 */
export async function confirmDetached(read: () => Promise<DetachRead>, clock: Clock, deadline: number): Promise<Confirmation> {
  let prev: DetachRead | null = null;
  for (;;) {
    const r = await read();
    if (!r.running || (r.up && !r.inRecovery)) return { kind: "nothing", stopped: !r.running };
    if (prev?.up && r.up && r.conninfo === "" && !r.walReceiver && r.lsn === prev.lsn) return { kind: "confirmed", last: r };
    prev = r;
    if (clock.now() + POLL_MS > deadline) return { kind: "unconfirmed", last: r };
    await clock.sleep(POLL_MS);
  }
}

/** After a detach, follow nobody of an older term for at most this long (the vote moves the term on). */
export const DETACH_HOLD_MS = 10_000;

/**
 * After a confirmed detach for a vote in `term`: the monitoring round must not re-point to (or
 * start streaming from) a leader of an older term, which would acknowledge the old primary's
 * commits again. It ends when this node's term reaches `term`, or after DETACH_HOLD_MS.
 */
export class DetachHold {
  private term = -1;
  private until = 0;

  hold(term: number, now: number): void {
    this.term = term;
    this.until = now + DETACH_HOLD_MS;
  }

  /** No vote follows (the detach was not confirmed): nothing to hold. */
  release(): void {
    this.term = -1;
  }

  /** Following a leader is held while this node's term is still below the detach's. */
  holds(currentTerm: number, now: number): boolean {
    return currentTerm < this.term && now < this.until;
  }
}

/** The server side of a detach (the loop's PostgreSQL, detach-target.ts; a double in tests). */
export interface DetachTarget {
  /** Whether a postmaster runs for this data directory now (postmaster.pid and a live process serving it), looked at afresh. */
  running(): Promise<boolean>;
  /**
   * Empty primary_conninfo, reloaded, on a standby: one that answers in recovery, or, when it does
   * not answer, one in standby mode by its files (standby.signal). `last`: the read just before.
   */
  stopStreaming(last: DetachRead): Promise<void>;
  read(): Promise<DetachRead>;
  /** The position to vote with, from the last read. */
  position(last: DetachRead): Position | null;
  /**
   * The position of the data directory of a server that does not run (pg_control, the end of the WAL
   * in its pg_wal, never below what it was seen to hold), known by clock time `deadline`; null if not.
   */
  restingPosition(deadline: number): Promise<Position | null>;
}

/**
 * Detach for a vote in `term`, one task of the serial executor (so no round re-points to the old
 * primary after it), all within DETACH_BOUND_MS, queue wait included. A server verifiably not
 * running votes with what its data directory holds at rest (found by review: a fenced primary's
 * agent published its last round's position, up to a round behind the commits it acknowledged),
 * ok=false when that is not known in time; one answering as a primary streams from nobody: ok with
 * no position; ok=false when a running server's stop could not be confirmed in time (also one that
 * never answered).
 */
export async function detachFor(term: number, t: DetachTarget, exec: SerialExecutor, hold: DetachHold, clock: Clock): Promise<DetachResult> {
  const deadline = clock.now() + DETACH_BOUND_MS;
  const atRest = async (): Promise<DetachResult> => {
    const position = await t.restingPosition(deadline);
    if (position) return { ok: true, position };
    hold.release(); // no vote follows
    return { ok: false, position: null, error: `the position of the stopped server's data (the end of its WAL) is not known within ${DETACH_BOUND_MS} ms` };
  };
  try {
    return await exec.run("detach", async (): Promise<DetachResult> => {
      if (!(await t.running())) return await atRest();
      hold.hold(term, clock.now());
      const first = await t.read();
      if (!first.running) return await atRest();
      if (first.up && !first.inRecovery) return { ok: true, position: null };
      await t.stopStreaming(first);
      const c = await confirmDetached(() => t.read(), clock, deadline);
      if (c.kind === "nothing") return c.stopped ? await atRest() : { ok: true, position: null };
      const position = c.last?.lsn ? t.position(c.last) : null;
      if (c.kind === "confirmed") return { ok: true, position };
      hold.release(); // no vote follows: the rounds may follow the leader again
      return { ok: false, position, error: `could not confirm replication stopped within ${DETACH_BOUND_MS} ms` };
    }, { maxWaitMs: DETACH_BOUND_MS });
  } catch (e) {
    hold.release();
    return { ok: false, position: null, error: `detach for term ${term}: ${(e as Error).message}` };
  }
}
