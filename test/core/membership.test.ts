// Voters by approval and the one node id schema (issue 10, finding 4): the pure rules of a
// membership change, which voter change the leader makes next, and ids refused at every schema.
import { describe, expect, test } from "bun:test";
import { nextVoterChange } from "../../src/core/bootstrap.ts";
import { Election, planMembershipChange, proposed, type Persistent, type Ready } from "../../src/core/election.ts";
import { ElectionMsgSchema, isNodeId, MembershipSchema, NodeIdSchema } from "../../src/core/messages.ts";
import { composeView } from "../../src/core/cluster-view.ts";
import { rng } from "./sim.ts";

const [A, B, C, D, E] = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc", "dddddddddddddddd", "eeeeeeeeeeeeeeee"];
const T = { heartbeatMs: 200, leaseMs: 1500, timeoutMs: 2500, jitterMs: 500, fenceMs: 500, detachBeforeVote: false };

describe("one node id schema", () => {
  test("the format node-id.ts creates (16 lowercase hex) and nothing else", () => {
    expect(isNodeId("0123456789abcdef")).toBe(true);
    for (const bad of ["evil node", "fuzz1", "", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "0123456789abcdef\n"]) {
      expect({ bad, ok: isNodeId(bad) }).toEqual({ bad, ok: false });
      expect(NodeIdSchema.safeParse(bad).success).toBe(false);
    }
  });

  test("election messages and memberships refuse a bad id wherever one appears", () => {
    const pos = { timeline: 1, lsn: "0/0" };
    const m = (voters: string[], approved?: string[]) => ({ term: 1, index: 2, voters, ...(approved ? { approved } : {}) });
    expect(MembershipSchema.safeParse(m([A, B, C])).success).toBe(true);
    expect(MembershipSchema.safeParse(m([A, "evil node"])).success).toBe(false);
    expect(MembershipSchema.safeParse(m([A], ["evil node"])).success).toBe(false);
    expect(ElectionMsgSchema.safeParse({ t: "hb", term: 1, seq: 1, membership: m([A, "fuzz1"]), pos }).success).toBe(false);
    expect(ElectionMsgSchema.safeParse({ t: "resign", term: 1, transferTo: "evil node" }).success).toBe(false);
    expect(ElectionMsgSchema.safeParse({ t: "hb", term: 1, seq: 1, membership: m([A]), pos, guard: { seq: 1, block: true, holder: "evil node", floor: null } }).success).toBe(false);
    expect(ElectionMsgSchema.safeParse({ t: "hb", term: 1, seq: 1, membership: m([A], [B]), pos }).success).toBe(true);
  });
});

describe("planMembershipChange", () => {
  const m = { voters: [A, B, C], approved: [D] };

  test("approve: a non-voter joins the approved list; voters unchanged (the majority too)", () => {
    expect(planMembershipChange(m, "approve", E, A)).toEqual({ voters: [A, B, C], approved: [D, E], removed: [] });
    expect(planMembershipChange(m, "approve", D, A)).toEqual({ reject: "already approved" });
    expect(planMembershipChange(m, "approve", B, A)).toEqual({ reject: "already a voter" });
    expect(planMembershipChange(m, "approve", "evil node", A)).toEqual({ reject: "not a node id (16 lowercase hex characters)" });
  });

  test("add consumes the approval; a bad id is never added", () => {
    expect(planMembershipChange(m, "add", D, A)).toEqual({ voters: [A, B, C, D], approved: [], removed: [] });
    expect(planMembershipChange(m, "add", "fuzz1", A)).toEqual({ reject: "not a node id (16 lowercase hex characters)" });
    expect(planMembershipChange(m, "add", C, A)).toEqual({ reject: "already a voter" });
  });

  test("remove: a voter leaves (and any approval with it), an approval is withdrawn, the leader cannot remove itself", () => {
    expect(planMembershipChange(m, "remove", C, A)).toEqual({ voters: [A, B], approved: [D], removed: [C] });
    expect(planMembershipChange(m, "remove", D, A)).toEqual({ voters: [A, B, C], approved: [], removed: [D] });
    expect(planMembershipChange(m, "remove", A, A)).toEqual({ reject: "the leader cannot remove itself; transfer leadership first" });
    expect(planMembershipChange(m, "remove", E, A)).toEqual({ reject: "not a voter" });
  });

  test("a removal is stored in the membership (review: it lived in one leader's memory, and the next leader's auto_join added a removed node that still ran straight back); an approval or add clears it; 64 kept, newest", () => {
    const gone = planMembershipChange(m, "remove", C, A);
    expect(gone).toMatchObject({ removed: [C] });
    const after = proposed({ term: 3, index: 7, ...m }, 3, gone as Exclude<typeof gone, { reject: string }>);
    expect(after).toEqual({ term: 3, index: 8, voters: [A, B], approved: [D], removed: [C] });
    expect(MembershipSchema.parse(after)).toEqual(after);
    // A later leader (a new term, the re-stamped membership) still keeps it out of auto_join.
    expect(nextVoterChange({ voters: after.voters, approved: after.approved ?? [], removed: after.removed, autoJoin: true, removals: [], peers: [{ id: C, connected: true }] })).toBeNull();
    expect(nextVoterChange({ voters: after.voters, approved: after.approved ?? [], autoJoin: true, removals: [], peers: [{ id: C, connected: true }] })).toEqual({ op: "add", node: C });
    expect(planMembershipChange(after, "approve", C, A)).toEqual({ voters: [A, B], approved: [C, D], removed: [] });
    expect(planMembershipChange(after, "add", C, A)).toMatchObject({ removed: [] });
    const many = Array.from({ length: 64 }, (_, i) => (i + 0x100).toString(16).padStart(16, "0"));
    expect(planMembershipChange({ voters: [A, B, C], removed: many }, "remove", C, A)).toMatchObject({ removed: [...many.slice(1), C] });
  });
});

