// Moving a running cluster between the built-in election and etcd: the pure plan. No I/O; time is
// passed in. The shell (src/agent/migrate-driver.ts) carries out the actions in the order given;
// docs/etcd.md ("Migration") and docs/design.md (S21) say why the plan never lets two nodes lead,
// and test/core/consensus-migrate.test.ts checks it on random schedules.
//
// Rules the plan keeps:
//  - every voter is in exactly one backend at a time, recorded durably with an epoch
//    (<state_dir>/consensus.json); it persists a switch before acting on it and never goes back to
//    a lower epoch;
//  - the leader holds the target backend's leadership before it tells anyone to switch:
//    to etcd it takes the leader key while its built-in lease is valid; to builtin it first closes
//    etcd to candidates (its membership key replaced by a record no candidate accepts), stops
//    renewing its etcd lease, and resumes as built-in leader of a term above every voter's;
//  - while the leader is in both, it may act only until the earlier of the two deadlines
//    (to etcd) or its frozen etcd deadline until a built-in majority acknowledges it (to builtin);
//  - a voter that leaves a backend takes no part in electing anyone in the new one (no vote, no
//    campaign, no final position published) until every lease its old participation could have
//    supported has run out (leaveHoldMs); following the migrating leader is allowed meanwhile;
//  - a member that missed the switch adopts a higher epoch it hears of, with the same hold;
//  - every decision of a backend at an epoch ≥ 1 (an open to etcd, a close of etcd, a roll-back) is
//    first written to etcd's record `<prefix>/<cluster>/backend` by a transaction that requires the
//    record's epoch to be below it (open) or the record to be the one replaced (roll-back, close), so
//    no two decisions share an epoch and a later decision always has the higher epoch (design.md S21);
//  - the way back to builtin resumes a term above every voter's stored built-in term, as reported at
//    the epoch in force, so no voter refuses it and no older guard wins a later comparison.
import { withTimeline } from "./timelines.ts";
import { majority } from "./quorum.ts";
import type { Guard, Membership } from "./messages.ts";
import { restamp } from "./election-membership.ts";

export type Backend = "builtin" | "etcd";

/** The backend in force on one node and the migration epoch that put it there (0: the config file's). */
export interface InForce {
  backend: Backend;
  epoch: number;
}

export interface MigrateTimers {
  /** election.timeout_ms: no built-in vote within this of hearing a live leader. */
  timeoutMs: number;
  /** consensus.ttl_s in ms. */
  ttlMs: number;
  maxDrift: number;
  fenceMs: number;
}

/**
 * How long a node whose record is a migration's (epoch ≥ 1) stays out of elections after it starts:
 * the hold of leaving either backend (the in-memory hold of a switch just before a restart is gone,
 * and the node cannot know which backend it left nor when). Epoch 0: none beyond the backend's own.
 */
export function startHoldMs(inForce: InForce, t: MigrateTimers): number {
  return inForce.epoch >= 1 ? Math.max(leaveHoldMs("builtin", t), leaveHoldMs("etcd", t)) : 0;
}

/** A migration's record (epoch ≥ 1) wins over the config file's `backend`; without one the file decides. */
export function backendInForce(configured: Backend, stored: InForce | null): InForce {
  return stored && stored.epoch >= 1 ? stored : { backend: configured, epoch: 0 };
}

/**
 * How long a voter that leaves `from` stays out of any election in the new backend (its own clock).
 * builtin: the built-in rule itself (no vote within timeout_ms of a live leader; the config check
 * keeps lease/(1−d) + fence < timeout/(1+d)), so any lease its acknowledgements held has run out and
 * been fenced. etcd: a key holder that stopped renewing before the switch was sent loses its key at
 * most ttl after its last renewal on etcd's clock; measured on a clock that may run fast by d.
 */
export function leaveHoldMs(from: Backend, t: MigrateTimers): number {
  if (from === "builtin") return t.timeoutMs;
  return Math.ceil((t.ttlMs + t.fenceMs) * (1 + t.maxDrift));
}

/** A leader in both backends may act until the earlier deadline; null when either is gone. */
export function usableLease(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : Math.min(a, b);
}

