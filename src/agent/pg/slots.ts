// WAL retention and its consumers, every round on a healthy server: on the primary one physical
// slot per standby member; the archive (src/backup) and the permanent slots (src/slots) on every node.
import { ArchiveKeeper } from "../../backup/keeper.ts";
import { ArchiverWatch } from "../../backup/archiver-watch.ts";
import { PermanentSlots, type PermanentReport } from "../../slots/permanent.ts";
import { dropSlot, ensureSlot, listSlots } from "../../postgres/index.ts";
import { DbTimeoutError } from "../../postgres/sql.ts";
import { memberListDue, memberSlotNames, planMemberSlots } from "../../slots/members.ts";
import { OWN_SLOT_PREFIX } from "../../slots/plan.ts";
import { slotFor } from "./context.ts";
import type { PgHost } from "./host.ts";

/** Member slots made for a promotion are kept at least this long on a standby (a switchover's old primary resigns at most 8 s after the target caught up: actions.ts). */
const PREPARED_KEEP_MS = 60_000;
/** A primary whose member slots match its members lists them once every this many rounds (src/slots/members.ts). */
const MEMBER_LIST_EVERY = 4;

export class SlotKeeper {
  /** Slots this primary holds for its members (reported). */
  slots: string[] = [];
  /** Retained WAL per slot (bytes), for /metrics. */
  slotBytes: Record<string, number> = {};
  private readonly droppedFor = new Set<string>();
  /**
   * This server may hold member slots while it runs as a standby: it ran as the primary (a
   * switchover's old primary keeps its slots through the clean stop and follows with them), or
   * it made them for a promotion that did not follow (prepareForPromotion), or a predecessor
   * agent did either (true at start).
   */
  private mayHoldMemberSlots = true;
  /** When prepareForPromotion last made slots (clock ms), -Infinity: not in this run. */
  private preparedAt = -Infinity;
  /** The members (their slot names) when the member slots were last listed, and the rounds skipped since. */
  private listedFor: string[] | null = null;
  private skipped = 0;

  private readonly archive: ArchiveKeeper;
  private readonly permanent: PermanentSlots;
  /** The archiver's state, read from the round's upkeep (durability.ts), on every node. */
  readonly archiver: ArchiverWatch;

  constructor(private readonly h: PgHost) {
    this.archiver = new ArchiverWatch(h.cfg, h.log, () => h.clock.now());
    this.archive = new ArchiveKeeper(h.cfg, h.log, () => h.ctx.secrets()?.ca, h.ctx.scheduledBackup ? (type) => h.ctx.scheduledBackup!(type) : null);
    this.permanent = new PermanentSlots({
      cfg: h.cfg, socketDir: h.socketDir, node: h.node, log: h.log,
      localDb: () => h.localDb(),
      primarySlots: () => {
        const l = h.ctx.leaderPg();
        return l && l.report.up && l.report.inRecovery === false ? (l.report.permanent ?? []) : null;
      },
      restartStandby: async (whileStopped) => {
        await h.stopServer("fast", 60);
        try {
          await whileStopped?.();
        } finally {
          await h.startServer();
        }
      },
    });
  }

  /** The agent stops (the archive keeper's pgBackRest TLS server). */
  close(): Promise<void> {
    return this.archive.close();
  }

  /** Permanent slots this primary reports (src/slots/permanent.ts). */
  get permanentReport(): PermanentReport[] {
    return this.permanent.report;
  }

  /**
   * Every round on a server that answers: the primary's member slots, then archive and permanent
   * slots. `present`: the slots the round's probe found (all of them, any type).
   */
  async maintain(primary = true, present?: readonly { name: string; type: string }[]): Promise<void> {
    if (primary) await this.memberSlotsIfDue(present);
    else {
      this.listedFor = null; // a primary again lists in its first round (mayHoldMemberSlots, slotBytes)
      if (this.mayHoldMemberSlots) await this.dropStandbyMemberSlots();
    }
    // Archive and permanent slots never fail the round: their trouble is logged (once per message).
    const systemId = this.h.ctx.secrets()?.systemId;
    if (systemId) await this.archive.maintain(primary, systemId).catch((e: Error) => this.failed("archive", e));
    await this.permanent.maintain(primary).catch((e: Error) => this.failed("permanent slots", e));
  }

  /**
   * Right before this standby is promoted (a switchover's target once it holds the final WAL, and
   * every promotion): the slot of every other member, which the new primary would otherwise create
   * only in its first round after the promotion. The members re-point here as soon as they follow
   * this leader, mostly while the promotion is under way: without their slot each attempt is
   * refused ("replication slot does not exist") and retried every wal_retrieve_retry_interval, and
   * the new primary's first synchronous commit waits for that. With it they stream from this
   * server already (cascading) and follow it onto the new timeline. A physical slot may be made on
   * a standby; it starts at the last restartpoint's redo point. Best effort: a failure is logged
   * and the promotion goes on (the first round after it creates what is missing, as before).
   */
  async prepareForPromotion(timeoutMs: number, before: "the promotion" | "pre_promote" = "the promotion"): Promise<void> {
    const h = this.h;
    this.listedFor = null; // the promoted server's first round lists its member slots
    const made: string[] = [];
    const end = h.clock.now() + timeoutMs;
    try {
      for (const id of h.ctx.standbyMembers()) {
        const left = end - h.clock.now();
        if (left <= 0) throw new Error(`not done within ${timeoutMs} ms`);
        if (await ensureSlot(h.localDb(), slotFor(id), left)) made.push(slotFor(id));
      }
    } catch (e) {
      h.log.warn(`replication slots before ${before}: ${(e as Error).message} (created after the promotion instead)`);
    }
    if (made.length === 0) return;
    this.mayHoldMemberSlots = true;
    this.preparedAt = h.clock.now();
    h.log.info(`created replication slot(s) ${made.join(", ")} before ${before}`);
  }

