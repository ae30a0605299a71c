import { describe, expect, test } from "bun:test";
import {
  backendInForce, checkStart, type InForce, leaderStep, type LeaderAction, type LeaderObs, type LeaderState, leaveHoldMs, mayElect, migratingLease,
  type MigrateTimers, onHeard, onSwitch, resumeTerm, startPlan, usableLease,
} from "../../src/core/consensus-migrate.ts";
import { majority } from "../../src/core/quorum.ts";
import { rng } from "./sim.ts";

const T: MigrateTimers = { timeoutMs: 1000, ttlMs: 2000, maxDrift: 0.02, fenceMs: 100 };
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
    const f = { self: "a", inForce: { backend: "builtin", epoch: 0 } as InForce, leading: true, voters: V3, connected: ["b", "c"], etcdConfigured: true };
    expect(checkStart("etcd", f)).toEqual({ epoch: 1 });
    expect(checkStart("builtin", f)).toEqual({ refuse: "the cluster already runs on builtin" });
    expect("refuse" in checkStart("etcd", { ...f, leading: false })).toBe(true);
    expect(checkStart("etcd", { ...f, connected: ["b"] })).toEqual({ refuse: "every voter must be connected: c is not" });
    expect("refuse" in checkStart("etcd", { ...f, etcdConfigured: false })).toBe(true);
    const onEtcd = { ...f, inForce: { backend: "etcd", epoch: 1 } as InForce };
    expect(checkStart("builtin", onEtcd)).toEqual({ epoch: 2 });
    expect("refuse" in checkStart("builtin", { ...onEtcd, configured: "etcd" })).toBe(true);
    expect(checkStart("builtin", { ...onEtcd, configured: "builtin" })).toEqual({ epoch: 2 });
  });
});

describe("members", () => {
  test("a switch is stored once, never to a lower epoch; to builtin only with a higher term", () => {
    const local = { inForce: { backend: "builtin", epoch: 0 } as InForce, term: 7 };
    const d = onSwitch(local, { to: "etcd", epoch: 1, leader: "a" }, 100, T);
    expect(d).toEqual({ accept: true, inForce: { backend: "etcd", epoch: 1 }, election: null, holdUntil: 1100, again: false });
    expect(onSwitch({ ...local, inForce: { backend: "etcd", epoch: 1 } }, { to: "etcd", epoch: 1, leader: "a" }, 200, T)).toMatchObject({ accept: true, again: true });
    expect(onSwitch({ ...local, inForce: { backend: "etcd", epoch: 2 } }, { to: "builtin", epoch: 1, leader: "a", term: 9 }, 0, T)).toMatchObject({ accept: false });
    const etcdLocal = { inForce: { backend: "etcd", epoch: 1 } as InForce, term: 7 };
    expect(onSwitch(etcdLocal, { to: "builtin", epoch: 2, leader: "a", term: 7 }, 0, T)).toMatchObject({ accept: false, term: 7 });
    expect(onSwitch(etcdLocal, { to: "builtin", epoch: 2, leader: "a", term: 8 }, 0, T)).toMatchObject({ accept: true, election: { term: 8, votedFor: "a" }, holdUntil: leaveHoldMs("etcd", T) });
  });

  test("a member that missed the switch adopts a higher epoch, fencing first and dropping a stale own key", () => {
    const local = { inForce: { backend: "builtin", epoch: 0 } as InForce, term: 3 };
    expect(onHeard(local, { backend: "builtin", epoch: 0 }, 0, T)).toBeNull();
    expect(onHeard(local, { backend: "etcd", epoch: 1 }, 50, T)).toEqual({ inForce: { backend: "etcd", epoch: 1 }, holdUntil: 1050, fenceFirst: true, dropOwnEtcdKey: true });
  });
});

