// A former primary started as a standby on its own timeline, to be promoted (core/ha.ts
// `ownTimeline`: a later leader reserved a timeline past its own). Once started that way its
// pg_control says "in archive recovery" and standby.signal is there: by PostgreSQL's files alone it
// looks like a standby's data (core/ha.ts dataWasPrimary), and a start after an agent restart or a
// reboot before the promotion would recover along the newest timeline (recovery_target_timeline
// 'latest': the other leader's history from the archive) over pages this primary flushed past the
// fork, silently mixing two histories (review). While the marker names this data directory the
// stopped server counts as a former primary's data: a follower rewinds it, a leader starts it on its
// own timeline again. Written and fsync'd before that start; removed once it runs as a primary,
// and when the directory was rewound or replaced by a clone.
import { z } from "zod";
import { DataMarker } from "./data-marker.ts";

export const OWN_TIMELINE_MARKER_FILE = "own-timeline-start.json";

const Marker = z.object({ dataDir: z.string(), timeline: z.number().int().positive(), at: z.string() });
export type OwnTimelineInfo = z.infer<typeof Marker>;

export class OwnTimelineMarker extends DataMarker<typeof Marker> {
  constructor(stateDir: string, dataDir: string) {
    // Unreadable: a former primary's data all the same (the safe side: a rewind); a standby start
    // that does not go through the decision is pinned to timeline 1, which fails loudly where it is
    // not its own, rather than to none, which would follow the newest timeline (re-reviews).
    super(stateDir, dataDir, OWN_TIMELINE_MARKER_FILE, Marker, () => ({ timeline: 1 }));
  }

  /** Before the start on timeline `timeline`: durable when this returns. */
  set(timeline: number, now = new Date()): void {
    this.write({ timeline }, now);
  }
}