export interface StartFacts {
  self: string;
  inForce: InForce;
  /** This node leads with a valid lease now. */
  leading: boolean;
  voters: readonly string[];
  /** Voters this leader reaches over the mesh now. */
  connected: readonly string[];
  /** [consensus] names etcd endpoints on this node. */
  etcdConfigured: boolean;
  /**
   * Why this node's [consensus] could not run etcd (the lease margins a file with backend = "etcd"
   * is checked for), null or absent: it could. A node that stored etcd with such a file refuses to start.
   */
  etcdUnfit?: string | null;
  /**
   * The config file's [consensus] backend. With etcd the cluster-wide flags, configuration and
   * history live in etcd keys only an etcd key holder writes, so such a cluster is not moved to builtin.
   */
  configured?: Backend;
  /** An operator's switchover or failover runs on this node now. */
  switchingOver?: boolean;
  /** [consensus] allow_migration on the leader. */
  allowed: boolean;
  /**
   * The highest epoch this leader heard of: its peers' epoch messages and refusals, and etcd's record
   * read by an open that refused (0: none). The new epoch is above it, so an open is not refused for
   * an epoch some node already knows; etcd's record is what makes the epoch unique (the open's condition).
   */
  knownEpoch?: number;
  /**
   * To builtin: each voter's stored built-in term, as it reported it while on the epoch in force
   * (a node's built-in term does not change while it runs on etcd). Every other voter must have one.
   */
  voterTerms?: Readonly<Record<string, number>>;
}

/** Whether a migration to `to` may start on this node, and its epoch. */
export function checkStart(to: Backend, f: StartFacts): { epoch: number } | { refuse: string } {
  if (f.inForce.backend === to) return { refuse: `the cluster already runs on ${to}` };
  if (!f.allowed) return { refuse: "off on the leader ([consensus] allow_migration = false in its config file)" };
  if (!f.leading) return { refuse: "only the leader with a valid lease runs a migration" };
  if (f.switchingOver) return { refuse: "a switchover or failover is running: try again once it is over" };
  if (to === "builtin" && f.configured === "etcd") {
    return { refuse: 'the config files say backend = "etcd": the cluster-wide flags, configuration and history live in etcd and only an etcd leader writes them; a cluster set up on etcd stays on it' };
  }
  if (!f.etcdConfigured) return { refuse: "[consensus] endpoints are empty on the leader: the etcd cluster to use must be configured on every node" };
  if (to === "etcd" && f.etcdUnfit) return { refuse: `the leader's [consensus] cannot run etcd (${f.etcdUnfit}): fix it on every node first (a node that stored etcd with it refuses to start)` };
  const missing = f.voters.filter((v) => v !== f.self && !f.connected.includes(v));
  if (missing.length > 0) return { refuse: `every voter must be connected: ${missing.join(", ")} is not` };
  if (to === "builtin") {
    const silent = f.voters.filter((v) => v !== f.self && f.voterTerms?.[v] === undefined);
    if (silent.length > 0) return { refuse: `no report of the built-in term of ${silent.join(", ")} at epoch ${f.inForce.epoch} yet (sent every 2 s): try again in a few seconds` };
  }
  return { epoch: Math.max(f.inForce.epoch, f.knownEpoch ?? 0) + 1 };
}

// ------------------------------------------------------------------ the leader's plan

export type Phase = "open" | "switch" | "committing" | "done" | "aborted";

export interface LeaderState {
  to: Backend;
  epoch: number;
  phase: Phase;
  /** Voters (other than the leader) that stored the new backend. */
  acked: string[];
  /** To builtin: the term the leader resumes in (above every voter's stored term). */
  term: number;
  reason: string;
  /** To etcd, aborted in the switch phase: this node stored builtin at epoch + 1 and tells its peers. */
  rolledBack?: boolean;
  /** To etcd: the commit write's outcome is not known. */
  unknown?: boolean;
  /** The phase an abort happened in (to builtin after the open, etcd is closed: the cluster goes on on builtin). */
  abortedIn?: Phase;
  /** To builtin: the open succeeded (etcd closed, builtin stored here) before the plan aborted. */
  closed?: boolean;
  /**
   * To etcd: when the switch phase gives up waiting for a majority (own clock; absent: never). With
   * both leases renewed it has no other end: voters that drop the switch (an earlier version) or keep
   * refusing it left the leader migrating for good, refusing switchover, failover, membership
   * changes and any new block (review).
   */
  giveUpAt?: number;
}

