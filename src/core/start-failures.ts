// A standby whose start as a standby keeps failing: after STARTS_BEFORE_REBUILD failed starts in a
// row it is rebuilt from a fresh clone, once per cause (the last FATAL/PANIC line of its failed start,
// src/postgres/start-failure.ts). A fresh clone that fails the same way (a library not installed,
// memory, a setting the cluster runs) is not followed by another base backup of the whole database:
// that is said once, and the rounds keep starting it until the cause is fixed (`pgherd rejoin
// --force-clone` still rebuilds it). A cause counts as rebuilt for only once the fresh clone asked
// for it reaches its start: a clone refused (no room) made none, and the next failed starts ask for
// one again. Once it streams again, a later failure may be another: the memory is cleared. With
// rejoin.auto = false nothing is rebuilt by itself: that is said once per cause, and the rounds keep
// starting it (a fresh clone moves the data directory aside, which the operator keeps for himself
// there). Pure: the shell (src/agent/pg/loop.ts) carries the action out.

export const STARTS_BEFORE_REBUILD = 3;

export interface StartFailureMemory {
  /** The cause the last automatic rebuild was for: its fresh clone reached its start ("" none). */
  rebuiltFor: string;
  /** The cause last said not to be rebuilt again ("" none). */
  notRebuilt: string;
  /** The cause of the automatic rebuild asked for last, until its clone reaches its start ("" none). */
  asked: string;
}

export const NO_START_FAILURES: StartFailureMemory = { rebuiltFor: "", notRebuilt: "", asked: "" };

export type StartFailureAction =
  /** Nothing yet (fewer failed starts), or said already. */
  | "none"
  /** Rebuild from a fresh clone (an automatic rejoin request). */
  | "rebuild"
  /** Say once that the fresh clone failed the same way and is not taken again. */
  | "say-not-rebuilt"
  /** Say once that rejoin.auto = false keeps it from being rebuilt (`pgherd rejoin --force-clone` does it). */
  | "say-auto-off";

/** After the `failures`-th failed start in a row, for `cause`; `rejoinAuto`: rejoin.auto. */
export function afterFailedStart(m: StartFailureMemory, failures: number, cause: string, rejoinAuto: boolean): { memory: StartFailureMemory; action: StartFailureAction } {
  if (failures < STARTS_BEFORE_REBUILD) return { memory: m, action: "none" };
  if (!rejoinAuto) return m.notRebuilt === cause ? { memory: m, action: "none" } : { memory: { ...m, notRebuilt: cause }, action: "say-auto-off" };
  if (cause !== m.rebuiltFor) return { memory: { ...m, asked: cause }, action: "rebuild" };
  if (m.notRebuilt === cause) return { memory: m, action: "none" };
  return { memory: { ...m, notRebuilt: cause }, action: "say-not-rebuilt" };
}

/** The clone of the automatic rebuild asked for is in place and starts: its cause is rebuilt for. */
export function afterRebuildStarting(m: StartFailureMemory): StartFailureMemory {
  return m.asked ? { ...m, rebuiltFor: m.asked, asked: "" } : m;
}

/** The standby streams: a later failure may be another. */
export function afterStreaming(_m: StartFailureMemory): StartFailureMemory {
  return NO_START_FAILURES;
}
