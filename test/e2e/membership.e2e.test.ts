// Voters by approval (issue 10, finding 4), three namespace hosts with real PostgreSQL:
//  1. a fourth host that connects after bootstrap stays a non-voter: the voter set (and so the
//     majority) is unchanged until an operator approves it; `pgherd member ls` says so;
//  2. `pgherd member approve` makes it a voter, it clones and streams;
//  3. a standby's host dies; with 4 voters and 2 dead hosts no majority could be left for a
//     failover, so the operator removes the dead voter (`pgherd member remove`): the voters shrink
//     to 3, and when the primary's host dies next a new primary is elected.
// On 0e501cd the fourth host was made a voter the moment it connected and no removal existed.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { ClusterNode } from "../helpers/cluster.ts";
import { poll } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { blockingGuards, pgherd, startFailoverCluster } from "../helpers/writer.ts";

/** The voters a node's agent persisted (state_dir/election.json). */
function storedVoters(n: ClusterNode): string[] {
  const file = join(n.stateDir, "election.json");
  if (!existsSync(file)) return []; // a node that never was a voter and never voted in a bootstrap
  const s = z.object({ membership: z.object({ voters: z.array(z.string()) }).nullable() }).parse(JSON.parse(readFileSync(file, "utf8")));
  return s.membership?.voters ?? [];
}

const rowSchema = z.object({ id: z.string(), name: z.string(), voter: z.boolean(), membership: z.string().optional(), state: z.string(), note: z.string() });
const lsSchema = z.object({ source: z.string(), view: z.object({ members: z.array(rowSchema) }) });

/** `who` in the leader's cluster view, asked through `via`'s agent (raw JSON: every field of the row). */
async function rowOf(via: ClusterNode, who: ClusterNode) {
  const r = await pgherd(via, ["cluster", "ls", "--json"], 15_000);
  const v = lsSchema.parse(JSON.parse(r.stdout));
  if (v.source !== "leader") return undefined;
  return { view: v.view, row: v.view.members.find((m) => m.name === who.name) };
}

/**
 * The old code added a connected peer within one housekeeping round plus a guard round trip
 * (< 1 s); the watch starts once the leader hears the peer, and lasts three times that.
 */
const UNAPPROVED_WATCH_MS = 3_000;

describeCluster("voters by approval: join, approve, remove a dead voter", {
  start: () => startFailoverCluster("membership", "member"),
}, (fx) => {
  let n4: ClusterNode;
  const voters3 = () => fx.c.nodes.slice(0, 3);

  test("an unapproved fourth host joins as a non-voter: the voters stay 3, member ls shows it pending", () => fx.c.diagnose(async () => {
    const via = fx.healthy.primary;
    const before = storedVoters(via);
    expect(before).toHaveLength(3);
    n4 = await fx.c.addNode();
    await n4.start();
    const id4 = n4.nodeId();
    // The leader knows it, connected (it reports to the leader), and it waits to become a voter.
    await poll(async () => {
      const r = await rowOf(via, n4);
      return r?.row && r.row.state !== "unreachable" && n4.lines(/the cluster already exists: waiting for its leader to add this node/).length > 0 ? r : undefined;
    }, { timeoutMs: 30_000, what: `the leader to hear ${n4.name}'s reports and ${n4.name} to wait to be added` });
    const end = performance.now() + UNAPPROVED_WATCH_MS;
    while (performance.now() < end) {
      const r = await rowOf(via, n4);
      expect(r?.row?.voter).toBe(false);
      for (const n of voters3()) expect({ node: n.name, voters: storedVoters(n) }).toEqual({ node: n.name, voters: before });
      expect(storedVoters(n4)).toEqual([]);
      await Bun.sleep(250);
    }
    const r = await rowOf(via, n4);
    expect(r?.row?.membership).toBe("pending");
    expect(r?.row?.note).toContain(`pgherd member approve ${n4.name}`);
    expect(r?.view.members.filter((m) => m.voter).map((m) => m.name).sort()).toEqual(voters3().map((n) => n.name).sort());
    const ls = await pgherd(via, ["member", "ls"]);
    expect(ls.code).toBe(0);
    expect(ls.text).toContain("3 voters, majority 2");
    expect(ls.text).toMatch(new RegExp(`${n4.name}\\s+${id4}\\s+\\S+\\s+no \\(pending approval\\)`));
  }), 90_000);

  test("member approve makes it a voter; it clones and streams", () => fx.c.diagnose(async () => {
    const via = fx.healthy.primary;
    const r = await pgherd(via, ["member", "approve", n4.name]);
    expect({ code: r.code, text: r.text }).toMatchObject({ code: 0 });
    expect(r.text).toMatch(new RegExp(`${n4.name} (is a voter|approved)`));
    await poll(async () => fx.c.nodes.every((n) => storedVoters(n).length === 4), { timeoutMs: 30_000, what: "every node to store 4 voters" });
    expect(storedVoters(via)).toContain(n4.nodeId());
    const h = await fx.c.waitHealthy(120_000);
    expect(h.standbys).toContain(n4);
    const row = await poll(async () => (await rowOf(via, n4))?.row?.voter ? (await rowOf(via, n4))!.row : undefined, { timeoutMs: 10_000, what: `${n4.name} a voter in cluster ls` });
    expect(row.membership).toBe("voter");
    const hist = await pgherd(via, ["cluster", "history"]);
    expect(hist.text).toContain(`member ${n4.name} (${n4.nodeId()}) approved as a voter`);
  }), 180_000);

  test("member remove of a dead voter shrinks the majority; then the primary's host dies and a new primary is elected", () => fx.c.diagnose(async () => {
    const h = await fx.c.waitHealthy(60_000);
    const dead = h.standbys[0]!;
    const deadId = dead.nodeId();
    await dead.host.killAll("SIGKILL");
    const alive = fx.c.nodes.filter((n) => n !== dead);
    const r = await pgherd(h.primary, ["member", "remove", dead.name]);
    expect({ code: r.code, text: r.text }).toMatchObject({ code: 0 });
    expect(r.text).toContain(`${dead.name} removed`);
    expect(r.text).toContain("(majority 2 of 3)");
    await poll(async () => alive.every((n) => storedVoters(n).length === 3 && !storedVoters(n).includes(deadId)), { timeoutMs: 20_000, what: `every live node to store 3 voters without ${dead.name}` });
    // The removal suspended automatic failover until the primary is synchronous with the new set.
    await poll(async () => blockingGuards(alive).length === 0, { timeoutMs: 30_000, what: "the failover guard to be lifted on every live node" });
    const rest = alive.filter((n) => n !== h.primary);
    await h.primary.host.killAll("SIGKILL");
    const after = await fx.c.waitHealthy(60_000, { nodes: rest });
    expect(rest).toContain(after.primary);
    const ls = await after.primary.clusterLs();
    expect(ls.view.members.filter((m) => m.voter).length).toBe(3);
    expect(ls.view.members.find((m) => m.name === dead.name)?.voter ?? false).toBe(false);
  }), 180_000);
});
