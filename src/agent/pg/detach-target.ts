// The server side of a detach before a vote (detach.ts has the rule): what a real PostgreSQL says
// at this moment, read afresh for every detach, never from the last monitoring round's view.
import { statSync } from "node:fs";
import { join } from "node:path";
import { probe, readPostmasterPid } from "../../postgres/index.ts";
import type { DetachRead, DetachTarget } from "./detach.ts";
import type { PgHost } from "./host.ts";

/** One probe of a detach's confirmation waits at most this long (the whole detach is bounded at DETACH_BOUND_MS). */
const DETACH_PROBE_MS = 1000;

const NOT_RUNNING: DetachRead = { running: false, up: false, inRecovery: false, conninfo: null, walReceiver: false, timeline: 0, lsn: null };

/**
 * Whether a postmaster runs for `dataDir`: false only when verifiably not (no postmaster.pid, or
 * its process is gone or serves another directory). A pid file that cannot be read or parsed
 * counts as running: a detach then stops streaming and confirms, or refuses the vote.
 */
export async function postmasterRuns(dataDir: string): Promise<boolean> {
  const gone = () => {
    try {
      statSync(join(dataDir, "postmaster.pid"));
      return false;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "ENOENT";
    }
  };
  if (gone()) return false;
  const pm = await readPostmasterPid(dataDir);
  if (pm === null) return !gone();
  return pm.alive && pm.servesThisDir !== false;
}

/** The loop's PostgreSQL as a DetachTarget; `restingPosition` from the data directory at rest (at-rest.ts), which owns the WAL scans. */
export function detachTarget(h: PgHost, restingPosition: DetachTarget["restingPosition"]): DetachTarget {
  return {
    restingPosition,
    running: () => postmasterRuns(h.node.dataDir),
    stopStreaming: async (last) => {
      // A server that does not answer is a standby (maybe streaming already) when its files say
      // standby mode; one that is neither (a primary starting or hung) streams from nobody and is
      // left alone: its detach is then confirmed only once it answers as a primary or stops.
      const standby = last.up ? last.inRecovery : statSafe(join(h.node.dataDir, "standby.signal"));
      if (!standby) return;
      await h.writeConfig(true, undefined);
      await h.reload();
    },
    read: async () => {
      if (!(await postmasterRuns(h.node.dataDir))) return NOT_RUNNING;
      const p = await probe(h.localDb(), DETACH_PROBE_MS);
      if (!p.up) return { ...NOT_RUNNING, running: true };
      const ci = await h.localDb().query("primary_conninfo", (sql) => sql`SELECT current_setting('primary_conninfo') AS v`).catch(() => null);
      return { running: true, up: true, inRecovery: p.inRecovery, conninfo: (ci?.[0]?.v as string | undefined) ?? null, walReceiver: !!p.walReceiver, timeline: p.timeline, lsn: p.receiveLsn ?? p.replayLsn };
    },
    position: (last) => h.standbyPosition({ up: true, inRecovery: true, timeline: last.timeline, receiveLsn: last.lsn }),
  };
}

/** Whether `path` exists; an error other than ENOENT counts as existing (the safe answer here). */
function statSafe(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ENOENT";
  }
}