describe("the leader's plan", () => {
  test("to etcd: open, switch, commit at a majority (leader included), resend to the rest", () => {
    let { state: s, actions } = startPlan("etcd", 1);
    expect(actions).toEqual([{ do: "open" }]);
    ({ state: s, actions } = leaderStep(s, { type: "opened", ok: true }, "a", V3));
    expect(actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    ({ state: s, actions } = leaderStep(s, { type: "tick", now: 10, builtinUntil: 500, etcdUntil: 900 }, "a", V3));
    expect(actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    ({ state: s, actions } = leaderStep(s, { type: "ack", from: "b", epoch: 1 }, "a", V3));
    expect(actions).toEqual([{ do: "persist-and-swap", inForce: { backend: "etcd", epoch: 1 } }]);
    expect(s.phase).toBe("done");
  });

  test("to etcd: the built-in lease running out before the commit fences and gives the key back", () => {
    let { state: s } = startPlan("etcd", 1);
    s = leaderStep(s, { type: "opened", ok: true }, "a", V3).state;
    const r = leaderStep(s, { type: "tick", now: 500, builtinUntil: 500, etcdUntil: 900 }, "a", V3);
    expect(r.actions).toEqual([{ do: "fence", revoke: true }]);
    expect(r.state.phase).toBe("aborted");
  });

  test("to builtin: commit once the resumed term holds a built-in lease; the frozen etcd lease bounds the wait", () => {
    let { state: s } = startPlan("builtin", 2, 9);
    s = leaderStep(s, { type: "opened", ok: true }, "a", V3).state;
    expect(leaderStep(s, { type: "tick", now: 10, builtinUntil: null, etcdUntil: 900 }, "a", V3).actions).toEqual([{ do: "send-switch", to: ["b", "c"] }]);
    expect(leaderStep(s, { type: "tick", now: 20, builtinUntil: 800, etcdUntil: 900 }, "a", V3).actions).toEqual([{ do: "release-etcd" }]);
    expect(leaderStep(s, { type: "tick", now: 900, builtinUntil: null, etcdUntil: 900 }, "a", V3).actions).toEqual([{ do: "fence", revoke: false }]);
  });
});

// ------------------------------------------------------------------ random schedules
//
// An abstract cluster (no drift, 50 ms steps): built-in leaders need a majority of votes from
// built-in voters past their hold and lead while a majority acknowledges heartbeats (lease_ms);
// etcd candidates need the key absent, etcd open and a majority of etcd voters past their hold;
// a key lasts ttl after its last renewal. Migrations start at random on the acting leader and are
// carried out by the plan above; messages are lost to partitions, nodes crash and restart with what
// they persisted, members gossip epochs. Every step: at most one node may act as primary.

const LEASE = 600;
const STEP = 50;

interface SimNode {
  id: string;
  alive: boolean;
  cutUntil: number;
  cutAt: number;
  inForce: InForce;
  hold: number;
  term: number;
  votedFor: string | null;
  contact: number;
  leader: { term: number; start: number; ack: number | null } | null;
  plan: LeaderState | null;
}

const stats = { toEtcd: 0, toBuiltin: 0, aborted: 0, adopted: 0 };

function simulate(seed: number, n: number, hold: (from: "builtin" | "etcd") => number): string | null {
  const r = rng(seed);
  const ids = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  const nodes = new Map<string, SimNode>(ids.map((id) => [id, { id, alive: true, cutUntil: 0, cutAt: -1, inForce: { backend: "builtin", epoch: 0 }, hold: 0, term: 0, votedFor: null, contact: 0, leader: null, plan: null }]));
  const node = (id: string) => nodes.get(id)!;
  let key: { holder: string; renewed: number; frozen: boolean } | null = null;
  let etcdOpen = false;
  const inbox: { at: number; to: string; from: string; msg: { kind: "switch"; to: "builtin" | "etcd"; epoch: number; term: number } | { kind: "ack"; epoch: number } }[] = [];
  const linked = (a: SimNode, b: SimNode, now: number) => a.alive && b.alive && a.cutUntil <= now && b.cutUntil <= now;
  const q = majority(n);
  const builtinUntil = (x: SimNode) => (x.leader && x.leader.ack !== null ? x.leader.ack + LEASE : null);
  const etcdUntil = (x: SimNode) => (key && key.holder === x.id ? key.renewed + T.ttlMs - T.fenceMs : null);
  const timers = { ...T };
  const holdOf = (from: "builtin" | "etcd", now: number) => now + hold(from);

  function leaveLeadership(x: SimNode): void {
    x.leader = null;
    if (key?.holder === x.id) key = null;
    x.plan = null;
  }

  function carry(x: SimNode, actions: LeaderAction[], now: number): void {
    for (const a of actions) {
      switch (a.do) {
        case "open":
          if (x.plan!.to === "etcd") {
            if (key) x.plan = leaderStep(x.plan!, { type: "opened", ok: false }, x.id, ids).state;
            else {
              key = { holder: x.id, renewed: now, frozen: false };
              etcdOpen = true;
              const s = leaderStep(x.plan!, { type: "opened", ok: true }, x.id, ids);
              x.plan = s.state;
              carry(x, s.actions, now);
            }
          } else {
            key!.frozen = true;
            etcdOpen = false;
            const term = Math.max(...ids.map((i) => node(i).term)) + 1;
            x.plan = { ...x.plan!, term };
            x.inForce = { backend: "builtin", epoch: x.plan.epoch };
            x.term = term;
            x.votedFor = x.id;
            x.leader = { term, start: now, ack: null };
            const s = leaderStep(x.plan, { type: "opened", ok: true }, x.id, ids);
            x.plan = s.state;
            carry(x, s.actions, now);
          }
          break;
        case "send-switch":
          for (const to of a.to) inbox.push({ at: now + STEP * Math.floor(1 + r() * 3), to, from: x.id, msg: { kind: "switch", to: x.plan!.to, epoch: x.plan!.epoch, term: x.plan!.term } });
          break;
        case "persist-and-swap":
          stats.toEtcd++;
          x.inForce = a.inForce;
          x.leader = null; // the built-in driver stops without fencing; the etcd key carries on
          x.plan = null;
          break;
        case "release-etcd":
          stats.toBuiltin++;
          if (key?.holder === x.id) key = null;
          x.plan = null;
          break;
        case "fence":
          stats.aborted++;
          x.plan = null;
          if (a.revoke && key?.holder === x.id) key = null;
          if (x.inForce.backend === "etcd" && key?.holder === x.id) key = null;
          break;
      }
    }
  }

  /** The deadline until which x may act as primary, as the shell would compute it. */
  function acting(x: SimNode, now: number): boolean {
    if (!x.alive) return false;
    if (x.plan) return (migratingLease(x.plan, builtinUntil(x), etcdUntil(x)) ?? -1) > now;
    if (x.inForce.backend === "builtin") return (builtinUntil(x) ?? -1) > now;
    return key?.holder === x.id && !key.frozen && (etcdUntil(x) ?? -1) > now;
  }

  for (let now = 0; now < 40_000; now += STEP) {
    // faults
    for (const x of nodes.values()) {
      if (x.alive && r() < 0.002) {
        x.alive = false;
        x.leader = null;
        x.plan = null;
      } else if (!x.alive && r() < 0.01) {
        x.alive = true;
        x.contact = now;
        x.hold = Math.max(x.hold, now);
      }
      if (x.alive && (r() < 0.003 || x.cutAt === now)) x.cutUntil = now + STEP * Math.floor(r() * 60);
    }
    // etcd keys
    if (key && now >= key.renewed + T.ttlMs) key = null;
    if (key && !key.frozen) {
      const h = node(key.holder);
      const renewing = h.alive && (h.inForce.backend === "etcd" || h.plan?.to === "etcd");
      if (renewing) key.renewed = now;
    }
    // deliveries
    for (let i = inbox.length - 1; i >= 0; i--) {
      const m = inbox[i]!;
      if (m.at > now) continue;
      inbox.splice(i, 1);
      const to = node(m.to);
      if (!linked(node(m.from), to, now)) continue;
      if (m.msg.kind === "ack") {
        if (to.plan) {
          const s = leaderStep(to.plan, { type: "ack", from: m.from, epoch: m.msg.epoch }, to.id, ids);
          to.plan = s.state;
          carry(to, s.actions, now);
        }
        continue;
      }
      const d = onSwitch({ inForce: to.inForce, term: to.term }, { to: m.msg.to, epoch: m.msg.epoch, leader: m.from, term: m.msg.term }, now, timers);
      if (!d.accept) continue;
      if (!d.again) {
        leaveLeadership(to);
        to.inForce = d.inForce;
        to.hold = holdOf(d.inForce.backend === "etcd" ? "builtin" : "etcd", now);
        if (d.election) {
          to.term = d.election.term;
          to.votedFor = d.election.votedFor;
          to.contact = now;
        }
      }
      inbox.push({ at: now + STEP, to: m.from, from: to.id, msg: { kind: "ack", epoch: m.msg.epoch } });
    }
    // gossip of epochs
    for (let g = 0; g < 2; g++) {
    const [a, b] = [node(ids[Math.floor(r() * n)]!), node(ids[Math.floor(r() * n)]!)];
    if (a !== b && linked(a, b, now) && !a.plan && !b.plan) {
      const [lo, hi] = a.inForce.epoch < b.inForce.epoch ? [a, b] : [b, a];
      const ad = onHeard({ inForce: lo.inForce, term: lo.term }, hi.inForce, now, timers);
      if (ad) {
        stats.adopted++;
        if (ad.fenceFirst) leaveLeadership(lo);
        if (ad.dropOwnEtcdKey && key?.holder === lo.id) key = null;
        lo.hold = ad.fenceFirst ? holdOf(lo.inForce.backend, now) : lo.hold;
        lo.inForce = ad.inForce;
      }
    }
    }
    // built-in heartbeats and leases
    for (const x of nodes.values()) {
      if (!x.alive || !x.leader) continue;
      let acks = 1;
      for (const y of nodes.values()) {
        if (y === x || !linked(x, y, now) || y.inForce.backend !== "builtin" || y.term > x.leader.term) continue;
        if (y.term < x.leader.term) y.votedFor = null;
        y.term = x.leader.term;
        y.contact = now;
        acks++;
      }
      if (acks >= q) x.leader.ack = now;
      const until = builtinUntil(x);
      if ((until === null && now >= x.leader.start + LEASE) || (until !== null && until <= now)) x.leader = null;
    }
    // built-in elections
    const c = node(ids[Math.floor(r() * n)]!);
    if (c.alive && c.cutUntil <= now && c.inForce.backend === "builtin" && !c.leader && !c.plan && mayElect(c.hold, now) && now - c.contact >= T.timeoutMs) {
      const term = c.term + 1;
      const granted = ids.map(node).filter((y) => y === c || (linked(c, y, now) && y.inForce.backend === "builtin" && mayElect(y.hold, now) && y.term < term && now - y.contact >= T.timeoutMs));
      if (granted.length >= q) {
        for (const y of granted) {
          y.term = term;
          y.votedFor = c.id;
        }
        c.leader = { term, start: now, ack: null };
      }
    }
    // etcd elections
    const e = node(ids[Math.floor(r() * n)]!);
    if (!key && etcdOpen && e.alive && e.inForce.backend === "etcd" && mayElect(e.hold, now)) {
      const ready = ids.map(node).filter((y) => y.alive && y.inForce.backend === "etcd" && mayElect(y.hold, now));
      if (ready.length >= q) key = { holder: e.id, renewed: now, frozen: false };
    }
    // migrations
    for (const x of nodes.values()) {
      if (x.plan) {
        const obs: LeaderObs = { type: "tick", now, builtinUntil: builtinUntil(x), etcdUntil: etcdUntil(x) };
        const s = leaderStep(x.plan, obs, x.id, ids);
        x.plan = s.state;
        carry(x, s.actions, now);
      } else if (acting(x, now) && r() < 0.02) {
        const to = x.inForce.backend === "builtin" ? "etcd" : "builtin";
        if (to === "builtin" && key?.holder !== x.id) continue;
        const s = startPlan(to, Math.max(...ids.map((i) => node(i).inForce.epoch)) + 1);
        x.plan = s.state;
        carry(x, s.actions, now);
        // Faults where they hurt: a node cut off within the next steps, the leader or a member.
        if (r() < 0.4) node(ids[Math.floor(r() * n)]!).cutAt = now + STEP * Math.floor(r() * 6);
      }
    }
    const act = ids.map(node).filter((x) => acting(x, now));
    if (act.length > 1) return `seed ${seed}, t=${now}: ${act.map((x) => `${x.id}(${x.inForce.backend}${x.plan ? ` migrating to ${x.plan.to}` : ""})`).join(" and ")} act at once`;
  }
  return null;
}

describe("random schedules: never two acting leaders", () => {
  test("3 and 5 voters, migrations both ways under crashes, partitions and lost messages", () => {
    const problems: string[] = [];
    for (let seed = 1; seed <= 150; seed++) {
      for (const n of [3, 5]) {
        const p = simulate(seed, n, (from) => leaveHoldMs(from, T));
        if (p) problems.push(p);
      }
    }
    expect(problems).toEqual([]);
    // Not vacuous: migrations complete both ways, some abort, members catch up by gossip.
    expect(stats.toEtcd).toBeGreaterThan(100);
    expect(stats.toBuiltin).toBeGreaterThan(100);
    expect(stats.aborted).toBeGreaterThan(10);
    expect(stats.adopted).toBeGreaterThan(100);
    console.log(`migrations: ${JSON.stringify(stats)}`);
  });

  test("the check can fail: without the hold after leaving etcd it finds two leaders", () => {
    let found: string | null = null;
    for (let seed = 1; seed <= 150 && !found; seed++) found = simulate(seed, 3, (from) => (from === "etcd" ? 0 : leaveHoldMs(from, T)));
    expect(found).toContain("act at once");
  });
});

test("to builtin: the resumed term is above the leader's stored term and its etcd term", () => {
  expect(resumeTerm(3, 57)).toBe(58);
  expect(resumeTerm(90, 57)).toBe(91);
});
