// A crashed primary restarted in place by its leader (src/agent/pg/primary.ts): which failed start
// is tried again within the restart's budget. Pure: the shell carries it out.

/** What a failed start of the restart in place says, as the shell sees it. */
export interface FailedStart {
  /** PostgreSQL refused because another server holds its lock file (PgCtlError "already-running"). */
  lockHeld: boolean;
  /** Lock files of the dead postmaster that were kept before this start (not the OS user's, behind a refused link, an error). */
  keptLocks: number;
  now: number;
  deadline: number;
}

/**
 * Try the start again (after a pause) only when a lock file held it back and none was kept: the
 * dead postmaster's leftover backends still hold it for moments after they were killed. A lock
 * file kept on purpose stays, and any other failure (a full disk, an I/O or memory error) would
 * come again: the restart fails at once and the leader steps down. Nothing past the deadline.
 */
export function retryStart(f: FailedStart): boolean {
  return f.lockHeld && f.keptLocks === 0 && f.now <= f.deadline;
}
