// "Ready" = the leader's view shows one running primary and two streaming standbys.
import { z } from "zod";
import { ClusterViewSchema, type ClusterView } from "../core/cluster-view.ts";

const ClusterAnswer = z.object({ source: z.enum(["leader", "local"]), view: ClusterViewSchema });
export type ClusterAnswer = z.infer<typeof ClusterAnswer>;

/** GET /cluster from one agent, validated; throws with the reason on any failure. */
export async function fetchCluster(apiUrl: string, timeoutMs = 2000): Promise<ClusterAnswer> {
  const res = await fetch(`${apiUrl}/cluster`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${apiUrl}/cluster answered ${res.status}`);
  const parsed = ClusterAnswer.safeParse(await res.json());
  if (!parsed.success) throw new Error(`${apiUrl}/cluster: unexpected answer: ${parsed.error.issues[0]?.message ?? "?"}`);
  return parsed.data;
}

export function isReady(a: ClusterAnswer, size: number): boolean {
  const v = a.view;
  if (a.source !== "leader" || !v.primary || v.members.length !== size) return false;
  const primaries = v.members.filter((m) => m.role === "primary" && m.state === "running");
  const streaming = v.members.filter((m) => m.role === "standby" && m.state === "streaming");
  return primaries.length === 1 && primaries[0]!.id === v.primary && streaming.length === size - 1;
}

export function primaryOf(v: ClusterView) {
  return v.members.find((m) => m.id === v.primary);
}