export type LeaderObs =
  /** "open" carried out: the etcd key taken (to etcd) / etcd closed and the built-in term resumed (to builtin). */
  | ({ type: "opened"; ok: boolean; detail?: string; /** To builtin: the etcd backend was stopped before the failure. */ stopped?: boolean } & Leases)
  | ({ type: "ack"; from: string; epoch: number } & Leases)
  /** To etcd, the commit write (the real membership into etcd): done, or failed and etcd still shows the pending record (`pending`), or unknown. */
  | { type: "committed"; ok: boolean; pending: boolean; detail?: string }
  /** The leases now: the built-in lease's deadline and the etcd lease's (null: none). */
  | { type: "tick"; now: number; builtinUntil: number | null; etcdUntil: number | null };

/** The leases when an observation arrives; with `now` the plan checks the migrating lease on every step, not on ticks only. */
export interface Leases {
  now: number;
  builtinUntil: number | null;
  etcdUntil: number | null;
}

export type LeaderAction =
  /**
   * Both ways, etcd's record of the cluster's backend is part of the open's transaction: to etcd it
   * must be absent or hold an epoch below `recordBelow` (else the open refuses, nothing changed, and
   * the leader learns the record's epoch); to builtin it must still be the record of the epoch in force.
   * To etcd: take the leader key on a new etcd lease (transaction: absent), storing the membership,
   * the guard and the record {etcd, epoch}; keep renewing it. To builtin (this node holds the key):
   * stop renewing (the deadline freezes), replace the membership key by the record {builtin, epoch,
   * term} (transaction: this node's key), persist {builtin, epoch} and "term, voted for self, led
   * term" on this node, and resume as built-in leader of `term` (no lease until a majority acks).
   */
  | { do: "open"; recordBelow: number }
  | { do: "send-switch"; to: string[] }
  /** Durably store the new backend on this node, then run on it (etcd: adopt the key already held). */
  | { do: "persist-and-swap"; inForce: InForce }
  /**
   * To etcd, at the commit: write the membership into etcd (transaction on this node's key). Until
   * then the membership key holds a pending record no candidate accepts, so no etcd election can
   * succeed before the commit, whoever stored etcd.
   */
  | { do: "commit-etcd" }
  /**
   * To etcd, aborted after switches went out: replace etcd's record `ifRecord` ({etcd, epoch}, with the
   * membership still pending) by `inForce` ({builtin, epoch + 1}) in one transaction; only if that
   * applied, store it on this node and tell every peer, so members that stored etcd (which cannot
   * elect: etcd still holds the pending record) come back. Not applied (etcd unreachable, or the record
   * changed): nothing is stored; the members on etcd roll it back through the same transaction once
   * the key's lease ran out. A roll-back is a decision like any other: its epoch is taken in etcd first.
   */
  | { do: "roll-back"; inForce: InForce; ifRecord: InForce }
  /** To builtin, after the built-in lease is held: delete the etcd leader key and revoke the lease. */
  | { do: "release-etcd" }
  /** Stop writes now; `revoke`: delete the etcd key taken for the migration (to etcd, before commit). */
  | { do: "fence"; revoke: boolean };

/** The plan's outcome once it ended, in words the operator is told. */
export function outcome(s: LeaderState): string {
  if (s.phase === "done") return `the cluster moved to ${s.to} (epoch ${s.epoch})`;
  if (s.to === "etcd" && s.rolledBack) return `aborted after some voters may have stored etcd: they return to builtin (epoch ${s.epoch + 1}) when they hear it; the cluster runs on builtin`;
  if (s.to === "etcd" && s.unknown) return `the outcome is unknown (etcd did not answer the commit): the voters that stored etcd (a majority) keep it; once etcd answers, the cluster runs on etcd if the commit applied, else the voters that stored etcd roll it back once the migration's etcd lease has run out (docs/etcd.md, Migration)`;
  if (s.to === "builtin" && s.closed) {
    return `etcd was closed and this node stored builtin (epoch ${s.epoch}), but its lease ran out before any voter was told: the voters adopt builtin when they hear the epoch; a built-in leader is elected once their holds end`;
  }
  if (s.to === "builtin" && s.abortedIn === "switch") {
    return `etcd was closed and this node stored builtin (epoch ${s.epoch}), but a built-in majority did not acknowledge in time: the voters that stored the switch stay on builtin and the others adopt it when they hear the epoch; a built-in leader is elected once their holds end`;
  }
  return "nothing changed";
}

