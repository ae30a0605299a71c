// Failsafe mode's shell ([consensus] failsafe = true; decisions in failsafe-core.ts). It owns the
// promise this node gave (it takes no key before `promisedUntil`), the leader's confirmations and
// its asking timer. The leader asks every other voter every poll_ms once its etcd lease is half
// gone without a renewal; each confirmation may move the leader's deadline (the backend's
// `extended`); a missing one lets the deadline run out, and the backend fences as without failsafe.
import type { Logger } from "../../log.ts";
import {
  confirmationDeadline, decideConfirm, failsafeDeadline, type FailsafeReq, type FailsafeResp, missing, mayTake, shouldAsk,
} from "./failsafe-core.ts";

export type FailsafeMsg = FailsafeReq | FailsafeResp;

/** What the failsafe shell reads from the backend (its view, never a copy). */
export interface FailsafeView {
  leading: { term: number; until: number } | null;
  /** The deadline of the last etcd renewal whose read, sent with it, showed etcd open (null: none): a renewal alone does not count. */
  etcdUntil: number | null;
  voters: readonly string[];
  /** The leader key this node last read from etcd. */
  leader: { id: string; term: number } | null;
  taking: boolean;
}

export interface FailsafeOptions {
  /** [consensus] failsafe on this node. Off: it answers every request with a refusal and never asks. */
  enabled: boolean;
  self: string;
  /** How long this node promises not to take the key (its ttl_s). */
  promiseMs: number;
  pollMs: number;
  maxDrift: number;
  fenceMs: number;
  usableMs: number;
  send(to: string, msg: FailsafeMsg): void;
  view(): FailsafeView;
  /** The leader's failsafe deadline moved (leader only). */
  extended(until: number): void;
  nameOf(id: string): string;
  log: Logger;
  clock: () => number;
}

export class Failsafe {
  /** This node takes no key before this (its own promises; a restarted agent inherits one promise's length). */
  private promisedUntil: number;
  /** Until then a take this node attempted may have succeeded without an answer: it promises nothing. */
  private uncertainUntil = -Infinity;
  private readonly confirmed = new Map<string, number>();
  private readonly sent = new Map<number, { sentAt: number; term: number }>();
  private term = 0;
  private nextId = 1;
  private asking = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastRefusal = "";

  constructor(private readonly o: FailsafeOptions) {
    this.promisedUntil = o.enabled ? o.clock() + o.promiseMs : -Infinity;
  }

  start(): void {
    if (this.o.enabled) this.timer = setInterval(() => this.ask(), this.o.pollMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** null when this node may take the leader key, stop streaming and publish a final position now; else why not. */
  promised(): string | null {
    return mayTake(this.o.clock(), this.promisedUntil)
      ? null
      : `promised (failsafe) not to take the leader key nor publish a final position for ${Math.ceil(this.promisedUntil - this.o.clock())} ms more`;
  }

  /** A take whose transaction failed without an answer: it may have succeeded; promise nothing for `ms`. */
  takeUncertain(ms: number): void {
    this.uncertainUntil = this.o.clock() + ms;
  }

  /** The leader's failsafe deadline for `term` (null: not every other voter confirmed). */
  deadline(term: number): number | null {
    return term === this.term ? failsafeDeadline(this.others(), this.confirmed) : null;
  }

  /** Who has not confirmed past now (for the fence's reason). */
  missing(): string[] {
    if (!this.o.enabled) return [];
    return missing(this.others(), this.confirmed, this.o.clock()).map((id) => this.o.nameOf(id));
  }

  receive(from: string, msg: FailsafeMsg): void {
    if (msg.t === "failsafe-req") return this.confirm(from, msg);
    const req = this.sent.get(msg.id);
    const v = this.o.view();
    if (!req || req.term !== msg.term || !v.leading || v.leading.term !== msg.term || !this.others().includes(from)) return;
    if (!msg.ok) {
      const line = `failsafe: ${this.o.nameOf(from)} does not confirm: ${msg.reason}`;
      if (line !== this.lastRefusal) this.o.log.warn(line);
      this.lastRefusal = line;
      return;
    }
    const until = confirmationDeadline(req.sentAt, msg.promiseMs, this.o.maxDrift, this.o.fenceMs);
    if (until === null || until <= (this.confirmed.get(from) ?? -Infinity)) return;
    this.confirmed.set(from, until);
    const all = this.deadline(msg.term);
    if (all !== null) this.o.extended(all);
  }

  private confirm(from: string, req: FailsafeReq): void {
    const v = this.o.view();
    const d = decideConfirm({
      now: this.o.clock(), enabled: this.o.enabled, from, term: req.term, leader: v.leader,
      leading: v.leading !== null || v.taking, uncertainUntil: this.uncertainUntil, promiseMs: this.o.promiseMs,
    });
    // The promise holds before the answer leaves.
    if (d.ok && this.o.clock() >= this.promisedUntil) this.o.log.info(`failsafe: confirming leader ${this.o.nameOf(from)} (term ${req.term}); this node takes no leader key while it does`);
    if (d.ok) this.promisedUntil = Math.max(this.promisedUntil, d.promisedUntil);
    this.o.send(from, { t: "failsafe-resp", id: req.id, term: req.term, ok: d.ok, promiseMs: d.ok ? this.o.promiseMs : 0, reason: d.ok ? "" : d.reason });
  }

  private others(): string[] {
    return this.o.view().voters.filter((id) => id !== this.o.self);
  }

  private ask(): void {
    const v = this.o.view();
    const now = this.o.clock();
    if (!v.leading) return this.reset(0);
    if (v.leading.term !== this.term) this.reset(v.leading.term);
    if (!shouldAsk(now, v.etcdUntil, this.o.usableMs)) {
      if (this.asking) this.o.log.info("failsafe: the etcd lease is renewed again; no longer asking the other members");
      this.asking = false;
      return;
    }
    if (!this.asking) this.o.log.warn(`failsafe: the etcd lease is not being renewed; asking ${this.others().map((id) => this.o.nameOf(id)).join(", ") || "nobody (no other voter)"} to confirm this leader`);
    this.asking = true;
    const id = this.nextId++;
    this.sent.set(id, { sentAt: now, term: v.leading.term });
    for (const [old, r] of this.sent) if (now - r.sentAt > this.o.promiseMs) this.sent.delete(old);
    for (const to of this.others()) this.o.send(to, { t: "failsafe-req", id, term: v.leading.term });
  }

  private reset(term: number): void {
    this.term = term;
    this.confirmed.clear();
    this.sent.clear();
    this.asking = false;
    this.lastRefusal = "";
  }
}
