import { describe, expect, test } from "bun:test";
import {
  backendInForce, checkStart, outcome, resumedRecords, startHoldMs, type InForce, leaderStep, leaveHoldMs, mayElect,
  joinsFromRecord, onHeard, onJoinRecord, onRecord, onSwitch, resumeTerm, settleOpen, startPlan, usableLease,
} from "../../src/core/consensus-migrate.ts";
import { rng } from "./sim.ts";
import { simulate, stats, T } from "./consensus-migrate-sim.ts";

const ROLLBACKY_SEEDS = 3000;
import { Election } from "../../src/core/election.ts";
import { isNewer } from "../../src/core/election-membership.ts";
import type { Guard, Membership } from "../../src/core/messages.ts";

const V3 = ["a", "b", "c"];

describe("backend in force and holds", () => {
  test("a migration's record wins over the config file; epoch 0 means the file decides", () => {
    expect(backendInForce("builtin", null)).toEqual({ backend: "builtin", epoch: 0 });
    expect(backendInForce("etcd", { backend: "builtin", epoch: 0 })).toEqual({ backend: "etcd", epoch: 0 });
    expect(backendInForce("builtin", { backend: "etcd", epoch: 2 })).toEqual({ backend: "etcd", epoch: 2 });
  });

  test("leaving builtin holds for timeout_ms; leaving etcd for ttl + fence, drift included", () => {
    expect(leaveHoldMs("builtin", T)).toBe(1000);
    expect(leaveHoldMs("etcd", T)).toBe(Math.ceil(2100 * 1.02));
    expect(mayElect(5, 4)).toBe(false);
    expect(mayElect(5, 5)).toBe(true);
  });

  test("leaving builtin: the hold outlasts any built-in lease the member's last acknowledgement supported", () => {
    // The config check keeps lease_ms/(1-d) + fence_ms < timeout_ms/(1+d); the hold is timeout_ms on
    // the member's clock, so in real time at least timeout_ms/(1+d) after its last acknowledgement.
    const d = T.maxDrift, leaseMs = 600;
    expect(leaseMs / (1 - d) + T.fenceMs).toBeLessThan(T.timeoutMs / (1 + d));
    expect(leaveHoldMs("builtin", T) / (1 + d)).toBeGreaterThan(leaseMs / (1 - d) + T.fenceMs);
    // Leaving etcd: a key holder that stopped renewing is fenced at most ttl + fence (real time) later.
    expect(leaveHoldMs("etcd", T) / (1 + d)).toBeGreaterThanOrEqual(T.ttlMs + T.fenceMs);
  });

  test("the usable lease in both backends is the earlier deadline", () => {
    expect(usableLease(10, 20)).toBe(10);
    expect(usableLease(null, 20)).toBeNull();
  });

  test("start: only the leader, every voter connected, etcd configured, another backend", () => {
    const f = { self: "a", inForce: { backend: "builtin", epoch: 0 } as InForce, leading: true, voters: V3, connected: ["b", "c"], etcdConfigured: true, allowed: true };
    expect(checkStart("etcd", f)).toEqual({ epoch: 1 });
    // [consensus] allow_migration = false on the leader: refused in both directions, naming the setting.
    expect((checkStart("etcd", { ...f, allowed: false }) as { refuse: string }).refuse).toContain("allow_migration");
    expect("refuse" in checkStart("builtin", { ...f, inForce: { backend: "etcd", epoch: 1 }, allowed: false })).toBe(true);
    expect(checkStart("builtin", f)).toEqual({ refuse: "the cluster already runs on builtin" });
    expect("refuse" in checkStart("etcd", { ...f, leading: false })).toBe(true);
    expect(checkStart("etcd", { ...f, connected: ["b"] })).toEqual({ refuse: "every voter must be connected: c is not" });
    expect("refuse" in checkStart("etcd", { ...f, etcdConfigured: false })).toBe(true);
    const onEtcd = { ...f, inForce: { backend: "etcd", epoch: 1 } as InForce, voterTerms: { b: 4, c: 9 } };
    expect("refuse" in checkStart("builtin", { ...onEtcd, configured: "etcd" })).toBe(true);
    expect(checkStart("builtin", onEtcd)).toEqual({ epoch: 2 });
    expect(checkStart("builtin", { ...onEtcd, configured: "builtin" })).toEqual({ epoch: 2 });
    // To builtin the resumed term must be above every voter's: each must have reported it at this epoch.
    expect((checkStart("builtin", { ...onEtcd, voterTerms: { b: 4 } }) as { refuse: string }).refuse).toContain("no report of the built-in term of c at epoch 1");
    // The new epoch is above every epoch heard of (peers' messages, refusals, etcd's record).
    expect(checkStart("etcd", { ...f, knownEpoch: 6 })).toEqual({ epoch: 7 });
    expect(checkStart("builtin", { ...onEtcd, inForce: { backend: "etcd", epoch: 8 }, knownEpoch: 6 })).toEqual({ epoch: 9 });
    expect(checkStart("etcd", { ...f, switchingOver: true })).toEqual({ refuse: "a switchover or failover is running: try again once it is over" });
  });

  test("a migrated node holds at every start for the longer of both holds (the in-memory hold is gone)", () => {
    expect(startHoldMs({ backend: "builtin", epoch: 0 }, T)).toBe(0);
    expect(startHoldMs({ backend: "builtin", epoch: 2 }, T)).toBe(leaveHoldMs("etcd", T));
    expect(startHoldMs({ backend: "etcd", epoch: 1 }, T)).toBe(leaveHoldMs("etcd", T));
  });
});