  /**
   * Member slots on a standby hold WAL here for good (restartpoints keep what a slot needs): those
   * of a former primary that follows another one (a switchover's old primary), or made for a
   * promotion that did not follow (the switchover was aborted, another node leads). Dropped once
   * another node's primary runs, and not within PREPARED_KEEP_MS of making them: a switchover's
   * old primary reports its stopped server as a running primary until it resigns (its rounds are
   * held). Only inactive ones: pgherd streams only from the primary, so an active one is a
   * consumer this node must not cut off (looked at again next time).
   */
  private async dropStandbyMemberSlots(): Promise<void> {
    const h = this.h;
    const l = h.ctx.leaderPg();
    if (!l || !l.report.up || l.report.inRecovery !== false || h.clock.now() - this.preparedAt < PREPARED_KEEP_MS) return;
    let inUse = false;
    for (const slot of await listSlots(h.localDb())) {
      if (!slot.name.startsWith("pgherd_")) continue;
      if (slot.active) inUse = true;
      else {
        h.log.warn(`dropping replication slot ${slot.name} on this standby (holds ${slot.retainedBytes ?? 0} bytes of WAL): the primary runs at ${l.addr}`);
        await dropSlot(h.localDb(), slot.name);
      }
    }
    this.mayHoldMemberSlots = inUse;
  }

  private lastFailure = "";

  private failed(what: string, e: Error): void {
    if (e instanceof DbTimeoutError) throw e; // the round's upkeep ends (durability.ts)
    const line = `${what}: ${e.message}`;
    if (line !== this.lastFailure) this.h.log.error(line);
    this.lastFailure = line;
  }

  /** The member slots, listed when memberListDue (src/slots/members.ts) says so. */
  private async memberSlotsIfDue(present?: readonly { name: string; type: string }[]): Promise<void> {
    this.mayHoldMemberSlots = true; // a primary may hold them whether or not this round lists
    const wanted = [...this.h.ctx.standbyMembers(), ...this.h.ctx.slotKeptMembers()].map(slotFor);
    if (!memberListDue({ wanted, found: present ? memberSlotNames(present) : null, listedFor: this.listedFor, reported: this.slots, skipped: this.skipped, every: MEMBER_LIST_EVERY })) {
      this.skipped++;
      return;
    }
    await this.memberSlots();
    this.listedFor = wanted;
    this.skipped = 0;
  }

  /**
   * The member slots as src/slots/members.ts planMemberSlots says: dropped (a member that left or
   * stayed down past slots.retain_minutes, a slot PostgreSQL invalidated) and made.
   */
  private async memberSlots(): Promise<void> {
    const h = this.h;
    const existing = await listSlots(h.localDb());
    const have = new Set(existing.map((x) => x.name));
    const plan = planMemberSlots({
      slots: existing.filter((x) => x.name.startsWith(OWN_SLOT_PREFIX)),
      wanted: new Map(h.ctx.standbyMembers().map((id) => [slotFor(id), id] as const)),
      kept: new Map(h.ctx.slotKeptMembers().map((id) => [slotFor(id), id] as const)),
      downForMs: (id) => h.ctx.slotIdleForMs(id),
      retainMs: h.cfg.slots.retain_minutes * 60_000,
      droppedFor: this.droppedFor,
    });
    for (const d of plan.drop) {
      const held = `holds ${existing.find((x) => x.name === d.name)?.retainedBytes ?? 0} bytes of WAL`;
      // An invalidated slot: PostgreSQL 18 refuses it to a standby ("can no longer access replication
      // slot"), a clone through it included; a new one reserves WAL from now on: the standby catches
      // up from the archive, or, when the WAL it needs is gone, cannot stream and is rebuilt
      // (core/catch-up.ts; rebuild.ts).
      h.log.warn(d.why === "lost"
        ? `replication slot ${d.name} was invalidated by PostgreSQL (wal_status lost: it held more WAL than max_slot_wal_keep_size allows, or was idle too long; ${held}): dropped and made again`
        : `dropping replication slot ${d.name} (${held}): ${d.why === "left" ? "its member left the cluster" : `its member has been down, or its server stopped, for ${Math.round(d.downMs / 60_000)} min (slots.retain_minutes = ${h.cfg.slots.retain_minutes})`}`);
      await dropSlot(h.localDb(), d.name, true);
      if (d.why === "down") this.droppedFor.add(d.id);
      have.delete(d.name);
    }
    for (const id of plan.forgive) this.droppedFor.delete(id);
    for (const name of plan.create) {
      await ensureSlot(h.localDb(), name);
      h.log.info(`created replication slot ${name}`);
      have.add(name);
    }
    this.slots = [...have].sort();
    this.slotBytes = Object.fromEntries(existing.filter((x) => have.has(x.name)).map((x) => [x.name, x.retainedBytes ?? 0]));
  }
}
