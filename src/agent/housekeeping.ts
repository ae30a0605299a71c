// The agent's housekeeping tick: expire silent peers, step membership and the cluster-wide
// configuration, sync the flags and the history, run due scheduled actions; and say when the
// event loop stalled (it delays heartbeats and lease renewals, and explains step-downs). It owns its timer.
import type { Logger } from "../log.ts";
import type { Mesh } from "../net/mesh.ts";
import type { PeerTable } from "./peers.ts";

/**
 * Nothing here needs a finer step: peers expire after discovery.max_age_ms, voter changes and the
 * configuration's spread are not latency-bound, a scheduled switchover starts within one step of
 * its time. Every tick wakes the process (an idle agent's CPU is mostly its wakeups).
 */
const HOUSEKEEPING_MS = 500;

export interface HousekeepingDeps {
  log: Logger;
  maxAgeMs: number;
  peers: PeerTable;
  mesh: Mesh;
  /** Each module's own periodic step, in order. */
  steps: (() => void)[];
  runDue: () => Promise<unknown>;
  safe: (f: () => void) => void;
  now: () => number;
}

export class Housekeeping {
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly d: HousekeepingDeps) {}

  start(): void {
    const { d } = this;
    let expected = d.now() + HOUSEKEEPING_MS;
    this.timer = setInterval(() => d.safe(() => {
      const late = d.now() - expected;
      if (late > 250) d.log.warn(`event loop stalled for ${Math.round(late)} ms`);
      expected = d.now() + HOUSEKEEPING_MS;
      for (const gone of d.peers.expire()) {
        d.log.info(`peer ${gone.name} (${gone.id}) not heard for ${d.maxAgeMs} ms`);
        if (!d.peers.list().some((p) => p.mesh === gone.mesh)) d.mesh.forget(gone.mesh); // another peer may be there now
      }
      for (const step of d.steps) step();
      void d.runDue().catch((err: Error) => d.log.error(`scheduled switchover: ${err.message}`));
    }), HOUSEKEEPING_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