describe("nextVoterChange", () => {
  const base = { voters: [A, B, C], approved: [] as string[], autoJoin: false, removals: [] as string[] };
  const peers = [{ id: D, connected: true }, { id: "evil node", connected: true }, { id: E, connected: false }];

  test("without approval or auto_join a connected node never joins", () => {
    expect(nextVoterChange({ ...base, peers })).toBeNull();
  });

  test("an approved node joins once connected; auto_join admits any connected node id, never a bad id", () => {
    expect(nextVoterChange({ ...base, approved: [E], peers })).toBeNull(); // approved but not connected
    expect(nextVoterChange({ ...base, approved: [D], peers })).toEqual({ op: "add", node: D });
    expect(nextVoterChange({ ...base, autoJoin: true, peers })).toEqual({ op: "add", node: D });
    expect(nextVoterChange({ ...base, autoJoin: true, peers: [{ id: "evil node", connected: true }] })).toBeNull();
  });

  test("a requested removal comes first; a removed node is not re-added by auto_join", () => {
    expect(nextVoterChange({ ...base, approved: [D], removals: [C], peers })).toEqual({ op: "remove", node: C });
    expect(nextVoterChange({ ...base, voters: [A, B], autoJoin: true, removals: [C], peers: [{ id: C, connected: true }] })).toBeNull();
    expect(nextVoterChange({ ...base, removals: [E], peers: [] })).toBeNull(); // not a voter: nothing to do
  });
});

/** A tiny in-memory cluster of election cores (messages delivered at once, nothing lost). */
function cluster(ids: string[], joiners: string[]) {
  let now = 0;
  const disks = new Map<string, Persistent>();
  const nodes = new Map<string, Election>();
  const notices: string[] = [];
  const membership = { term: 0, index: 1, voters: ids };
  for (const [i, id] of [...ids, ...joiners].entries()) {
    const saved: Persistent = { term: 0, votedFor: null, membership: ids.includes(id) ? membership : null };
    disks.set(id, saved);
    nodes.set(id, new Election({ id, canLead: true, ...T, random: rng(i + 1) }, saved, 0));
  }
  const apply = (id: string, r: Ready): void => {
    if (r.persist) disks.set(id, structuredClone(r.persist));
    for (const n of r.notices) notices.push(`${id}: ${n.kind}: ${n.detail}`);
    for (const s of r.send) {
      const to = nodes.get(s.to);
      if (to) apply(s.to, to.step({ type: "recv", now, from: id, msg: s.msg })); // a dead node hears nothing
    }
  };
  const run = (ms: number) => {
    for (const end = now + ms; now < end; now += 10) for (const [id, e] of nodes) apply(id, e.step({ type: "tick", now }));
  };
  const leaders = () => [...nodes].filter(([, e]) => e.status(now).role === "leader").map(([id]) => id);
  const leader = () => leaders()[0]!;
  const propose = (op: "add" | "remove" | "approve", node: string) => {
    const l = leader();
    const from = notices.length;
    apply(l, nodes.get(l)!.step({ type: "propose", now, op, node }));
    return notices.slice(from).find((n) => n.startsWith(`${l}: `))!;
  };
  return { nodes, disks, notices, run, leader, leaders, propose, now: () => now };
}

