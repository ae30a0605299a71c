// `/clusters` and `pgherd cluster ls --all`: every cluster this agent's consensus store can show.
// With etcd: every cluster under the configured prefix (what the etcd user may read); with the
// built-in election: this cluster alone. Pure: built from one range read or from this agent's view.
import { z } from "zod";
import type { ClusterView } from "../core/cluster-view.ts";
import { clusterKeys, clusterOfKey, decodeSnapshot, type RawKv } from "./etcd/elect-core.ts";

export const ClusterSummarySchema = z.strictObject({
  cluster: z.string().max(64),
  backend: z.enum(["builtin", "etcd"]),
  leader: z.string().max(253).nullable(),
  term: z.number().int().min(0),
  voters: z.number().int().min(0),
  members: z.array(z.strictObject({
    name: z.string().max(253),
    role: z.string().max(16),
    leader: z.boolean(),
    timeline: z.number().int().nullable(),
    lsn: z.string().max(17).nullable(),
  })).max(1000),
});
export type ClusterSummary = z.infer<typeof ClusterSummarySchema>;

/** One summary per cluster found under `prefix` in one range read, sorted by name. */
export function summarizeEtcd(prefix: string, kvs: readonly RawKv[]): ClusterSummary[] {
  const by = new Map<string, RawKv[]>();
  for (const kv of kvs) {
    const c = clusterOfKey(prefix, kv.key);
    if (c) by.set(c, [...(by.get(c) ?? []), kv]);
  }
  return [...by.keys()].sort().map((cluster) => {
    const s = decodeSnapshot(clusterKeys(prefix, cluster), 0, by.get(cluster)!);
    const members = [...s.members.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, m]) => ({
      name: m.report.name, role: m.report.role, leader: s.leader?.id === id, timeline: m.report.position.timeline, lsn: m.report.position.lsn,
    }));
    const leader = s.leader ? (s.members.get(s.leader.id)?.report.name ?? s.leader.id) : null;
    return { cluster, backend: "etcd" as const, leader, term: s.leader?.term ?? s.lastTerm, voters: s.membership?.value.voters.length ?? 0, members };
  });
}

/** The built-in backend knows only its own cluster. */
export function summarizeView(v: ClusterView): ClusterSummary[] {
  return [{
    cluster: v.cluster, backend: "builtin", leader: v.leaderName, term: v.term, voters: v.members.filter((m) => m.voter).length,
    members: v.members.map((m) => ({ name: m.name, role: m.role, leader: m.leader, timeline: m.timeline, lsn: m.lsn })),
  }];
}

export function renderClusters(list: readonly ClusterSummary[]): string {
  const head = ["CLUSTER", "BACKEND", "LEADER", "TERM", "VOTERS", "MEMBERS"];
  const rows = list.map((c) => [c.cluster, c.backend, c.leader ?? "NONE", String(c.term), String(c.voters),
    c.members.map((m) => `${m.name}${m.leader ? "*" : ""}${m.lsn ? ` ${m.timeline}/${m.lsn}` : ""}`).join(", ") || "-"]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n") + "\n";
}
