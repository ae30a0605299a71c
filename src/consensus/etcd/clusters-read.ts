// `GET /clusters` (cluster ls --all) with etcd: every cluster under the prefix, as far as this etcd
// user may read (a user granted only this cluster's prefix sees this cluster only). The request needs
// no token: one read at a time, its answer reused for CLUSTERS_REUSE_MS after it came (reused-read.ts).
import { type ClusterSummary, summarizeEtcd } from "../clusters.ts";
import type { EtcdClient } from "./client.ts";
import { ReusedRead } from "./reused-read.ts";

/** How long one read of every cluster under the prefix answers `GET /clusters`. */
export const CLUSTERS_REUSE_MS = 1000;

/** The clusters under the prefix above `root` (this cluster's root key, ending in "/"). */
export function clustersRead(client: EtcdClient, root: string, clock: () => number): ReusedRead<ClusterSummary[]> {
  const prefix = root.slice(0, root.slice(0, -1).lastIndexOf("/"));
  return new ReusedRead(async () => {
    const r = await client.range(`${prefix}/`, { prefix: true }).catch((e: Error) => {
      if (/permission denied/.test(e.message)) return client.range(root, { prefix: true });
      throw e;
    });
    return summarizeEtcd(prefix, r.kvs);
  }, CLUSTERS_REUSE_MS, clock);
}