/**
 * Whether the leader's durability guard may change now (src/agent/migrate-consensus.ts setGuard;
 * `m`: the migration this leader runs, null: none). To etcd, the guard etcd holds after the switch
 * is the built-in one the commit writes beside the membership; a block stored in builtin only would
 * let the primary acknowledge writes on its own that the etcd successor of a dead leader never
 * hears of. So while it runs no new block is stored (the primary stays synchronous: writes wait),
 * and from the commit write on no change at all (one made after it would stay in builtin).
 */
export function guardChangeAllowed(m: Pick<LeaderState, "to" | "phase"> | null, block: boolean): boolean {
  if (m?.to !== "etcd") return true;
  return !block && m.phase !== "committing" && m.phase !== "done";
}

/**
 * Until when the migrating leader may act: to etcd, on its built-in lease until the key is taken,
 * then on the earlier of both (the key is legitimate only while the built-in lease is); to builtin,
 * on its built-in lease once a majority acknowledged the resumed term, else on the frozen etcd one.
 */
export function migratingLease(s: Pick<LeaderState, "to" | "phase">, builtinUntil: number | null, etcdUntil: number | null): number | null {
  if (s.to === "etcd") return s.phase === "open" ? builtinUntil : usableLease(builtinUntil, etcdUntil);
  if (s.phase === "open") return etcdUntil;
  return builtinUntil ?? etcdUntil;
}

/**
 * To builtin: the term the leader resumes in, above its own stored built-in term, its etcd term (a
 * create revision) and every voter's stored built-in term as reported at the epoch in force
 * (checkStart requires one from each). No voter then refuses it, and the restamped guard and
 * membership are newer than any built-in record a voter holds.
 */
export function resumeTerm(storedTerm: number, etcdTerm: number, voterTerms: readonly number[]): number {
  return Math.max(storedTerm, etcdTerm, ...voterTerms) + 1;
}

/**
 * To builtin: the durability guard and membership the leader resumes with, stamped in the resumed
 * term T (as a built-in leader does when elected). Under etcd they were stamped with the key's create
 * revision, which can be below the built-in terms stored before the cluster moved to etcd; a voter
 * still holding such an older record would otherwise win the comparison (term first) in a later
 * built-in election and drop a block the etcd leader set. Members store them with the switch.
 */
export function resumedRecords(guard: Guard | null, membership: Membership, term: number): { guard: Guard; membership: Membership } {
  return {
    // The timeline reservation goes along (core/timelines.ts): it only ever grows.
    guard: withTimeline<Guard>({ term, seq: (guard?.seq ?? 0) + 1, block: guard?.block ?? false, holder: guard?.holder ?? null, floor: guard?.floor ?? null }, guard?.timeline),
    membership: restamp(membership, term),
  };
}

export function startPlan(to: Backend, epoch: number, term = 0, giveUpAt?: number): { state: LeaderState; actions: LeaderAction[] } {
  return { state: { to, epoch, phase: "open", acked: [], term, reason: "", ...(giveUpAt !== undefined ? { giveUpAt } : {}) }, actions: [{ do: "open", recordBelow: epoch }] };
}

/**
 * One observation → the next state and what to do, in order. `voters` includes `self`. To etcd the
 * commit point is a majority of voters storing etcd (the leader among them once it persists): no
 * built-in election can succeed after it. To builtin it is a built-in lease on the resumed term.
 */