describe("S1: the way back to builtin keeps the etcd-era guard and membership", () => {
  const ET = { heartbeatMs: 200, leaseMs: 1500, timeoutMs: 2500, jitterMs: 500, fenceMs: 500, maxDrift: 0.02, detachBeforeVote: false };
  // Builtin at term 7 moved to a fresh etcd: the key's create revision (the etcd term) is 2, and the
  // etcd leader l set a block (primary degraded). The way back resumes at T = 8.
  const etcdGuard = { term: 2, seq: 5, block: true, holder: "l", floor: null };
  const etcdMembership = { term: 2, index: 4, voters: ["l", "v", "w"] };
  const staleGuard = { term: 7, seq: 4, block: false, holder: null, floor: null };
  const prevote = { t: "prevote" as const, term: 9, cfg: { term: 7, index: 3 }, pos: { timeline: 1, lsn: "0/10" }, guard: staleGuard };
  const voter = (guard: Guard, membership: Membership) =>
    new Election({ id: "w", canLead: true, ...ET, random: rng(1) }, { term: 8, votedFor: "l", membership, guard }, 0);

  test("stored as they were under etcd, a voter's pre-etcd guard (term 7) wins and drops the block (the defect)", () => {
    const w = voter(etcdGuard, etcdMembership);
    w.step({ type: "recv", now: 10_000, from: "v", msg: prevote });
    expect(w.status(10_000).guard).toMatchObject({ block: false });
  });

  test("stamped in the resumed term, the block stays; the membership also beats a pre-etcd one", () => {
    const r = resumedRecords(etcdGuard, etcdMembership, 8);
    expect(r.guard).toEqual({ term: 8, seq: 6, block: true, holder: "l", floor: null });
    const w = voter(r.guard, r.membership);
    w.step({ type: "recv", now: 10_000, from: "v", msg: prevote });
    expect(w.status(10_000).guard).toMatchObject({ term: 8, block: true, holder: "l" });
    expect(isNewer(r.membership, { term: 7, index: 3, voters: ["l", "v"] })).toBe(true);
    expect(isNewer(etcdMembership, { term: 7, index: 3, voters: ["l", "v"] })).toBe(false);
  });

  test("the timeline reservation goes along to builtin (core/timelines.ts)", () => {
    expect(resumedRecords({ ...etcdGuard, timeline: 9 }, etcdMembership, 8).guard).toEqual({ term: 8, seq: 6, block: true, holder: "l", floor: null, timeline: 9 });
    expect(resumedRecords(etcdGuard, etcdMembership, 8).guard).not.toHaveProperty("timeline");
  });

  test("members store them with the switch", () => {
    const r = resumedRecords(etcdGuard, etcdMembership, 8);
    const local = { inForce: { backend: "etcd", epoch: 1 } as InForce, term: 7, follows: { leader: "l", term: 2 }, voters: ["l", "v", "w"] };
    expect(onSwitch(local, { to: "builtin", epoch: 2, leader: "l", term: 8, leaderTerm: 2, resumed: r }, 0, T)).toMatchObject({ accept: true, election: { term: 8, votedFor: "l", resumed: r } });
  });
});

