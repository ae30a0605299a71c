// One consensus backend: the built-in election (the default) or etcd; the agent sees only the
// Consensus interface. At start the one in force: [consensus] backend from the config file, unless
// a migration recorded another in <state_dir>/consensus.json (src/consensus/migrate-state.ts);
// a migration (src/agent/migrate-driver.ts) builds the other one while the agent runs.
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import { readPrivateFile } from "../config/load.ts";
import { Election } from "../core/election.ts";
import { canLead as nodeCanLead } from "../core/sync-exclusion.ts";
import type { Logger } from "../log.ts";
import type { ElectionStore } from "../store/election-state.ts";
import { type Consensus, type DriverHooks, ElectionDriver } from "../agent/election-driver.ts";
import type { EtcdClientOptions } from "./etcd/client.ts";
import { startingBackend } from "./migrate-state.ts";
import type { Backend } from "../core/consensus-migrate.ts";

export interface ConsensusDeps {
  cfg: Config;
  nodeId: string;
  store: ElectionStore;
  hooks: DriverHooks;
  log: Logger;
  nameOf: (id: string) => string;
}

/** The backend `backend` (default: the one in force at start); a migration builds the other one at runtime. */
export function createConsensus(d: ConsensusDeps, backend: Backend = startingBackend(d.cfg).backend): Consensus {
  const { cfg, nodeId } = d;
  const canLead = nodeCanLead({ role: cfg.role, nofailover: cfg.tags.nofailover, priority: cfg.priority });
  if (backend === "etcd") {
    const c = cfg.consensus;
    // Loaded only when etcd is in force: a built-in node never evaluates src/consensus/etcd/*.
    const { EtcdClient } = require("./etcd/client.ts") as typeof import("./etcd/client.ts");
    const { EtcdConsensus } = require("./etcd/backend.ts") as typeof import("./etcd/backend.ts");
    const { clusterKeys } = require("./etcd/elect-core.ts") as typeof import("./etcd/elect-core.ts");
    return new EtcdConsensus({
      client: new EtcdClient(etcdClientOptions(cfg)),
      keys: clusterKeys(c.prefix, cfg.cluster),
      self: { id: nodeId, name: cfg.node_name, role: cfg.role, canLead, priority: cfg.priority },
      ttlS: c.ttl_s, pollMs: c.poll_ms, maxDrift: cfg.election.max_drift, fenceMs: cfg.election.fence_ms,
      deferMs: cfg.election.timeout_ms, store: d.store, hooks: d.hooks, log: d.log.withTag("etcd"),
    });
  }
  const e = cfg.election;
  const election = new Election(
    {
      id: nodeId, canLead, jitterShare: 0.25 + 0.75 * (1 - cfg.priority / 1000), heartbeatMs: e.heartbeat_ms, leaseMs: e.lease_ms,
      timeoutMs: e.timeout_ms, jitterMs: e.jitter_ms, fenceMs: e.fence_ms, maxDrift: e.max_drift, random: Math.random,
      // A database node stops streaming from the old primary before it votes (docs/design.md §6).
      detachBeforeVote: cfg.role === "database",
    },
    d.store.get(),
    performance.now(),
  );
  return new ElectionDriver(election, d.store, d.hooks, d.log, d.nameOf);
}

/** The etcd client's options from [consensus]: PEM files and the password file read now. */
export function etcdClientOptions(cfg: Pick<Config, "consensus">): EtcdClientOptions {
  const c = cfg.consensus;
  const pem = (p: string) => (p ? readFileSync(p, "utf8") : undefined);
  const tls = c.tls_ca || c.tls_cert ? { ca: pem(c.tls_ca), cert: pem(c.tls_cert), key: c.tls_key ? readPrivateFile(c.tls_key, "consensus.tls_key") : undefined } : undefined;
  const auth = c.username ? { username: c.username, password: readPrivateFile(c.password_file, "consensus.password_file").replace(/\r?\n$/, "") } : undefined;
  return { endpoints: c.endpoints, requestTimeoutMs: c.request_timeout_ms, ...(tls ? { tls } : {}), ...(auth ? { auth } : {}) };
}