export function leaderStep(s: LeaderState, obs: LeaderObs, self: string, voters: readonly string[]): { state: LeaderState; actions: LeaderAction[] } {
  if (s.phase === "done" || s.phase === "aborted") return { state: s, actions: [] };
  const others = voters.filter((v) => v !== self);
  const abort = (reason: string, revoke: boolean): { state: LeaderState; actions: LeaderAction[] } => {
    // To etcd after switches went out: members may have stored etcd; bring them back by a higher epoch.
    if (s.to === "etcd" && s.phase === "switch") {
      return { state: { ...s, phase: "aborted", reason, rolledBack: true }, actions: [{ do: "fence", revoke }, rollBack(s.epoch)] };
    }
    return { state: { ...s, phase: "aborted", reason, abortedIn: s.phase }, actions: [{ do: "fence", revoke }] };
  };
  const expired = (o: Leases, phase: Phase) => {
    const until = migratingLease({ to: s.to, phase }, o.builtinUntil, o.etcdUntil);
    return until === null || until <= o.now;
  };
  switch (obs.type) {
    case "opened":
      if (s.phase !== "open") return { state: s, actions: [] };
      if (!obs.ok) {
        // To builtin, fence only once this node stopped its etcd backend (it may act until its frozen deadline only).
        const fence = s.to === "builtin" && obs.stopped === true;
        return { state: { ...s, phase: "aborted", reason: obs.detail ?? "could not open the target backend" }, actions: fence ? [{ do: "fence", revoke: false }] : [] };
      }
      // The lease may have ended while the open ran (a resign, a transfer): nobody is told to switch then.
      if (expired(obs, s.to === "etcd" ? "switch" : "open")) {
        const a = abort("the lease ran out while the target backend was opened", s.to === "etcd");
        // To builtin the open closed etcd: no way back (review: answered "nothing changed").
        return s.to === "builtin" ? { ...a, state: { ...a.state, closed: true } } : a;
      }
      return { state: { ...s, phase: "switch" }, actions: [{ do: "send-switch", to: others }] };
    case "ack": {
      if (s.phase !== "switch" || obs.epoch !== s.epoch || !others.includes(obs.from) || s.acked.includes(obs.from)) return { state: s, actions: [] };
      if (s.to === "etcd" && expired(obs, "switch")) return abort("the lease ran out before a majority stored etcd", true);
      const acked = [...s.acked, obs.from].sort();
      const next = { ...s, acked };
      if (s.to === "etcd" && acked.length + 1 >= majority(voters.length)) {
        return { state: { ...next, phase: "committing" }, actions: [{ do: "commit-etcd" }] };
      }
      return { state: next, actions: [] };
    }
    case "committed":
      if (s.phase !== "committing") return { state: s, actions: [] };
      if (obs.ok) return { state: { ...s, phase: "done" }, actions: [{ do: "persist-and-swap", inForce: { backend: "etcd", epoch: s.epoch } }] };
      // A majority stored etcd: no built-in election can succeed. Etcd still pending: come back by a
      // higher epoch. Unknown: keep the key's lease running out by itself; the majority decides.
      if (obs.pending) return { state: { ...s, phase: "aborted", reason: obs.detail ?? "the commit was not written", rolledBack: true }, actions: [{ do: "fence", revoke: true }, rollBack(s.epoch)] };
      return { state: { ...s, phase: "aborted", reason: obs.detail ?? "the commit's outcome is unknown", unknown: true }, actions: [{ do: "fence", revoke: false }] };
    case "tick": {
      const { now, builtinUntil, etcdUntil } = obs;
      if (s.phase === "committing") return { state: s, actions: [] }; // the commit write's answer decides
      if (s.to === "etcd") {
        // Before the commit the built-in lease is what makes the etcd key legitimate: both must hold.
        const until = migratingLease(s, builtinUntil, etcdUntil);
        if (until === null || until <= now) return abort("the lease ran out before a majority stored etcd", s.phase === "switch");
        // Given up as the lease running out is: fenced, the key given back, rolled back at epoch + 1.
        if (s.phase === "switch" && s.giveUpAt !== undefined && now >= s.giveUpAt) {
          return abort(`no majority of voters stored etcd in time (acknowledged by ${s.acked.length} of ${others.length} others; a voter that runs an earlier version drops the switch)`, true);
        }
        const resend = others.filter((v) => !s.acked.includes(v));
        return { state: s, actions: s.phase === "switch" && resend.length > 0 ? [{ do: "send-switch", to: resend }] : [] };
      }
      if (s.phase === "open") return { state: s, actions: [] };
      if (builtinUntil !== null && builtinUntil > now) {
        return { state: { ...s, phase: "done" }, actions: [{ do: "release-etcd" }] };
      }
      const until = migratingLease(s, builtinUntil, etcdUntil);
      if (until === null || until <= now) return abort("the frozen etcd lease ran out before a built-in majority acknowledged", false);
      const resend = others.filter((v) => !s.acked.includes(v));
      return { state: s, actions: resend.length > 0 ? [{ do: "send-switch", to: resend }] : [] };
    }
  }
}

