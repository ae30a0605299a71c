// How a rebuild (rebuild.ts, rewind-task.ts) ends when it did not rebuild: refused before it
// touched anything, or gave way to a vote.

/** A clone refused before anything was stopped or written: retrying as it is cannot help; the data directory is as it was. */
export class CloneRefusedError extends Error {
  override readonly name: string = "CloneRefusedError";
}

/** A clone refused for want of room on the data directory's file system (core/clone-room.ts). */
export class NoRoomError extends CloneRefusedError {
  override readonly name = "NoRoomError";
}

/**
 * A rebuild gave way to a vote, not a failure: a clone's copy stopped on purpose
 * (Rebuilder.interruptCopy; the data directory is as it was), or a rewind that ran while this node
 * voted, not started as its source's standby (rewind-vote.ts). The next round decides again.
 */
export class CopyInterrupted extends Error {
  override readonly name = "CopyInterrupted";
}
