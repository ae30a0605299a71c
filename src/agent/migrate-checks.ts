// The periodic etcd checks of a live migration between the built-in election and etcd, run from the
// driver's housekeeping step (src/agent/migrate-driver.ts step()): a node that never stored a
// migration's record nor a membership reads etcd's record (joinFromRecord); a migration to etcd that
// aborted with its open applied or possibly applied has etcd's record settled (settleOpening); a
// close of etcd with an unknown outcome is read back until etcd's keys settle it (settleClose); on
// etcd with no membership, a migration whose leader died is found in etcd's record (checkClosed).
// It owns what is left to settle (joining, opening, closing, handed over by the leader's abort in
// src/agent/migrate-leader.ts), when each check last ran, which are queued, and the last warning.
import * as M from "../core/consensus-migrate.ts";
import type { MigrateDeps, MigrateHost } from "./migrate-driver.ts";
import * as L from "./migrate-leader-etcd.ts";

/** How often a periodic check runs (settleClose aside). */
const CHECK_EVERY_MS = 2000;
/** How often a close with an unknown outcome is read back (settleClose). */
const CLOSING_EVERY_MS = 500;

export class MigrateChecks {
  private readonly d: MigrateDeps;
  private lastClosedCheck = -Infinity;
  /** A close of etcd whose outcome is unknown (or applied without builtin stored here): its epoch and the key's term. */
  private closing: L.Closing | null = null;
  /** A migration to etcd (its epoch) that aborted with its open applied or possibly applied, etcd's record not yet settled (settleOpening). */
  private opening: number | null = null;
  private lastOpenCheck = -Infinity;
  /** The last warning of a periodic check (logged once until it changes). */
  private lastNote = "";
  /** The periodic checks queued or running: one of a kind at a time (a blackholed etcd must not grow the chain). */
  private readonly checking = new Set<"join" | "open" | "closed">();

  /** `joining`: no consensus.json at start and etcd configured: etcd's record not read yet (joinFromRecord). */
  constructor(private readonly h: MigrateHost, private joining: boolean) {
    this.d = h.d;
  }

  /** The leader's migration to etcd at `epoch` aborted with its open applied or possibly applied. */
  settleOpenLater(epoch: number): void {
    this.opening = epoch;
  }

  /** The leader's migration to builtin aborted after a close whose outcome is unknown: out and fenced until settled. */
  settleCloseLater(c: L.Closing): void {
    this.closing = c;
  }

  closingUnsettled(): boolean {
    return this.closing !== null;
  }

  /** Queues the checks that are due (none while this node runs a migration). */
  step(now: number): void {
    const running = this.h.running();
    if (this.joining && !running && !this.checking.has("join") && now - this.lastClosedCheck >= CHECK_EVERY_MS) {
      this.lastClosedCheck = now;
      this.check("join", () => this.joinFromRecord());
    }
    if (this.opening !== null && !running && !this.checking.has("open") && now - this.lastOpenCheck >= CHECK_EVERY_MS) {
      this.lastOpenCheck = now;
      const epoch = this.opening;
      this.check("open", () => this.settleOpening(epoch));
    }
    const every = this.closing ? CLOSING_EVERY_MS : CHECK_EVERY_MS;
    if (this.h.inForceNow().backend === "etcd" && !running && !this.checking.has("closed") && (this.closing || this.d.consensus.status().membership === null) && now - this.lastClosedCheck >= every) {
      this.lastClosedCheck = now;
      this.check("closed", () => (this.closing ? this.settleClose(this.closing) : this.checkClosed()));
    }
  }

  /** A periodic check's warning: logged once, not every 2 s, until it changes. */
  note(msg: string): void {
    if (msg !== this.lastNote) this.d.log.warn(msg);
    this.lastNote = msg;
  }

  /** A periodic check, queued only when none of its kind is queued or running (each may take k × request_timeout_ms). */
  private check(kind: "join" | "open" | "closed", fn: () => Promise<void>): void {
    this.checking.add(kind);
    this.h.serial(() => fn().finally(() => this.checking.delete(kind)));
  }