describe("members", () => {
  test("a switch is stored once, never to a lower epoch; to builtin only with a higher term", () => {
    const local = { inForce: { backend: "builtin", epoch: 0 } as InForce, term: 7, follows: { leader: "a", term: 7 }, voters: V3 };
    const d = onSwitch(local, { to: "etcd", epoch: 1, leader: "a", leaderTerm: 7 }, 100, T);
    expect(d).toEqual({ accept: true, inForce: { backend: "etcd", epoch: 1 }, election: null, holdUntil: 1100, again: false });
    expect(onSwitch({ ...local, inForce: { backend: "etcd", epoch: 1 } }, { to: "etcd", epoch: 1, leader: "a", leaderTerm: 7 }, 200, T)).toMatchObject({ accept: true, again: true });
    expect(onSwitch({ ...local, inForce: { backend: "etcd", epoch: 2 } }, { to: "builtin", epoch: 1, leader: "a", term: 9, leaderTerm: 7 }, 0, T)).toMatchObject({ accept: false });
    const etcdLocal = { inForce: { backend: "etcd", epoch: 1 } as InForce, term: 7, follows: { leader: "a", term: 40 }, voters: V3 };
    expect(onSwitch(etcdLocal, { to: "builtin", epoch: 2, leader: "a", term: 7, leaderTerm: 40 }, 0, T)).toMatchObject({ accept: false, term: 7 });
    expect(onSwitch(etcdLocal, { to: "builtin", epoch: 2, leader: "a", term: 8, leaderTerm: 40 }, 0, T)).toMatchObject({ accept: true, election: { term: 8, votedFor: "a" }, holdUntil: leaveHoldMs("etcd", T) });
  });

  test("a switch only from the leader this member follows, at the term it follows it in, and a voter", () => {
    const local = { inForce: { backend: "builtin", epoch: 0 } as InForce, term: 8, follows: { leader: "b", term: 8 }, voters: V3 };
    // A deposed leader's late switch (its migration aborted at term 7; b leads at 8): refused.
    expect(onSwitch(local, { to: "etcd", epoch: 1, leader: "a", leaderTerm: 7 }, 0, T)).toMatchObject({ accept: false });
    expect(onSwitch({ ...local, follows: { leader: "a", term: 8 } }, { to: "etcd", epoch: 1, leader: "a", leaderTerm: 7 }, 0, T)).toMatchObject({ accept: false });
    expect(onSwitch({ ...local, follows: { leader: "x", term: 7 } }, { to: "etcd", epoch: 1, leader: "x", leaderTerm: 7 }, 0, T)).toMatchObject({ accept: false, reason: "x is not a voter" });
    expect(onSwitch(local, { to: "etcd", epoch: 1, leader: "b", leaderTerm: 8 }, 0, T)).toMatchObject({ accept: true });
  });

  test("a member that missed the switch adopts a higher epoch from a voter, fencing first and dropping a stale own key", () => {
    const local = { inForce: { backend: "builtin", epoch: 0 } as InForce, voters: V3 };
    expect(onHeard(local, { backend: "builtin", epoch: 0 }, 0, T, "b")).toBeNull();
    expect(onHeard(local, { backend: "etcd", epoch: 1 }, 50, T, "x")).toBeNull();
    expect(onHeard(local, { backend: "etcd", epoch: 1 }, 50, T, "b")).toEqual({ inForce: { backend: "etcd", epoch: 1 }, holdUntil: 1050, fenceFirst: true, dropOwnEtcdKey: true });
  });

  test("a node added (or a new state_dir) while the cluster runs on etcd: no voters to hear from, it joins from etcd's record", () => {
    // No consensus.json, no membership: every voter's epoch message is ignored (the third review's F2) ...
    const added = { inForce: backendInForce("builtin", null), voters: [] as string[] };
    for (const from of ["a", "b", "c"]) expect(onHeard(added, { backend: "etcd", epoch: 3 }, 0, T, from)).toBeNull();
    // ... but etcd's record is adopted like a voter's epoch, with the hold of leaving builtin.
    expect(onRecord(added.inForce, { backend: "etcd", epoch: 3 }, 50, T)).toEqual({ inForce: { backend: "etcd", epoch: 3 }, holdUntil: 1050, fenceFirst: true, dropOwnEtcdKey: true });
    // A cluster back on builtin: only the epoch is stored; a record at or below its own changes nothing.
    expect(onRecord(added.inForce, { backend: "builtin", epoch: 4 }, 50, T)).toEqual({ inForce: { backend: "builtin", epoch: 4 }, holdUntil: 50, fenceFirst: false, dropOwnEtcdKey: false });
    expect(onRecord({ backend: "etcd", epoch: 3 }, { backend: "etcd", epoch: 3 }, 50, T)).toBeNull();
    // Once on etcd at epoch 3 it reports its built-in term there, so the way back is no longer refused for it.
    const back = checkStart("builtin", {
      self: "a", inForce: { backend: "etcd", epoch: 3 }, leading: true, voters: ["a", "b", "c", "d"], connected: ["b", "c", "d"],
      etcdConfigured: true, configured: "builtin", allowed: true, knownEpoch: 3, voterTerms: { b: 7, c: 7, d: 0 },
    });
    expect(back).toEqual({ epoch: 4 });
  });
});

