// The migrating leader's run of a live migration between the built-in election and etcd: starts the
// pure plan (src/core/consensus-migrate.ts) on the leader, steps it on every tick and acknowledgement,
// carries out its actions in the order it gives and answers the operator once it committed or
// aborted. It owns the running migration (`Running`), its tick timer and the takeover watch after
// the swap (fence if the new backend does not lead by the migration's lease). The etcd side of each
// step is src/agent/migrate-leader-etcd.ts; the backend record, the epochs heard and the mesh
// messages are the driver's (src/agent/migrate-driver.ts); what an abort leaves unsettled in etcd
// is handed to the periodic checks (src/agent/migrate-checks.ts).
import type { Guard, Membership } from "../core/messages.ts";
import * as M from "../core/consensus-migrate.ts";
import type { ActionResult } from "../api/actions-contract.ts";
import type { MigrateDeps, MigrateHost } from "./migrate-driver.ts";
import type { MigrateChecks } from "./migrate-checks.ts";
import * as L from "./migrate-leader-etcd.ts";
import { etcdUnfit } from "../consensus/migrate-state.ts";

const TICK_MS = 100;
/** A migration that neither committed nor aborted by then is reported as still running. */
const ANSWER_MS = 30_000;
/** A migration to etcd that no majority of voters acknowledged by then is aborted (core LeaderState giveUpAt), answered before ANSWER_MS. */
const GIVE_UP_MS = 20_000;

export interface Running {
  state: M.LeaderState;
  /** The backend in force when it started (to builtin: etcd's record the close replaces). */
  from: M.InForce;
  voters: string[];
  /** To etcd: the lease taken for the key, and its local deadline; to builtin: the key's etcd term and lease. */
  etcd: { leaseId: string; term: number } | null;
  etcdUntil: number | null;
  timer: ReturnType<typeof setInterval> | undefined;
  /** When the migration last sent a renewal of its etcd lease (to etcd, before the commit). */
  renewedAt: number;
  /** The leader's term in the backend it leaves, carried in every switch. */
  leaderTerm: number;
  /** The membership at the start: written into etcd at the commit. */
  membership: Membership | null;
  /** To builtin: the guard and membership stamped in the resumed term (carried in every switch). */
  resumed?: { guard: Guard; membership: Membership };
  /**
   * To builtin: the close was sent and etcd did not say it failed (applied, or unknown): if the plan
   * aborts, this node stays stopped and fenced until etcd's keys settle it (MigrateChecks settleClose).
   */
  closeSent?: boolean;
  /** To etcd: the open transaction was sent and not answered (it may have applied). */
  openSent?: boolean;
  /** SwitchableConsensus.resigns at the start: once it changes, the lease no longer counts. */
  resigns: number;
  /** An abort's fence could not confirm PostgreSQL stopped: the watchdog stops it at the lease's deadline. */
  fenceFailed?: boolean;
  answer: (r: ActionResult) => void;
}