/** The roll-back of a migration to etcd at `epoch`: etcd's record {etcd, epoch} becomes {builtin, epoch + 1}. */
function rollBack(epoch: number): LeaderAction {
  return { do: "roll-back", inForce: { backend: "builtin", epoch: epoch + 1 }, ifRecord: { backend: "etcd", epoch } };
}

// ------------------------------------------------------------------ a member

export interface SwitchMsg {
  to: Backend;
  epoch: number;
  leader: string;
  /** To builtin: the leader's resumed term (the member stores "term, voted for leader"). */
  term?: number;
  /** To builtin: the resumed guard and membership (resumedRecords), stored with "term, voted for leader". */
  resumed?: { guard: Guard; membership: Membership };
  /** The sender's term in the backend being left (built-in term, or the etcd key's create revision). */
  leaderTerm: number;
}

export interface MemberLocal {
  inForce: InForce;
  /** Its stored built-in term. */
  term: number;
  /** The leader this member follows in the backend in force, and at which term (null: none). */
  follows: { leader: string | null; term: number };
  /** The voters of the membership this member holds. */
  voters: readonly string[];
}

export type MemberDecision =
  /** Refused: the member's built-in term and epoch go back with the refusal, so the leader learns them. */
  | { accept: false; reason: string; term: number; epoch: number }
  | {
      accept: true;
      /** Persist first (both files when `election` is set), then stop the old backend, then start the new one. */
      inForce: InForce;
      election: { term: number; votedFor: string; resumed?: { guard: Guard; membership: Membership } } | null;
      /** No vote, campaign or published final position before this (own monotonic clock). */
      holdUntil: number;
      /** Already there: only acknowledge again. */
      again: boolean;
    };

/** A member told to switch by the migrating leader. */
export function onSwitch(local: MemberLocal, m: SwitchMsg, now: number, t: MigrateTimers): MemberDecision {
  if (m.epoch === local.inForce.epoch && m.to === local.inForce.backend) return { accept: true, inForce: local.inForce, election: null, holdUntil: now, again: true };
  if (m.epoch <= local.inForce.epoch) return { accept: false, reason: `epoch ${m.epoch} is not above this node's ${local.inForce.epoch}`, term: local.term, epoch: local.inForce.epoch };
  // Only from the leader this member follows, at the term it follows it in: a deposed leader's late
  // switch (its migration aborted, another leads now) is refused.
  if (!local.voters.includes(m.leader)) return { accept: false, reason: `${m.leader} is not a voter`, term: local.term, epoch: local.inForce.epoch };
  if (local.follows.leader !== m.leader || local.follows.term !== m.leaderTerm) {
    return { accept: false, reason: `this node follows ${local.follows.leader ?? "no leader"} at term ${local.follows.term}, not ${m.leader} at term ${m.leaderTerm}`, term: local.term, epoch: local.inForce.epoch };
  }
  if (m.to === "builtin" && (m.term === undefined || m.term <= local.term)) {
    return { accept: false, reason: `term ${m.term ?? "?"} is not above this node's built-in term ${local.term}`, term: local.term, epoch: local.inForce.epoch };
  }
  return {
    accept: true, inForce: { backend: m.to, epoch: m.epoch }, again: false,
    election: m.to === "builtin" ? { term: m.term!, votedFor: m.leader, ...(m.resumed ? { resumed: m.resumed } : {}) } : null,
    holdUntil: now + leaveHoldMs(local.inForce.backend, t),
  };
}

/** A member that hears of a higher epoch (it was down or missed the switch) adopts it, with the same hold; only from a voter. */
export function onHeard(local: Pick<MemberLocal, "inForce" | "voters">, heard: InForce, now: number, t: MigrateTimers, from: string): Adoption | null {
  if (!local.voters.includes(from)) return null;
  return onRecord(local.inForce, heard, now, t);
}

/**
 * etcd's record of the cluster's backend read by a node: a decision above the node's epoch is
 * adopted like one heard from a voter (the record is where every decision is written first). A node
 * that never stored a migration's record (added, or a new state_dir, while the cluster ran on etcd)
 * has no voters to hear from: this is how it joins.
 */
