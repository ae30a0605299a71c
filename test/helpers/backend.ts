// The consensus backend the cluster tests run on: PGHERD_E2E_BACKEND=builtin (default), etcd, or
// builtin,etcd. The same suites run on each (describeCluster registers a suite per backend): with etcd,
// the lab gets three more hosts, one etcd member on each, and every node's config a [consensus]
// block pointing at them. The bounds the suites assert follow the backend's timers.
import type { Config } from "../../src/config/schema.ts";
import { usableLeaseMs } from "../../src/consensus/etcd/lease-core.ts";
import { EtcdCluster, etcdSkipReason } from "./etcd.ts";
import type { Lab } from "./lab.ts";

export type Backend = "builtin" | "etcd";

/** PGHERD_E2E_BACKEND: "builtin" (default), "etcd", or "builtin,etcd" (each cluster suite runs once per backend). */
export function e2eBackends(): Backend[] {
  const list = (process.env.PGHERD_E2E_BACKEND ?? "builtin").split(",").map((x) => x.trim()).filter(Boolean);
  for (const b of list) if (b !== "builtin" && b !== "etcd") throw new Error(`PGHERD_E2E_BACKEND: "builtin" and/or "etcd", not ${JSON.stringify(b)}`);
  return list.length > 0 ? [...new Set(list)] as Backend[] : ["builtin"];
}

let current: Backend | null = null;

/** The backend of the suite running now (describeCluster sets it before the suite starts its cluster). */
export function e2eBackend(): Backend {
  return current ?? e2eBackends()[0]!;
}

/** null: back to PGHERD_E2E_BACKEND's first. */
export function useBackend(b: Backend | null): void {
  current = b;
}

/** Why the chosen backend cannot run here, or null. */
export function backendSkipReason(b: Backend = e2eBackend()): string | null {
  return b === "etcd" ? etcdSkipReason() : null;
}

/** "" or " [etcd]": suites name the backend they ran on. */
export function backendLabel(b: Backend = e2eBackend()): string {
  return b === "builtin" ? "" : ` [${b}]`;
}

/**
 * Starts what the backend needs in `lab` (etcd: three member hosts) and returns the config keys
 * every node gets (none for builtin). The lab's destroy() stops the members; their data is under `dir`.
 */
export async function startBackend(lab: Lab, dir: string, logDir: string): Promise<Record<string, unknown>> {
  if (e2eBackend() === "builtin") return {};
  const hosts = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
  const etcd = await EtcdCluster.start({ hosts, dir, logDir });
  return { consensus: { backend: "etcd", endpoints: etcd.endpoints() } };
}

export interface BackendTimes {
  /** A dead or cut-off leader → another node may take the leadership. */
  leaderGoneMs: number;
  /** The old leader's lease runs out (it fences then) after the fault, at the latest. */
  leaseMs: number;
  /** A resigned leadership is taken by the named node. */
  handoverMs: number;
}

/** The backend's part of the failover bounds, from the configuration. */
export function backendTimes(cfg: Config): BackendTimes {
  const e = cfg.election;
  if (cfg.consensus.backend === "etcd") {
    const c = cfg.consensus;
    // The key expires ttl_s after the last renewal; the others see it within a poll, detach
    // (~100 ms; DETACH_BOUND_MS at worst), publish, read again and take it in the next poll.
    return {
      leaderGoneMs: c.ttl_s * 1000 + 3 * c.poll_ms + c.request_timeout_ms,
      leaseMs: usableLeaseMs(c.ttl_s, e.max_drift, e.fence_ms) + e.fence_ms,
      handoverMs: 3 * c.poll_ms + c.request_timeout_ms,
    };
  }
  return { leaderGoneMs: e.timeout_ms + e.jitter_ms, leaseMs: e.lease_ms + e.fence_ms, handoverMs: e.heartbeat_ms };
}
