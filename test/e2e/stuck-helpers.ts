// Shared by test/e2e/stuck-*.e2e.test.ts (issue 11: a primary alive but unable to work).
import type { ClusterNode } from "../helpers/cluster.ts";

/** New primary writable within this long after the fault (issue 11's target with default timers). */
export const TARGET_MS = 5000;

/** HTTP status of a health check on the node's own agent API (inside its namespace; 0: no answer). */
export async function healthCode(n: ClusterNode, path: string): Promise<number> {
  const r = await n.host.exec(["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:7402${path}`], { timeoutMs: 5000 });
  return Number(r.stdout.trim()) || 0;
}
