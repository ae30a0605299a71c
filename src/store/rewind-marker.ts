// A pg_rewind under way, on disk. pg_rewind changes the data directory in place and updates
// pg_control last; stopped after it started writing (an error, a timeout, the agent killed), it
// leaves a directory that holds blocks of two histories yet looks like the server it was (the old
// pg_control, standby.signal where there was one). PostgreSQL's documentation: such a directory is
// "likely not in a state that can be recovered". The marker is written and fsync'd before pg_rewind
// runs and removed once it succeeded, found nothing to write, or the directory was replaced by a
// fresh clone; while it names this data directory, the server is rebuilt, never started or rewound
// again (core/ha.ts).
import { join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir } from "./dir.ts";
import { readJsonSync, removeFileDurableSync, StoreError, writeJsonDurableSync } from "./durable.ts";

export const REWIND_MARKER_FILE = "rewind-unfinished.json";

const Marker = z.object({ dataDir: z.string(), from: z.string(), at: z.string() });
export type RewindMarkerInfo = z.infer<typeof Marker>;

export class RewindMarker {
  private readonly path: string;

  constructor(private readonly stateDir: string, private readonly dataDir: string) {
    this.path = join(stateDir, REWIND_MARKER_FILE);
  }

  /** Before pg_rewind may write: durable when this returns. */
  set(from: string, now = new Date()): void {
    ensurePrivateDir(this.stateDir);
    writeJsonDurableSync(this.path, { dataDir: this.dataDir, from, at: now.toISOString() } satisfies RewindMarkerInfo);
  }

  /**
   * The unfinished rewind of this data directory, or null. A marker that cannot be read counts as
   * one (the safe side: a rebuild); one naming another directory (data_dir changed since) does not.
   */
  get(): RewindMarkerInfo | null {
    try {
      const m = readJsonSync(this.path, Marker);
      return m && m.dataDir === this.dataDir ? m : null;
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      return { dataDir: this.dataDir, from: "unknown", at: `unknown (${e.message})` };
    }
  }

  clear(): void {
    removeFileDurableSync(this.path);
  }
}
