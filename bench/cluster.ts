// The benches' cluster: three namespace hosts with the default config plus [election] overrides
// (--election heartbeat_ms=150,lease_ms=1000,… measures a timer profile beside the defaults).
import { loadConfig } from "../src/config/load.ts";
import { PgCluster } from "../test/helpers/cluster.ts";
import { API_TOKEN, boundsOf, Writer } from "../test/helpers/writer.ts";

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
export async function startCluster(test: string, tag: string, election: Record<string, number> = {}) {
  const c = await PgCluster.create({ test, tag, nodes: 3, defaults: { extra: { api: { token: API_TOKEN }, ...(Object.keys(election).length ? { election } : {}) } } });
  try {
    await Promise.all(c.nodes.map((n) => n.start()));
    const healthy = await c.diagnose(() => c.waitHealthy(90_000));
    await new Writer([]).prepare(healthy.primary);
    const cfg = loadConfig(c.nodes[0]!.configPath);
    return { c, healthy, cfg, bounds: boundsOf(cfg) };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}
