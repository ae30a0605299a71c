// The random-schedule simulator of a backend migration (src/core/consensus-migrate.ts), used by
// test/core/consensus-migrate.test.ts.
//
// An abstract cluster (no drift, 50 ms steps): built-in leaders need a majority of votes from
// built-in voters past their hold and lead while a majority acknowledges heartbeats (lease_ms);
// etcd candidates need the key absent, etcd open and a majority of etcd voters past their hold;
// a key lasts ttl after its last renewal. etcd's record `<prefix>/<cluster>/backend` is one value
// changed only by the conditions the plan's actions name (the open, the roll-back), as the shell's
// transactions do; a node on etcd that finds a pending migration whose key is gone rolls it back
// through the record, and one that finds a close there adopts it (the shell's check every 2 s). A
// close may apply without the leader storing builtin (its answer and read-back lost, builtin not
// stored, a crash in between): the leader's plan aborts with a fence, the key stays frozen (a stopped
// backend does not resign), and the leader stays out until it reads etcd (the driver's settleClose;
// option closeLost, readFail for the former holder's failing reads). A plan that ended is cleared, as
// the shell's finish() does. Migrations start on the acting leader through
// checkStart, with the epochs and built-in terms it heard from its peers' epoch messages (each
// direction of such a message can be lost on its own) and refusals; messages are lost to
// partitions, nodes crash and restart with what they persisted, and a node restarted while the
// cluster runs on etcd sometimes comes back with built-in term 0 (replaced, added again), so an etcd
// leader's built-in term can be below its voters'. Every step: at
// most one node may act as primary; and a return to builtin resumes a term above the built-in term
// of every voter on the epoch it leaves.
import {
  checkStart, type InForce, leaderStep, type LeaderAction, type LeaderObs, type LeaderState, leaveHoldMs, mayElect, migratingLease,
  type MigrateTimers, onHeard, onSwitch, resumeTerm, startHoldMs, startPlan,
} from "../../src/core/consensus-migrate.ts";
import { majority } from "../../src/core/quorum.ts";
import { rng } from "./sim.ts";

export const T: MigrateTimers = { timeoutMs: 1000, ttlMs: 2000, maxDrift: 0.02, fenceMs: 100 };
const LEASE = 600;
const STEP = 50;

interface Report { epoch: number; backend: InForce["backend"]; term: number }

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
  /** The built-in leader it follows (last heartbeat). */
  follows: { leader: string | null; term: number };
  /** The leader's term in the backend it leaves, at the start of its migration. */
  planTerm: number;
  /** The highest epoch it heard of (epoch messages, refusals, a refused open), in memory. */
  known: number;
  /** Its peers' last epoch messages (backend, epoch, built-in term), in memory. */
  reports: Record<string, Report>;
  /** The epoch of a close whose outcome it does not know yet (0: none), in memory: out and fenced. */
  closing: number;
}

export const stats = { closeLost: 0, toEtcd: 0, toBuiltin: 0, aborted: 0, adopted: 0, rolledBack: 0, resigned: 0, openRefused: 0, pendingRolledBack: 0, highVoterTerm: 0 };

export interface SimOptions {
  /** The hold after leaving a backend (the real one: leaveHoldMs). */
  hold?: (from: "builtin" | "etcd") => number;
  /** The hold at every start (the real one: startHoldMs). */
  startHold?: (f: InForce) => number;
  /** Members often crash right after storing a switch and restart quickly (the restart-hold faults). */
  crashy?: boolean;
  /**
   * Roll-backs followed quickly by a second migration: migrating leaders often die before the
   * commit, acting leaders start migrations often, and half of the epoch messages are lost one way.
   */
  rollbacky?: boolean;
  /**
   * The rules before this fix, to show the checks fail without it. `epoch`: a new epoch is the
   * leader's own + 1, the open and the roll-back ignore etcd's record, refusals do not say the
   * member's epoch. `term`: the resumed term ignores the voters' built-in terms. `f1`: after a close
   * whose outcome it did not learn, the former holder runs etcd again at once (finish(), or a restart)
   * and its etcd backend resumes and renews its key on the closed etcd.
   */
  legacy?: { epoch?: boolean; term?: boolean; f1?: boolean };
  /** How often a close applies (or may) without its leader storing builtin (see above); 0: never. */
  closeLost?: number;
  /** How often a read of etcd by the former holder of a closed etcd's key fails (its keepalives pass). */
  readFail?: number;
}

