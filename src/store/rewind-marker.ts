// A pg_rewind under way, on disk. pg_rewind changes the data directory in place and updates
// pg_control last; stopped after it started writing (an error, a timeout, the agent killed), it
// leaves a directory that holds blocks of two histories yet looks like the server it was (the old
// pg_control, standby.signal where there was one). PostgreSQL's documentation: such a directory is
// "likely not in a state that can be recovered". The marker is written and fsync'd before pg_rewind
// runs and removed once it succeeded, found nothing to write, or the directory was replaced by a
// fresh clone; while it names this data directory, the server is rebuilt, never started or rewound
// again (core/ha.ts).
import { z } from "zod";
import { DataMarker } from "./data-marker.ts";

export const REWIND_MARKER_FILE = "rewind-unfinished.json";

const Marker = z.object({ dataDir: z.string(), from: z.string(), at: z.string() });
export type RewindMarkerInfo = z.infer<typeof Marker>;

export class RewindMarker extends DataMarker<typeof Marker> {
  constructor(stateDir: string, dataDir: string) {
    super(stateDir, dataDir, REWIND_MARKER_FILE, Marker, () => ({ from: "unknown" }));
  }

  /** Before pg_rewind may write: durable when this returns. */
  set(from: string, now = new Date()): void {
    this.write({ from }, now);
  }
}