describe("joining from etcd's record, and settling an aborted open (the fourth review's A2)", () => {
  const cfg = { stored: null, etcdConfigured: true, configured: "builtin" as const };

  test("only a node with neither a migration's record nor a membership reads etcd's record at start", () => {
    expect(joinsFromRecord({ ...cfg, hasMembership: false })).toBe(true); // a new node, a new state_dir
    // A voter of a running built-in cluster (never migrated, endpoints set): a stale record in etcd is never read.
    expect(joinsFromRecord({ ...cfg, hasMembership: true })).toBe(false);
    expect(joinsFromRecord({ ...cfg, hasMembership: false, stored: { backend: "builtin", epoch: 0 } })).toBe(false);
    expect(joinsFromRecord({ ...cfg, hasMembership: false, etcdConfigured: false })).toBe(false);
    expect(joinsFromRecord({ ...cfg, hasMembership: false, configured: "etcd" })).toBe(false);
  });

  test("a joining node adopts {etcd, e} only once etcd's membership is committed; a pending one is waited out", () => {
    const added = backendInForce("builtin", null);
    expect(onJoinRecord(added, null, false, 50, T)).toBeNull();
    expect(onJoinRecord(added, { backend: "etcd", epoch: 1 }, false, 50, T)).toBe("wait"); // an open whose answer was lost
    expect(onJoinRecord(added, { backend: "etcd", epoch: 1 }, true, 50, T)).toEqual({ inForce: { backend: "etcd", epoch: 1 }, holdUntil: 1050, fenceFirst: true, dropOwnEtcdKey: true });
    expect(onJoinRecord(added, { backend: "builtin", epoch: 2 }, false, 50, T)).toEqual({ inForce: { backend: "builtin", epoch: 2 }, holdUntil: 50, fenceFirst: false, dropOwnEtcdKey: false });
  });

  test("a first migration to etcd whose open applied without an answer no longer leaves {etcd, 1} pending for good", () => {
    // The plan aborts with nothing to do (no switch went out) ...
    const p = startPlan("etcd", 1);
    const s = leaderStep(p.state, { type: "opened", ok: false, detail: "etcd: timeout", now: 0, builtinUntil: 1000, etcdUntil: null }, "a", V3);
    expect([s.state.phase, s.actions]).toEqual(["aborted", []]);
    // ... and the driver settles etcd's record: applied → key given back, then rolled back like the roll-back step.
    const applied = { record: { backend: "etcd", epoch: 1 } as InForce, pending: { epoch: 1, leader: "a" }, ownKey: true };
    expect(settleOpen(1, "a", applied)).toEqual({ do: "roll-back", release: true, inForce: { backend: "builtin", epoch: 2 }, ifRecord: { backend: "etcd", epoch: 1 } });
    expect(settleOpen(1, "a", { ...applied, ownKey: false })).toMatchObject({ do: "roll-back", release: false });
    // Not applied (yet): the record is rewritten as {builtin, 1}, so the open can never apply.
    expect(settleOpen(1, "a", { record: null, pending: null, ownKey: false })).toEqual({ do: "void", inForce: { backend: "builtin", epoch: 1 } });
    expect(settleOpen(3, "a", { record: { backend: "builtin", epoch: 2 }, pending: null, ownKey: false })).toEqual({ do: "void", inForce: { backend: "builtin", epoch: 3 } });
    // Settled already: by a member's roll-back, a void, a committed migration, or a later decision.
    for (const record of [{ backend: "builtin", epoch: 2 }, { backend: "builtin", epoch: 1 }, { backend: "etcd", epoch: 1 }] as InForce[]) {
      expect(settleOpen(1, "a", { record, pending: null, ownKey: false })).toEqual({ do: "done", inForce: record });
    }
    // Another leader's pending record at that epoch is not this node's to roll back.
    expect(settleOpen(1, "a", { ...applied, pending: { epoch: 1, leader: "b" } })).toEqual({ do: "done", inForce: { backend: "etcd", epoch: 1 } });
  });
});

