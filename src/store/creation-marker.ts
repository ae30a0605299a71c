// The cluster being created in this data directory by this node (an initdb, or a restore from a
// backup with [bootstrap] from_backup) and its identity not recorded yet. A leader whose data
// directory holds files while the cluster has no identity may make that data the cluster's only
// when it created it itself (an initdb whose start or role creation failed, an agent killed in
// between) or when told to adopt it (bootstrap.from_existing): any other directory is a cluster
// pgherd did not create, refused and never touched (core/ha.ts). Written and fsync'd before the
// directory is created; removed once the cluster's identity is recorded, or when a clone replaces
// the directory.
import { z } from "zod";
import { DataMarker } from "./data-marker.ts";

export const CREATION_MARKER_FILE = "cluster-creation.json";

const Marker = z.object({ dataDir: z.string(), how: z.string(), at: z.string() });

export class CreationMarker extends DataMarker<typeof Marker> {
  constructor(stateDir: string, dataDir: string) {
    // Unreadable: written by this node all the same (only this node writes it, before a creation).
    super(stateDir, dataDir, CREATION_MARKER_FILE, Marker, () => ({ how: "unknown" }));
  }

  /** Before the data directory is created: durable when this returns. `how`: "initdb", "restore from the backup". */
  set(how: string, now = new Date()): void {
    this.write({ how }, now);
  }
}
