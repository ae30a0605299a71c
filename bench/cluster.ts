// The benches' cluster: three namespace hosts with the default config plus [election] overrides
// (--election heartbeat_ms=150,lease_ms=1000,… measures a timer profile beside the defaults).
import { startFailoverCluster } from "../test/helpers/writer.ts";

const TIMERS = ["heartbeat_ms", "lease_ms", "timeout_ms", "jitter_ms", "fence_ms"];

/** "key=ms,key=ms" → overrides; throws on anything else. */
export function parseElection(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kv of text ? text.split(",") : []) {
    const m = /^(\w+)=(\d+)$/.exec(kv.trim());
    if (!m || !TIMERS.includes(m[1]!)) throw new Error(`--election: ${JSON.stringify(kv)} is not key=ms for ${TIMERS.join(", ")}`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Started, healthy, with the writer's table. */
export const startCluster = (test: string, tag: string, election: Record<string, number> = {}) => startFailoverCluster(test, tag, election);