describe("the leader's plan", () => {
  const L = { now: 10, builtinUntil: 500, etcdUntil: 900 };

  test("to etcd: open, switch, commit at a majority (leader included) by writing the membership into etcd, resend to the rest", () => {
    let { state: s, actions } = startPlan("etcd", 1);
    expect(actions).toEqual([{ do: "open", recordBelow: 1 }]);
    ({ state: s, actions } = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3));
    expect(actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    ({ state: s, actions } = leaderStep(s, { type: "tick", ...L }, "a", V3));
    expect(actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    ({ state: s, actions } = leaderStep(s, { type: "ack", from: "b", epoch: 1, ...L }, "a", V3));
    expect(actions).toEqual([{ do: "commit-etcd" }]);
    expect(leaderStep(s, { type: "tick", ...L, now: 600 }, "a", V3).actions).toEqual([]); // the write's answer decides
    ({ state: s, actions } = leaderStep(s, { type: "committed", ok: true, pending: false }, "a", V3));
    expect(actions).toEqual([{ do: "persist-and-swap", inForce: { backend: "etcd", epoch: 1 } }]);
    expect(s.phase).toBe("done");
    expect(outcome(s)).toBe("the cluster moved to etcd (epoch 1)");
  });

  test("to etcd: a commit write refused while etcd still shows the pending record rolls back; unknown leaves it to the majority", () => {
    let { state: s } = startPlan("etcd", 1);
    s = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3).state;
    s = leaderStep(s, { type: "ack", from: "b", epoch: 1, ...L }, "a", V3).state;
    const back = leaderStep(s, { type: "committed", ok: false, pending: true }, "a", V3);
    expect(back.actions).toEqual([{ do: "fence", revoke: true }, { do: "roll-back", inForce: { backend: "builtin", epoch: 2 }, ifRecord: { backend: "etcd", epoch: 1 } }]);
    const unknown = leaderStep(s, { type: "committed", ok: false, pending: false }, "a", V3);
    expect(unknown.actions).toEqual([{ do: "fence", revoke: false }]);
    expect(outcome(unknown.state)).toContain("unknown");
  });

  test("to etcd: the built-in lease running out after switches went out fences, gives the key back and rolls back to builtin at epoch + 1", () => {
    let { state: s } = startPlan("etcd", 1);
    s = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3).state;
    const r = leaderStep(s, { type: "tick", now: 500, builtinUntil: 500, etcdUntil: 900 }, "a", V3);
    expect(r.actions).toEqual([{ do: "fence", revoke: true }, { do: "roll-back", inForce: { backend: "builtin", epoch: 2 }, ifRecord: { backend: "etcd", epoch: 1 } }]);
    expect(r.state.phase).toBe("aborted");
    expect(outcome(r.state)).toContain("return to builtin (epoch 2)");
  });

  test("to etcd: a switch no majority acknowledges by the plan's time limit is given up like a lease running out, not waited for for good (review)", () => {
    let { state: s } = startPlan("etcd", 1, 0, 5_000);
    s = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3).state;
    // Both leases renewed all along: only the time limit ends it.
    expect(leaderStep(s, { type: "tick", now: 4_999, builtinUntil: 10_000, etcdUntil: 10_000 }, "a", V3).state.phase).toBe("switch");
    const r = leaderStep(s, { type: "tick", now: 5_000, builtinUntil: 10_000, etcdUntil: 10_000 }, "a", V3);
    expect(r.state.phase).toBe("aborted");
    expect(r.actions).toEqual([{ do: "fence", revoke: true }, { do: "roll-back", inForce: { backend: "builtin", epoch: 2 }, ifRecord: { backend: "etcd", epoch: 1 } }]);
    expect(r.state.reason).toContain("no majority of voters stored etcd in time");
  });

  test("S3: opened and ack are checked against the lease at once, not at the next tick", () => {
    let { state: s } = startPlan("etcd", 1);
    // The lease ended while the open ran (a resign with transfer): nobody is told to switch.
    const late = leaderStep(s, { type: "opened", ok: true, now: 10, builtinUntil: null, etcdUntil: 900 }, "a", V3);
    expect(late.actions).toEqual([{ do: "fence", revoke: true }]);
    expect(late.state.phase).toBe("aborted");
    s = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3).state;
    // An acknowledgement arriving after the lease ran out does not commit.
    const ack = leaderStep(s, { type: "ack", from: "b", epoch: 1, now: 501, builtinUntil: 500, etcdUntil: 900 }, "a", V3);
    expect(ack.actions).toEqual([{ do: "fence", revoke: true }, { do: "roll-back", inForce: { backend: "builtin", epoch: 2 }, ifRecord: { backend: "etcd", epoch: 1 } }]);
  });

  test("C3: a failed open to builtin fences only once the etcd backend was stopped", () => {
    const s = startPlan("builtin", 2, 9).state;
    expect(leaderStep(s, { type: "opened", ok: false, stopped: false, ...L }, "a", V3).actions).toEqual([]);
    expect(leaderStep(s, { type: "opened", ok: false, stopped: true, ...L }, "a", V3).actions).toEqual([{ do: "fence", revoke: false }]);
  });

  test("to builtin: commit once the resumed term holds a built-in lease; the frozen etcd lease bounds the wait", () => {
    let { state: s } = startPlan("builtin", 2, 9);
    s = leaderStep(s, { type: "opened", ok: true, ...L }, "a", V3).state;
    expect(leaderStep(s, { type: "tick", now: 10, builtinUntil: null, etcdUntil: 900 }, "a", V3).actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    expect(leaderStep(s, { type: "tick", now: 20, builtinUntil: 800, etcdUntil: 900 }, "a", V3).actions).toEqual([{ do: "release-etcd" }]);
    const late = leaderStep(s, { type: "tick", now: 900, builtinUntil: null, etcdUntil: 900 }, "a", V3);
    expect(late.actions).toEqual([{ do: "fence", revoke: false }]);
    expect(outcome(late.state)).toContain("etcd was closed and this node stored builtin (epoch 2)");
    expect(outcome(leaderStep(startPlan("builtin", 2, 9).state, { type: "opened", ok: false, stopped: false, ...L }, "a", V3).state)).toBe("nothing changed");
    // Opened (etcd closed, builtin stored here), then the lease ran out before the switch: not "nothing changed" (review).
    const closed = leaderStep(startPlan("builtin", 2, 9).state, { type: "opened", ok: true, now: 1000, builtinUntil: null, etcdUntil: 900 }, "a", V3);
    expect(closed.state.phase).toBe("aborted");
    expect(outcome(closed.state)).toContain("etcd was closed and this node stored builtin (epoch 2)");
  });
});

