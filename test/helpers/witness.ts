// Two database nodes plus a witness (role = "witness": an agent without PostgreSQL), and a way to
// keep a standby from streaming while its agent stays in the mesh (drop PostgreSQL traffic only).
import { PgCluster, type ClusterNode, type Healthy } from "./cluster.ts";
import type { Host } from "./lab.ts";
import { mustRun } from "./proc.ts";
import { API_TOKEN, boundsOf, Writer, type Bounds } from "./writer.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";

export interface WitnessCluster {
  c: PgCluster;
  /** `c` seen with only its database nodes (faultRound, waitHealthy, Writer need PostgreSQL on every node). */
  db: PgCluster;
  witness: ClusterNode;
  healthy: Healthy;
  cfg: Config;
  bounds: Bounds;
}

/** h1, h2 database nodes and h3 a witness, started, healthy, with the writer's table. */
export async function startWitnessCluster(test: string, tag: string, extra: Record<string, unknown> = {}): Promise<WitnessCluster> {
  const c = await PgCluster.create({ test, tag, defaults: { extra: { api: { token: API_TOKEN }, ...extra } } });
  try {
    await c.addNode();
    await c.addNode();
    const witness = await c.addNode({ dataDir: "missing", extra: { api: { token: API_TOKEN }, role: "witness", ...extra } });
    const db = databaseView(c, c.nodes.filter((n) => n !== witness));
    const t0 = performance.now();
    await Promise.all(c.nodes.map((n) => n.start()));
    const healthy = await c.diagnose(() => db.waitHealthy(90_000));
    console.log(`${test}: cluster ready in ${((performance.now() - t0) / 1000).toFixed(1)} s, primary ${healthy.primary.name}, witness ${witness.name}`);
    await new Writer([]).prepare(healthy.primary);
    const cfg = loadConfig(c.nodes[0]!.configPath);
    return { c, db, witness, healthy, cfg, bounds: boundsOf(cfg) };
  } catch (e) {
    await c.destroy().catch(() => {});
    throw e;
  }
}

/** The same cluster object, but `nodes` lists only `nodes` (methods run with this view as `this`). */
export function databaseView(c: PgCluster, nodes: ClusterNode[]): PgCluster {
  return new Proxy(c, {
    get(target, prop, receiver) {
      if (prop === "nodes") return nodes;
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(receiver) : v;
    },
  });
}

const TABLE = "pghdur";

/**
 * Drops PostgreSQL traffic (TCP port 5432, either direction) between `host` and `peer`, at `host`'s
 * input hook: a standby there can neither stream from nor be cloned by `peer`, while the agents'
 * mesh (other ports) is untouched.
 */
export async function blockPostgres(host: Host, peer: Host): Promise<void> {
  const rules = [
    `table inet ${TABLE} {`,
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    `    ip saddr ${peer.ip} tcp sport 5432 drop;`,
    `    ip saddr ${peer.ip} tcp dport 5432 drop;`,
    "  }",
    "}",
  ].join("\n");
  await mustRun(["ip", "netns", "exec", host.ns, "nft", "-f", "-"], { input: rules });
}

export async function unblockPostgres(host: Host): Promise<void> {
  await mustRun(["ip", "netns", "exec", host.ns, "nft", "delete", "table", "inet", TABLE]);
}