export function simulate(seed: number, n: number, o: SimOptions = {}): string | null {
  const hold = o.hold ?? ((from) => leaveHoldMs(from, T));
  const startHold = o.startHold ?? ((f) => startHoldMs(f, T));
  const { crashy = false, rollbacky = false, closeLost = 0, readFail = 0 } = o;
  const legacyF1 = o.legacy?.f1 === true;
  const legacy = o.legacy?.epoch === true;
  const legacyTerm = o.legacy?.term === true;
  const r = rng(seed);
  const ids = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  const nodes = new Map<string, SimNode>(ids.map((id) => [id, {
    id, alive: true, cutUntil: 0, cutAt: -1, inForce: { backend: "builtin", epoch: 0 }, hold: 0, term: 0, votedFor: null, contact: 0,
    leader: null, plan: null, follows: { leader: null, term: 0 }, planTerm: 0, known: 0, reports: {}, closing: 0,
  }]));
  const node = (id: string) => nodes.get(id)!;
  let key: { holder: string; renewed: number; frozen: boolean; term: number } | null = null;
  let keyTerms = 0;
  let etcdOpen = false;
  let record: (InForce & { term?: number; leader?: string }) | null = null;
  let problem: string | null = null;
  type Msg = { kind: "switch"; to: "builtin" | "etcd"; epoch: number; term: number; leaderTerm: number } | { kind: "ack"; epoch: number } | { kind: "nack"; epoch: number; term: number; from: InForce };
  const inbox: { at: number; to: string; from: string; msg: Msg }[] = [];
  const linked = (a: SimNode, b: SimNode, now: number) => a.alive && b.alive && a.cutUntil <= now && b.cutUntil <= now;
  const q = majority(n);
  const builtinUntil = (x: SimNode) => (x.leader && x.leader.ack !== null ? x.leader.ack + LEASE : null);
  const etcdUntil = (x: SimNode) => (key && key.holder === x.id ? key.renewed + T.ttlMs - T.fenceMs : null);
  const holdOf = (from: "builtin" | "etcd", now: number) => now + hold(from);
  const leases = (x: SimNode, now: number) => ({ now, builtinUntil: builtinUntil(x), etcdUntil: etcdUntil(x) });
  const holds = (x: SimNode) => key?.holder === x.id;
  const sameRecord = (a: InForce | null, b: InForce) => a !== null && a.backend === b.backend && a.epoch === b.epoch;

  function leaveLeadership(x: SimNode): void {
    x.leader = null;
    if (key?.holder === x.id) key = null;
    x.plan = null;
  }

  function step(x: SimNode, obs: LeaderObs, now: number): void {
    const s = leaderStep(x.plan!, obs, x.id, ids);
    x.plan = s.state;
    carry(x, s.actions, now);
    // The shell's finish(): a plan that ended (also one aborted without a fence: a refused open) is over.
    if (x.plan && (x.plan.phase === "done" || x.plan.phase === "aborted")) x.plan = null;
  }

  function carry(x: SimNode, actions: LeaderAction[], now: number): void {
    for (const a of actions) {
      switch (a.do) {
        case "open": {
          const below = legacy ? undefined : a.recordBelow;
          if (x.plan!.to === "etcd") {
            if (key) step(x, { type: "opened", ok: false, ...leases(x, now) }, now);
            else if (below !== undefined && record && record.epoch >= below) {
              // etcd's record holds a decision at this epoch or above: nothing changed; the leader learns it.
              stats.openRefused++;
              x.known = Math.max(x.known, record.epoch);
              step(x, { type: "opened", ok: false, ...leases(x, now) }, now);
            } else {
              // The membership key holds the pending record until the commit: etcd stays closed to candidates.
              key = { holder: x.id, renewed: now, frozen: false, term: ++keyTerms };
              etcdOpen = false;
              record = { backend: "etcd", epoch: x.plan!.epoch };
              step(x, { type: "opened", ok: true, ...leases(x, now) }, now);
            }
            return;
          }
          if (below !== undefined && !sameRecord(record, x.inForce)) {
            step(x, { type: "opened", ok: false, stopped: false, ...leases(x, now) }, now);
            return;
          }
          if (closeLost > 0 && r() < closeLost) {
            // The close: applied (or not, half the time) with its answer and read-back lost, or builtin
            // not stored, or a crash in between. The key stays frozen (the backend was stopped first).
            stats.closeLost++;
            const applied = r() < 0.5;
            const epoch = x.plan!.epoch;
            key!.frozen = true;
            if (applied) {
              etcdOpen = false;
              record = { backend: "builtin", epoch, term: x.plan!.term, leader: x.id };
            }
            if (r() < 0.3) return crash(x); // restarts on etcd (see the faults)
            step(x, { type: "opened", ok: false, stopped: true, ...leases(x, now) }, now);
            if (legacyF1) key!.frozen = false; // finish() ran etcd again: its backend resumed the key
            else x.closing = epoch;
            return;
          }
          const term = x.plan!.term;
          const same = ids.map(node).filter((y) => y !== x && sameRecord(y.inForce, x.inForce));
          const top = Math.max(0, ...same.map((y) => y.term));
          if (same.some((y) => y.term > x.term)) stats.highVoterTerm++;
          if (term <= top) problem ??= `seed ${seed}, t=${now}: ${x.id} resumes builtin at term ${term}, not above a voter's stored built-in term ${top}`;
          key!.frozen = true;
          etcdOpen = false;
          record = { backend: "builtin", epoch: x.plan!.epoch, term, leader: x.id };
          x.inForce = { backend: "builtin", epoch: x.plan!.epoch };
          x.term = term;
          x.votedFor = x.id;
          x.leader = { term, start: now, ack: null };
          step(x, { type: "opened", ok: true, ...leases(x, now) }, now);
          return;
        }
        case "send-switch":
          for (const to of a.to) inbox.push({ at: now + STEP * Math.floor(1 + r() * 3), to, from: x.id, msg: { kind: "switch", to: x.plan!.to, epoch: x.plan!.epoch, term: x.plan!.term, leaderTerm: x.planTerm } });
          break;
        case "commit-etcd": {
          const held = key?.holder === x.id;
          if (held) etcdOpen = true;
          step(x, { type: "committed", ok: held, pending: !held }, now);
          return;
        }
        case "roll-back":
          // (An action without `ifRecord` is the plan before this fix: stored without etcd.)
          if (legacy || a.ifRecord === undefined || sameRecord(record, a.ifRecord)) {
            if (!legacy && a.ifRecord) record = { ...a.inForce };
            stats.rolledBack++;
            x.inForce = a.inForce;
          }
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
          // The fence resigns: a running etcd backend gives its key back, a stopped one (its key
          // frozen, a close sent) does not: that key stays until its lease runs out.
          if (x.inForce.backend === "etcd" && key?.holder === x.id && !key.frozen) key = null;
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

  function crash(x: SimNode): void {
    x.alive = false;
    x.leader = null;
    x.plan = null;
    x.known = 0;
    x.reports = {};
    x.closing = 0;
  }

  /** `to` hears `from`'s epoch message: learns its epoch and built-in term; adopts a higher epoch. */
  function hear(to: SimNode, from: SimNode, now: number): void {
    to.known = Math.max(to.known, from.inForce.epoch);
    to.reports[from.id] = { ...from.inForce, term: from.term };
    if (to.plan || from.plan) return;
    const ad = onHeard({ inForce: to.inForce, voters: ids }, from.inForce, now, T, from.id);
    if (!ad) return;
    stats.adopted++;
    if (ad.fenceFirst) leaveLeadership(to);
    if (ad.dropOwnEtcdKey && key?.holder === to.id) key = null;
    // Adopting builtin: the resumed term, guard and membership from etcd's record of the close, if above its own.
    if (ad.inForce.backend === "builtin" && record?.backend === "builtin" && record.epoch === ad.inForce.epoch && record.term && record.term > to.term) {
      to.term = record.term;
      to.votedFor = record.leader ?? null;
    }
    to.hold = ad.fenceFirst ? holdOf(to.inForce.backend, now) : to.hold;
    to.inForce = ad.inForce;
  }

  for (let now = 0; now < 40_000; now += STEP) {
    // faults
    for (const x of nodes.values()) {
      const dies = crashy ? 0.01 : rollbacky && x.plan?.to === "etcd" ? 0.05 : 0.002;
      if (x.alive && r() < dies) crash(x);
      else if (!x.alive && r() < (crashy || rollbacky ? 0.3 : 0.01)) {
        x.alive = true;
        x.contact = now;
        // The in-memory hold is gone with the process: only what the start applies holds it now.
        x.hold = now + startHold(x.inForce);
        x.follows = { leader: null, term: x.term };
        // Before the fix, a restarted etcd backend resumed a key bound to its id, also on a closed etcd.
        if (legacyF1 && x.inForce.backend === "etcd" && key?.holder === x.id) key.frozen = false;
        // A node replaced while the cluster runs on etcd (new state directory, added again): built-in term 0.
        if (x.inForce.backend === "etcd" && etcdOpen && r() < 0.3) {
          x.term = 0;
          x.votedFor = null;
        }
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
    // a node on etcd finds a pending migration whose key is gone: one transaction rolls it back
    if (!key && !etcdOpen && record?.backend === "etcd") {
      const x = node(ids[Math.floor(r() * n)]!);
      if (x.alive && sameRecord(x.inForce, record)) {
        stats.pendingRolledBack++;
        record = { backend: "builtin", epoch: record.epoch + 1 };
        hear(x, { ...x, id: x.id, inForce: record, plan: null }, now);
      }
    }
    // a node on etcd finds etcd's record of a close (checkClosed every 2 s; a holder out after an
    // unknown close reads every 500 ms: settleClose); the former holder's reads may fail. (Before the
    // epoch fix etcd held no record: `legacy.epoch` schedules have none to adopt.)
    for (const x of nodes.values()) {
      if (legacy || !x.alive || x.plan || x.inForce.backend !== "etcd" || now % (x.closing ? 500 : 2000) !== 0) continue;
      if ((holds(x) || x.closing) && readFail > 0 && r() < readFail) continue;
      if (record?.backend === "builtin" && record.epoch > x.inForce.epoch) {
        hear(x, { ...x, inForce: { backend: "builtin", epoch: record.epoch }, plan: null, id: record.leader ?? x.id }, now);
        x.closing = 0;
      } else if (x.closing && !holds(x)) x.closing = 0; // the close can never apply: etcd again
      else if (x.closing) key = null; // it gives its key back, so the next read decides
    }
    // deliveries
    for (let i = inbox.length - 1; i >= 0; i--) {
      const m = inbox[i]!;
      if (m.at > now) continue;
      inbox.splice(i, 1);
      const to = node(m.to);
      if (!linked(node(m.from), to, now)) continue;
      if (m.msg.kind === "ack") {
        if (to.plan) step(to, { type: "ack", from: m.from, epoch: m.msg.epoch, ...leases(to, now) }, now);
        continue;
      }
      if (m.msg.kind === "nack") {
        to.known = Math.max(to.known, m.msg.from.epoch);
        to.reports[m.from] = { ...m.msg.from, term: m.msg.term };
        continue;
      }
      const follows = to.inForce.backend === "etcd" ? { leader: key?.holder ?? null, term: key?.term ?? 0 } : to.follows;
      const d = onSwitch({ inForce: to.inForce, term: to.term, follows, voters: ids }, { to: m.msg.to, epoch: m.msg.epoch, leader: m.from, term: m.msg.term, leaderTerm: m.msg.leaderTerm }, now, T);
      if (!d.accept) {
        if (!legacy) inbox.push({ at: now + STEP, to: m.from, from: to.id, msg: { kind: "nack", epoch: m.msg.epoch, term: d.term, from: { ...to.inForce } } });
        continue;
      }
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
      if (crashy && !d.again && r() < 0.5) {
        crash(to);
        if (r() < 0.5) node(m.from).cutUntil = now + STEP * 40;
      }
    }
    // epoch messages (also during holds): each direction delivered on its own
    for (let g = 0; g < 2; g++) {
      const [a, b] = [node(ids[Math.floor(r() * n)]!), node(ids[Math.floor(r() * n)]!)];
      if (a === b || !linked(a, b, now)) continue;
      const loss = rollbacky ? 0.5 : 0.1;
      if (r() >= loss) hear(a, b, now);
      if (r() >= loss) hear(b, a, now);
    }
    // built-in heartbeats and leases
    for (const x of nodes.values()) {
      if (!x.alive || !x.leader) continue;
      let acks = 1;
      for (const y of nodes.values()) {
        if (y === x || !linked(x, y, now) || y.inForce.backend !== "builtin" || y.term > x.leader.term) continue;
        if (y.term < x.leader.term) y.votedFor = null;
        y.term = x.leader.term;
        y.follows = { leader: x.id, term: x.leader.term };
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
    if (!key && etcdOpen && e.alive && e.inForce.backend === "etcd" && !e.closing && mayElect(e.hold, now)) {
      const ready = ids.map(node).filter((y) => y.alive && y.inForce.backend === "etcd" && !y.closing && mayElect(y.hold, now));
      if (ready.length >= q) key = { holder: e.id, renewed: now, frozen: false, term: ++keyTerms };
    }
    // migrations
    for (const x of nodes.values()) {
      if (x.plan && x.leader && r() < 0.01) {
        // A resign (switchover, pg round) mid-migration: the lease ends now, followers may elect at once.
        stats.resigned++;
        x.leader = null;
        for (const y of nodes.values()) if (y !== x && y.follows.leader === x.id) y.contact = -Infinity;
      }
      if (x.plan) step(x, { type: "tick", ...leases(x, now) }, now);
      else if (acting(x, now) && r() < (rollbacky ? 0.1 : 0.02)) {
        const to = x.inForce.backend === "builtin" ? "etcd" : "builtin";
        if (to === "builtin" && key?.holder !== x.id) continue;
        const voterTerms: Record<string, number> = legacyTerm ? Object.fromEntries(ids.map((i) => [i, 0])) : {};
        for (const [id, rep] of Object.entries(x.reports)) if (!legacyTerm && rep.epoch === x.inForce.epoch && rep.backend === x.inForce.backend) voterTerms[id] = rep.term;
        const ok = checkStart(to, {
          self: x.id, inForce: x.inForce, leading: true, voters: ids, connected: ids.filter((y) => linked(x, node(y), now)),
          etcdConfigured: true, allowed: true, knownEpoch: legacy ? 0 : x.known, voterTerms,
        });
        if ("refuse" in ok) continue;
        const term = to === "builtin" ? resumeTerm(x.term, key!.term, legacyTerm ? [] : Object.values(voterTerms)) : 0;
        // To etcd, a time limit on the switch phase on a quarter of the migrations (no random draw: the schedules stay as they were).
        const s = startPlan(to, ok.epoch, term, to === "etcd" && ok.epoch % 4 === 1 ? now + STEP * (2 + (seed % 6)) : undefined);
        x.plan = s.state;
        x.planTerm = to === "etcd" ? x.leader!.term : key!.term;
        carry(x, s.actions, now);
        // Faults where they hurt: a node cut off within the next steps, the leader or a member.
        if (r() < 0.4) node(ids[Math.floor(r() * n)]!).cutAt = now + STEP * Math.floor(r() * 6);
      }
    }
    if (problem) return problem;
    const act = ids.map(node).filter((x) => acting(x, now));
    if (act.length > 1) return `seed ${seed}, t=${now}: ${act.map((x) => `${x.id}(${x.inForce.backend} e${x.inForce.epoch}${x.plan ? ` migrating to ${x.plan.to}` : ""})`).join(" and ")} act at once`;
  }
  return null;
}