describe("the election core keeps approvals in the membership", () => {
  test("approve then add: the approval reaches every voter's disk, the quorum grows only with the add", () => {
    const c = cluster([A, B, C], [D]);
    c.run(5000);
    expect(c.propose("approve", D)).toContain(`approve ${D}: voters ${A},${B},${C}; approved, not yet voters: ${D}`);
    c.run(1000);
    for (const id of [A, B, C]) {
      expect(c.disks.get(id)!.membership).toMatchObject({ voters: [A, B, C], approved: [D] });
      expect(MembershipSchema.safeParse(c.disks.get(id)!.membership).success).toBe(true);
    }
    expect(c.disks.get(D)!.membership).toBeNull(); // a non-voter hears nothing from the leader
    c.propose("add", D);
    c.run(1000);
    for (const id of [A, B, C, D]) expect(c.disks.get(id)!.membership!.voters).toEqual([A, B, C, D]);
    expect(c.disks.get(A)!.membership!.approved).toBeUndefined();
  });

  test("a new leader keeps the approvals (the re-stamped membership carries them)", () => {
    const c = cluster([A, B, C], []);
    c.run(5000);
    c.propose("approve", E);
    c.run(1000);
    const old = c.leader();
    c.nodes.get(old)!.step({ type: "resign", now: c.now(), reason: "test" });
    c.nodes.delete(old);
    c.run(8000);
    const l = c.leader();
    expect(l).not.toBe(old);
    expect(c.nodes.get(l)!.status(c.now()).membership).toMatchObject({ approved: [E] });
  });

  test("a bad id is refused by the leader and never persisted", () => {
    const c = cluster([A, B, C], []);
    c.run(5000);
    expect(c.propose("add", "evil node")).toContain("proposal-rejected: add evil node: not a node id");
    expect(c.propose("approve", "fuzz1")).toContain("proposal-rejected: approve fuzz1: not a node id");
    for (const id of [A, B, C]) expect(c.disks.get(id)!.membership!.voters).toEqual([A, B, C]);
  });

  test("removing a dead voter shrinks the majority: with the leader gone too, the two voters left elect one", () => {
    const scenario = (remove: boolean) => {
      const c = cluster([A, B, C, D], []);
      c.run(5000);
      const l = c.leader();
      const gone = [A, B, C, D].find((x) => x !== l)!;
      c.nodes.delete(gone);
      c.run(3000);
      if (remove) expect(c.propose("remove", gone)).toContain(`remove ${gone}: voters`);
      c.run(1000);
      const live = [A, B, C, D].filter((x) => x !== gone);
      if (remove) for (const id of live) expect(c.disks.get(id)!.membership!.voters).toEqual(live);
      c.nodes.delete(l); // now the leader dies too
      c.run(10_000);
      return { leaders: c.leaders(), survivors: live.filter((x) => x !== l) };
    };
    const without = scenario(false);
    expect(without.leaders).toEqual([]); // 2 of 4 voters: no majority
    const withRemoval = scenario(true);
    expect(withRemoval.leaders).toHaveLength(1); // 2 of 3 voters
    expect(withRemoval.survivors).toContain(withRemoval.leaders[0]!);
  });
});

describe("cluster view: a member's place in the voter set", () => {
  const member = (id: string, name: string, voter: boolean) => ({ id, name, role: "database" as const, host: "", voter, reachable: true, report: null });

  test("voter, approved (joining) or pending approval with the command that ends the wait", () => {
    const v = composeView({
      cluster: "c", term: 2, leader: A, slotOf: (id) => id, approved: [E],
      members: [member(A, "n1", true), member(D, "n4", false), member(E, "n5", false)],
    });
    expect(v.members.map((m) => [m.name, m.voter, m.membership])).toEqual([["n1", true, "voter"], ["n4", false, "pending"], ["n5", false, "approved"]]);
    expect(v.members[1]!.note).toBe("non-voter, pending approval (pgherd member approve n4)");
  });

  test("before any membership (bootstrap) nobody is pending approval", () => {
    const v = composeView({ cluster: "c", term: 0, leader: null, slotOf: (id) => id, members: [member(A, "n1", false)] });
    expect(v.members[0]!.membership).toBeUndefined();
    expect(v.members[0]!.note).toBe("");
  });
});