describe("random schedules: never two acting leaders", () => {
  test("3 and 5 voters, migrations both ways under crashes, partitions and lost messages", () => {
    const problems: string[] = [];
    for (let seed = 1; seed <= 150; seed++) {
      for (const n of [3, 5]) {
        const p = simulate(seed, n);
        if (p) problems.push(p);
      }
    }
    for (let seed = 1; seed <= 300; seed++) {
      for (const n of [3, 5]) {
        const p = simulate(seed, n, { crashy: true });
        if (p) problems.push(`crashy: ${p}`);
      }
    }
    expect(problems).toEqual([]);
    // Not vacuous: migrations complete both ways, some abort, members catch up by gossip.
    expect(stats.toEtcd).toBeGreaterThan(100);
    expect(stats.toBuiltin).toBeGreaterThan(100);
    expect(stats.aborted).toBeGreaterThan(10);
    expect(stats.adopted).toBeGreaterThan(100);
    expect(stats.rolledBack).toBeGreaterThan(5);
    expect(stats.resigned).toBeGreaterThan(5);
    console.log(`migrations: ${JSON.stringify(stats)}`);
  }, 60_000);

  test("roll-backs followed quickly by a second migration, epoch messages lost one way, voters with built-in terms above the leader's", () => {
    const before = { ...stats };
    const problems: string[] = [];
    for (let seed = 1; seed <= ROLLBACKY_SEEDS; seed++) {
      const p = simulate(seed, seed % 2 ? 3 : 5, { rollbacky: true });
      if (p) problems.push(p);
    }
    expect(problems).toEqual([]);
    // Not vacuous: roll-backs happen (by the leader and through etcd's record), second migrations
    // meet etcd's record of a higher epoch, and returns to builtin meet voters with a higher term.
    expect(stats.rolledBack - before.rolledBack).toBeGreaterThan(100);
    expect(stats.pendingRolledBack - before.pendingRolledBack).toBeGreaterThan(20);
    expect(stats.openRefused - before.openRefused).toBeGreaterThan(20);
    expect(stats.highVoterTerm - before.highVoterTerm).toBeGreaterThan(20);
    console.log(`roll-back schedules: ${JSON.stringify(Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v - before[k as keyof typeof stats]])))}`);
  }, 60_000);

  test("a close that applies without its leader storing builtin (answer lost, builtin not stored, a crash), the former holder's reads of etcd failing", () => {
    const before = { ...stats };
    const problems: string[] = [];
    for (let seed = 1; seed <= 300; seed++) {
      for (const n of [3, 5]) {
        const p = simulate(seed, n, { closeLost: 0.5, readFail: seed % 3 === 0 ? 0.5 : 1 });
        if (p) problems.push(p);
      }
    }
    expect(problems).toEqual([]);
    expect(stats.closeLost - before.closeLost).toBeGreaterThan(100);
  }, 60_000);

  test("the check can fail: when the former holder runs etcd again after such a close and its backend resumes its key there (before F1's fix), two act", () => {
    // Seed 1 (3 voters): b's close of etcd applies without b storing builtin; b resumes its key on
    // the closed etcd while the others adopt builtin from etcd's record; b's own reads fail: a,
    // elected on builtin after its hold, and b on etcd act at once (t = 12.3 s).
    let found: string | null = null;
    for (let seed = 1; seed <= 20 && !found; seed++) found = simulate(seed, 3, { closeLost: 0.5, readFail: 1, legacy: { f1: true } });
    expect(found).toContain("act at once");
  }, 60_000);

  test("the check can fail: with a new epoch of the leader's own + 1 and etcd's record ignored, an epoch is used twice and two act", () => {
    // Seed 195 is the first of these schedules (3 voters) that meets the defect: a roll-back to
    // builtin stored at e+1 on one node, a second migration committing etcd at e+1 - 1 on a leader
    // that had not heard of it, and the roll-back's node taking a majority out of etcd.
    let found: string | null = null;
    for (let seed = 1; seed <= 200 && !found; seed++) found = simulate(seed, 3, { rollbacky: true, legacy: { epoch: true } });
    expect(found).toContain("act at once");
  }, 60_000);

  test("the check can fail: with a resumed term above the leader's own and etcd's only, a voter's built-in term is not below it", () => {
    let found: string | null = null;
    for (let seed = 1; seed <= 100 && !found; seed++) found = simulate(seed, seed % 2 ? 3 : 5, { rollbacky: true, legacy: { term: true } });
    expect(found).toContain("not above a voter's stored built-in term");
  }, 60_000);

  test("the check can fail: without the hold after leaving etcd it finds two leaders", () => {
    let found: string | null = null;
    for (let seed = 1; seed <= 150 && !found; seed++) found = simulate(seed, 3, { hold: (from) => (from === "etcd" ? 0 : leaveHoldMs(from, T)) });
    expect(found).toContain("act at once");
  }, 60_000);

  test("the check can fail: without the hold at start (S2) restarts find two leaders", () => {
    let found: string | null = null;
    for (let seed = 1; seed <= 1000 && !found; seed++) found = simulate(seed, seed % 2 ? 3 : 5, { startHold: () => 0, crashy: true });
    expect(found).toContain("act at once");
  }, 60_000);
});

test("to builtin: the resumed term is above the leader's stored term, its etcd term and every voter's", () => {
  expect(resumeTerm(3, 57, [])).toBe(58);
  expect(resumeTerm(90, 57, [12])).toBe(91);
  expect(resumeTerm(3, 5, [9, 4])).toBe(10);
});