export class MigrateLeader {
  private readonly d: MigrateDeps;
  private run: Running | null = null;
  private takeover: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly h: MigrateHost, private readonly checks: MigrateChecks) {
    this.d = h.d;
    this.d.consensus.migration = () => this.run?.state ?? null;
  }

  /** Whether this node runs a migration now. */
  running(): boolean {
    return this.run !== null;
  }

  stop(): void {
    clearInterval(this.run?.timer);
    clearTimeout(this.takeover);
  }

  /** On the leader: runs the plan; answers once it committed or aborted. */
  start(to: M.Backend): Promise<ActionResult> {
    if (this.run) return Promise.resolve({ status: 409, ok: false, message: `a migration to ${this.run.state.to} is running` });
    const c = this.d.consensus;
    const st = c.status();
    const lease = c.lease();
    const voters = st.membership?.voters ?? [];
    const r = M.checkStart(to, {
      self: this.d.self, inForce: this.h.inForceNow(), leading: lease !== null && lease.until > this.h.clock(), voters,
      connected: this.d.connected(), etcdConfigured: this.d.cfg.consensus.endpoints.length > 0, etcdUnfit: to === "etcd" ? etcdUnfit(this.d.cfg) : null, configured: this.d.cfg.consensus.backend,
      switchingOver: this.d.switchingOver?.() ?? false, allowed: this.d.cfg.consensus.allow_migration,
      knownEpoch: this.h.knownEpoch(), voterTerms: this.h.voterTerms(),
    });
    if ("refuse" in r) {
      const named = voters.reduce((m, id) => m.replaceAll(id, this.d.nameOf(id)), r.refuse); // voters by name, as the log names them
      return Promise.resolve({ status: 409, ok: false, message: `consensus migrate --to ${to}: ${named}` });
    }
    clearTimeout(this.takeover); // a previous migration's watch: this node leads now, so it is over
    const term = to === "builtin" ? M.resumeTerm(this.d.store.get().term, lease!.term, Object.values(this.h.voterTerms())) : 0;
    const plan = M.startPlan(to, r.epoch, term, to === "etcd" ? this.h.clock() + GIVE_UP_MS : undefined);
    this.d.log.info(`consensus migration to ${to} (epoch ${r.epoch}) started with voters ${voters.map(this.d.nameOf).join(", ")}`);
    return new Promise<ActionResult>((answer) => {
      const timeout = setTimeout(() => answer({ status: 504, ok: false, message: `the migration to ${to} is still running after ${ANSWER_MS / 1000} s: see the agent's log and /node` }), ANSWER_MS);
      this.run = {
        state: plan.state, from: { ...this.h.inForceNow() }, voters, etcd: null, etcdUntil: null, timer: undefined, renewedAt: this.h.clock(), leaderTerm: lease!.term,
        membership: st.membership, resigns: c.resigns, answer: (res) => (clearTimeout(timeout), answer(res)),
      };
      // A failure after the etcd backend stopped (to builtin) fences: the plan may not act past it.
      this.h.serial(() => this.carry(plan.actions).catch(async (e: Error) => this.observe({ type: "opened", ok: false, detail: e.message, stopped: c.innerStopped(), ...this.leases() })));
      this.run.timer = setInterval(() => this.h.serial(() => this.tick()), TICK_MS);
    });
  }

  /** A voter acknowledged the switch of `epoch` (ignored when no migration runs here). */
  acked(peer: string, epoch: number): void {
    if (this.run) this.h.serial(() => this.observe({ type: "ack", from: peer, epoch, ...this.leases() }));
  }

  /** The leases now, as the plan checks them; none once this node resigned during the migration. */
  private leases(): M.Leases {
    const r = this.run;
    const now = this.h.clock();
    if (!r) return { now, builtinUntil: null, etcdUntil: null };
    const resigned = this.d.consensus.resigns !== r.resigns;
    const builtinUntil = !resigned && (r.state.to === "etcd" || r.state.phase !== "open") ? (this.d.consensus.lease()?.until ?? null) : null;
    return { now, builtinUntil, etcdUntil: resigned ? null : r.etcdUntil };
  }

  private async tick(): Promise<void> {
    if (!this.run) return;
    await L.renewEtcd(this.h, this.run);
    await this.observe({ type: "tick", ...this.leases() });
  }

  private async observe(obs: M.LeaderObs): Promise<void> {
    const r = this.run;
    if (!r) return;
    const next = M.leaderStep(r.state, obs, this.d.self, r.voters);
    r.state = next.state;
    try {
      await this.carry(next.actions);
    } catch (e) {
      // An action could not be carried out (a record not stored): stop writes and give back what
      // this migration took, as the plan's own abort does; the members follow the epoch they stored.
      r.state = { ...r.state, phase: "aborted", reason: `${(e as Error).message}` };
      await this.carry([{ do: "fence", revoke: r.state.to === "etcd" }]).catch((e2: Error) => this.d.log.error(`consensus migration: ${e2.message}`));
    }
    if (r.state.phase === "done" || r.state.phase === "aborted") this.finish(r);
  }

  private finish(r: Running): void {
    clearInterval(r.timer);
    this.run = null;
    this.d.consensus.setCap(null);
    const { to, epoch, phase, reason } = r.state;
    if (phase === "done") {
      this.d.log.info(`consensus migration to ${to} (epoch ${epoch}) committed; this node runs on ${this.h.inForceNow().backend}`);
      this.h.broadcastEpoch();
      r.answer({ status: 200, ok: true, message: `${M.outcome(r.state)}; every voter stores it (those that missed the switch adopt it when they hear the epoch)` });
    } else {
      this.d.log.warn(`consensus migration to ${to} (epoch ${epoch}) aborted: ${reason}`);
      // Stopped before anyone was told to switch (to builtin, etcd not closed): run the backend in force
      // again. A close that applied or may have: never back on etcd before etcd's keys settle it.
      // To etcd with the open applied or possibly applied and no roll-back stored: etcd's record is settled (settleOpening).
      if (r.state.to === "etcd" && (r.openSent || r.etcd) && this.h.inForceNow().epoch < epoch) this.checks.settleOpenLater(epoch);
      if (r.state.to === "builtin" && r.closeSent && this.h.inForceNow().epoch < epoch && r.etcd) {
        // A fence that could not stop PostgreSQL leaves it to the watchdog at the etcd lease's deadline:
        // the key is not given back before that and the fence budget (review: given back within 500 ms,
        // the others took it while the old primary still wrote, as a resign's release once did).
        const notBefore = r.fenceFailed && r.etcdUntil !== null ? r.etcdUntil + this.h.timers.fenceMs : -Infinity;
        this.checks.settleCloseLater({ epoch, etcd: r.etcd, notBefore });
        this.d.log.warn(`etcd may be closed (epoch ${epoch}): this node stays out and fenced until etcd says whether the close applied`);
      } else if (this.d.consensus.innerStopped()) this.d.consensus.replace(this.h.inForceNow().backend, -Infinity);
      const closing = this.checks.closingUnsettled();
      const where = closing ? `etcd may be closed: this node stays fenced and out until etcd answers whether the close applied (then it runs on builtin at epoch ${epoch}, or on etcd again)` : `this node runs on ${this.h.inForceNow().backend} (epoch ${this.h.inForceNow().epoch})`;
      r.answer({ status: 503, ok: false, message: `consensus migrate --to ${to} aborted: ${reason}; ${closing ? "" : `${M.outcome(r.state)}; `}${where}` });
    }
  }

  private async carry(actions: M.LeaderAction[]): Promise<void> {
    for (const a of actions) {
      const r = this.run;
      if (!r) return;
      switch (a.do) {
        case "open": {
          const ok = r.state.to === "etcd" ? await L.openEtcd(this.h, r, (e) => this.h.learnEpoch(e)) : await L.openBuiltin(this.h, r);
          const stopped = this.d.consensus.innerStopped();
          await this.observe(ok === true ? { type: "opened", ok: true, ...this.leases() } : { type: "opened", ok: false, detail: ok, stopped, ...this.leases() });
          return; // observe carried out what follows
        }
        case "send-switch":
          for (const to of a.to) {
            const back = r.state.to === "builtin" ? { term: r.state.term, ...(r.resumed ? { resumed: r.resumed } : {}) } : {};
            this.d.send(to, { t: "migrate-switch", to: r.state.to, epoch: r.state.epoch, leader: this.d.self, leaderTerm: r.leaderTerm, ...back });
          }
          break;
        case "commit-etcd":
          await this.observe(await L.commitEtcd(this.h, r));
          return; // observe carried out what follows
        case "roll-back":
          // A decision like any other: taken in etcd's record first, so its epoch is used once.
          if (await L.rollBack(this.h, a.inForce, a.ifRecord)) {
            this.h.persist(a.inForce);
            this.h.broadcastEpoch();
          } else r.state = { ...r.state, reason: `${r.state.reason}; the roll-back could not be written to etcd's record, so this node did not store it (the members that stored etcd roll it back there once the key's lease ran out)` };
          break;
        case "persist-and-swap": {
          const until = M.migratingLease(r.state, this.d.consensus.lease()?.until ?? null, r.etcdUntil) ?? this.h.clock();
          this.h.persist(a.inForce);
          this.d.consensus.setCap(null);
          // The etcd backend resumes the key bound to this node's id on the migration's lease; the
          // built-in election no longer fences, so fence here if that has not happened by the deadline.
          this.d.consensus.replace(a.inForce.backend, -Infinity);
          this.takeover = setTimeout(() => this.watchTakeover(until), 0);
          break;
        }
        case "release-etcd": {
          const e = r.etcd!;
          const { migrateEtcd } = await this.h.etcdModule();
          await migrateEtcd.releaseEtcd(this.h.etcd().client, this.h.etcd().keys, { term: e.term, leaseId: e.leaseId })
            .catch((err: Error) => this.d.log.warn(`could not release the etcd leader key (its lease runs out by itself): ${err.message}`));
          break;
        }
        case "fence":
          if (!(await this.d.fence(`consensus migration to ${r.state.to} aborted: ${r.state.reason}`))) r.fenceFailed = true;
          if (a.revoke && r.etcd) {
            const { migrateEtcd } = await this.h.etcdModule();
            await migrateEtcd.releaseEtcd(this.h.etcd().client, this.h.etcd().keys, r.etcd).catch((err: Error) => this.d.log.warn(`etcd release: ${err.message}`));
          }
          await this.d.consensus.resign(`consensus migration aborted: ${r.state.reason}`);
          break;
      }
    }
  }

  /** Until the etcd backend leads (then it fences on its own deadline), or the deadline passed: then fence. */
  private watchTakeover(until: number): void {
    clearTimeout(this.takeover);
    if (this.d.consensus.lease() !== null) return;
    if (this.h.clock() >= until) return void this.d.fence("the etcd backend did not resume the leader key before the migration's lease ran out");
    this.takeover = setTimeout(() => this.watchTakeover(until), Math.min(TICK_MS / 2, Math.max(0, until - this.h.clock())));
  }
}