  /**
   * On etcd with no membership there: a leader that closed etcd for a migration to builtin may have
   * died before anyone heard of it (etcd's record of the close names the epoch: adopt it), or one
   * migrating to etcd died before the commit (roll it back once its key is gone, then adopt that).
   */
  private async checkClosed(): Promise<void> {
    const { migrateEtcd } = await this.h.etcdModule();
    const { client, keys } = this.h.etcd();
    const rolled = await migrateEtcd.rollBackPending(client, keys).catch(() => false);
    if (rolled) this.d.log.warn("etcd was left pending by a migration whose leader is gone: rolled back to builtin");
    const rec = await migrateEtcd.readRecord(client, keys).catch(() => null);
    if (rec?.backend === "builtin" && rec.epoch > this.h.inForceNow().epoch) await this.h.onHeard(rec.leader ?? this.d.self, { backend: "builtin", epoch: rec.epoch });
  }

  /** A close with an unknown outcome: out and fenced until etcd's keys settle it (migrate-leader-etcd.ts settleClose). */
  private async settleClose(c: L.Closing): Promise<void> {
    if (this.h.inForceNow().epoch >= c.epoch) return void (this.closing = null); // adopted from a peer meanwhile
    const out = await L.settleClose(this.h, c);
    if (out === "unknown") return;
    this.lastNote = "";
    if (out === "open") {
      this.closing = null;
      this.d.log.warn(`etcd was not closed (epoch ${c.epoch}) and can no longer be: running on etcd again`);
      return this.d.consensus.replace("etcd", -Infinity);
    }
    await this.h.onHeard(out.leader ?? this.d.self, { backend: out.backend, epoch: out.epoch });
    if (this.h.inForceNow().epoch >= c.epoch) this.closing = null;
  }

  /**
   * A node that never stored a migration's record nor a membership adopts etcd's record once it reads
   * it with the membership committed (retried every 2 s until etcd answers and a pending one settles).
   */
  private async joinFromRecord(): Promise<void> {
    if (!this.joining || this.h.storedRecord() !== null || this.d.store.get().membership !== null) return void (this.joining = false);
    const { migrateEtcd } = await this.h.etcdModule();
    let a: ReturnType<typeof M.onJoinRecord>, rec: M.InForce | null;
    try {
      const k = await migrateEtcd.readMigrationKeys(this.h.etcd().client, this.h.etcd().keys, this.d.self);
      rec = k.seen.record;
      a = M.onJoinRecord(this.h.inForceNow(), rec, k.committed, this.h.clock(), this.h.timers);
    } catch (e) {
      return this.note(`etcd: cannot read the record of this cluster's backend (a node with no ${this.h.recordFile} checks whether the cluster moved to etcd): ${(e as Error).message}; trying every 2 s`);
    }
    if (a === "wait") return this.note(`etcd's record names etcd (epoch ${rec!.epoch}) with its membership not committed (a migration not carried out): not joining it; reading again every 2 s`);
    if (rec && a) {
      await this.h.adopt(a, rec, "etcd's record (this node had stored none)");
      // The adoption stopped short (etcd stopped answering: its backend stays stopped): read again at
      // the next check, not done (review: marked done, the node stayed without consensus until restarted).
      if (this.h.inForceNow().epoch < rec.epoch) return;
    }
    this.joining = false;
    this.lastNote = "";
  }

  /** etcd's record of a migration to etcd this node aborted after its open applied or may have: settled, then stored like the roll-back step. */
  private async settleOpening(epoch: number): Promise<void> {
    if (this.h.running() || this.opening !== epoch) return;
    const out = await L.settleOpen(this.h, epoch);
    if (out === "unknown" || this.opening !== epoch) return;
    this.opening = null;
    this.lastNote = "";
    this.h.learnEpoch(out.epoch);
    this.d.log.info(`etcd's record after the aborted migration to etcd (epoch ${epoch}) is settled: ${out.backend} at epoch ${out.epoch}`);
    if (out.backend === "builtin" && this.h.inForceNow().backend === "builtin" && out.epoch > this.h.inForceNow().epoch) {
      this.h.persist(out);
      this.h.broadcastEpoch();
    }
  }
}
