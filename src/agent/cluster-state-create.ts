// The cluster-state store of the configured backend (src/agent/cluster-state.ts): the built-in
// backend keeps today's mesh copies; etcd keeps each item in a key under the cluster's prefix,
// with its own client (its own connection and token beside the election's).
import type { Config } from "../config/schema.ts";
import { dynamicDoc } from "../config/schema-dynamic.ts";
import { etcdClientOptions } from "../consensus/create.ts";
import type { Logger } from "../log.ts";
import { type ClusterStateStore, LOCAL_STATE } from "./cluster-state.ts";
import { SharedFlagsSchema } from "./flags.ts";
import { StoredHistorySchema } from "./history.ts";

export function createClusterState(cfg: Config, log: Logger): ClusterStateStore {
  if (cfg.consensus.backend !== "etcd") return LOCAL_STATE;
  const c = cfg.consensus;
  // Loaded only with etcd: a built-in node never evaluates src/consensus/etcd/*.
  const { EtcdClient } = require("../consensus/etcd/client.ts") as typeof import("../consensus/etcd/client.ts");
  const { clusterKeys } = require("../consensus/etcd/elect-core.ts") as typeof import("../consensus/etcd/elect-core.ts");
  const { EtcdClusterState } = require("../consensus/etcd/state.ts") as typeof import("../consensus/etcd/state.ts");
  return new EtcdClusterState(
    { client: new EtcdClient(etcdClientOptions(cfg)), keys: clusterKeys(c.prefix, cfg.cluster), pollMs: c.poll_ms, log: log.withTag("etcd") },
    { flags: SharedFlagsSchema, config: dynamicDoc, history: StoredHistorySchema },
  );
}
