// A restore from a backup whose recovery has not ended at its target ([bootstrap] from_backup,
// backup/bootstrap.ts). The restored directory holds its recovery target (recovery_target_time or
// _lsn, recovery_target_action = 'promote') in postgresql.auto.conf and recovery.signal; nothing
// else in PostgreSQL's files says that its recovery must end there and nowhere else. Without the
// marker a bootstrap cut short (the agent killed, a replay longer than the wait, a reboot) left a
// server in recovery that the leader promoted as if it were its standby: that promotion's files
// dropped the target, and the next start replayed the whole archive, past the target (review).
// While the marker names this data directory the leader only lets the restore's own recovery go on
// (core/ha.ts), and the managed files keep its target (postgres/managed-config.ts). Written and
// fsync'd before the restored directory is put in place; removed once PostgreSQL promoted itself
// at the target and the cluster's identity is recorded, or when the directory is replaced by a
// clone or rewound onto another primary. `failed`: PostgreSQL ended the recovery without reaching
// the target (the archive ends before it): the directory is never started again.
import { z } from "zod";
import { DataMarker } from "./data-marker.ts";

export const RESTORE_MARKER_FILE = "restore-under-way.json";

const Marker = z.object({ dataDir: z.string(), target: z.string(), failed: z.string().optional(), at: z.string() });
export type RestoreInfo = z.infer<typeof Marker>;

export class RestoreMarker extends DataMarker<typeof Marker> {
  constructor(stateDir: string, dataDir: string) {
    // Unreadable: a restore under way all the same (the safe side: its own recovery goes on, with
    // whatever target its files hold; nothing promotes it).
    super(stateDir, dataDir, RESTORE_MARKER_FILE, Marker, (why) => ({ target: `unknown (marker unreadable: ${why})` }));
  }

  /** Before the restored directory is put in place: durable when this returns. `target`: "to <time>", "to LSN <lsn>", "to the end of the archive". */
  set(target: string, now = new Date()): void {
    this.write({ target }, now);
  }

  /** PostgreSQL ended the recovery without reaching the target: durable when this returns. */
  fail(target: string, why: string, now = new Date()): void {
    this.write({ target, failed: why }, now);
  }
}