export function onRecord(inForce: InForce, heard: InForce, now: number, t: MigrateTimers): Adoption | null {
  if (heard.epoch <= inForce.epoch) return null;
  if (heard.backend === inForce.backend) return { inForce: heard, holdUntil: now, fenceFirst: false, dropOwnEtcdKey: false };
  return { inForce: heard, holdUntil: now + leaveHoldMs(inForce.backend, t), fenceFirst: true, dropOwnEtcdKey: heard.backend === "etcd" };
}

/**
 * Whether a node reads etcd's record at start to learn that the cluster moved (a node joining a
 * migrated cluster): only a node that has stored neither a migration's record nor a built-in
 * membership (a new node or a new state_dir), with etcd configured and builtin in its config. A
 * voter of a running built-in cluster always holds a membership: it learns of a migration from its
 * peers, never from a record in etcd it cannot tell apart from a stale one.
 */
export function joinsFromRecord(f: { stored: InForce | null; etcdConfigured: boolean; configured: Backend; hasMembership: boolean }): boolean {
  return f.stored === null && !f.hasMembership && f.etcdConfigured && f.configured === "builtin";
}

/**
 * A joining node read etcd's record (null: none) and whether etcd's membership key holds a
 * committed membership: {etcd, e} is adopted only once committed (a pending one is a migration not
 * carried out yet, or one whose open lost its answer: "wait" and read again); {builtin, e} as onRecord.
 * null: nothing to adopt, the join is over.
 */
export function onJoinRecord(inForce: InForce, rec: InForce | null, etcdCommitted: boolean, now: number, t: MigrateTimers): Adoption | "wait" | null {
  if (!rec) return null;
  if (rec.backend === "etcd" && rec.epoch > inForce.epoch && !etcdCommitted) return "wait";
  return onRecord(inForce, rec, now, t);
}

/** What etcd's keys show to a leader whose migration to etcd ended without settling etcd's record. */
export interface OpenSeen {
  record: InForce | null;
  /** The membership key's pending record (epoch and migrating leader), if it holds one. */
  pending: { epoch: number; leader: string } | null;
  /** The leader key is bound to this node's id. */
  ownKey: boolean;
}

export type OpenSettle =
  /** The open applied and was not committed: give back the key (first: no commit can apply after), then roll back through the record. */
  | { do: "roll-back"; release: boolean; inForce: InForce; ifRecord: InForce }
  /** The open has not applied: the record is rewritten as {builtin, epoch} (changing it voids the open, whose transaction requires it unchanged). */
  | { do: "void"; inForce: InForce }
  /** etcd's record holds this epoch's or a later decision carried out: nothing to write. */
  | { do: "done"; inForce: InForce };

/**
 * A migration to etcd at `epoch` that ended aborted with its open applied or possibly applied (an
 * open whose answer was lost, an abort before switches went out, a roll-back not written): settle
 * etcd's record so it ends as a decision carried out, never as a pending {etcd, epoch} for good.
 */
export function settleOpen(epoch: number, self: string, seen: OpenSeen): OpenSettle {
  const rec = seen.record;
  if (rec && rec.epoch > epoch) return { do: "done", inForce: rec };
  if (rec && rec.epoch === epoch) {
    if (rec.backend === "etcd" && seen.pending?.epoch === epoch && seen.pending.leader === self) {
      const rb = rollBack(epoch) as Extract<LeaderAction, { do: "roll-back" }>;
      return { do: "roll-back", release: seen.ownKey, inForce: rb.inForce, ifRecord: rb.ifRecord };
    }
    return { do: "done", inForce: rec };
  }
  return { do: "void", inForce: { backend: "builtin", epoch } };
}

export interface Adoption {
  inForce: InForce;
  holdUntil: number;
  /** It may lead in the backend it leaves: stop writes (and give up that leadership) before switching. */
  fenceFirst: boolean;
  /**
   * Delete an etcd leader key bound to this node's id before running etcd: it can only be left from
   * a migration this node started and did not finish, and it was legitimate only while that node
   * held its built-in lease (an etcd agent otherwise resumes a key with its own id).
   */
  dropOwnEtcdKey: boolean;
}

/** Whether a member may vote, campaign or publish a final position now. */
export function mayElect(holdUntil: number, now: number): boolean {
  return now >= holdUntil;
}
