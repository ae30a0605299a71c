import { expect, test } from "bun:test";
import { renderClusters, summarizeEtcd } from "../../src/consensus/clusters.ts";
import { clusterKeys, type RawKv } from "../../src/consensus/etcd/elect-core.ts";

const A = "aaaaaaaaaaaaaaaa";
const D = "dddddddddddddddd";
const kv = (key: string, value: unknown, createRevision = 5): RawKv => ({ key, value: typeof value === "string" ? value : JSON.stringify(value), createRevision, modRevision: createRevision, lease: "1" });
const rep = (name: string) => ({ name, role: "database", canLead: true, priority: 100, position: { timeline: 2, lsn: "0/3000" }, detachedFor: null });

test("every cluster under the prefix, each with its own leader and members; keys outside the prefix are ignored", () => {
  const k1 = clusterKeys("/pgherd", "alpha");
  const k2 = clusterKeys("/pgherd", "beta");
  const list = summarizeEtcd("/pgherd", [
    kv(k1.leader, A, 9), kv(k1.member(A), rep("a1")), kv(k1.membership, { term: 0, index: 1, voters: [A] }),
    kv(k2.member(D), rep("d1")),
    kv("/other/gamma/leader", A),
  ]);
  expect(list.map((c) => [c.cluster, c.leader, c.term, c.voters, c.members.map((m) => m.name)])).toEqual([
    ["alpha", "a1", 9, 1, ["a1"]],
    ["beta", null, 0, 0, ["d1"]],
  ]);
  const text = renderClusters(list);
  expect(text).toContain("alpha    etcd     a1");
  expect(text).toContain("a1* 2/0/3000");
  expect(text).toContain("beta     etcd     NONE");
});
