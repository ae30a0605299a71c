// `pgherd member approve|remove`, run on the leader: an approval is stored in the election's
// membership (so every later leader has it) and the membership keeper adds the node once it is
// connected; a removal of a voter goes through the keeper (failover guard first, one change at a
// time), a removal of an approved non-voter withdraws the approval.
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import type { Status } from "../core/election.ts";
import { isNodeId } from "../core/messages.ts";
import { majority } from "../core/quorum.ts";
import type { HistoryEntry } from "./history.ts";
import type { MembershipConsensus } from "./membership.ts";

export interface MemberActionDeps {
  nodeId: string;
  nodeName: string;
  consensus: MembershipConsensus;
  keeper: { requestRemoval(id: string): void; clearRemoval(id: string): void };
  /** Nodes this agent knows of (beacon or mesh): id, name, connected. */
  peers(): readonly { id: string; name: string; connected: boolean }[];
  nameOf(id: string): string;
  /** Why node `id` may not become a voter yet, null: it may (core/cluster-facts.ts joinBlocker). */
  joinBlocker?(id: string): string | null;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
  sleep(ms: number): Promise<void>;
  /** How long to wait for a change to be stored by a majority. */
  waitMs?: number;
}

type MemberRequest = Extract<ActionRequest, { kind: "member-approve" | "member-remove" }>;

const ok = (message: string, status = 200): ActionResult => ({ status, ok: true, message });
const no = (status: number, message: string): ActionResult => ({ status, ok: false, message });

export class MemberActions {
  constructor(private readonly d: MemberActionDeps) {}

  /** Leader only (the runner checked the lease). */
  run(req: MemberRequest): Promise<ActionResult> {
    const st = this.d.consensus.status();
    if (!st.membership) return Promise.resolve(no(409, "the cluster has no membership yet (bootstrap first)"));
    const id = this.resolve(req.node, st);
    if (!id) return Promise.resolve(no(404, `no node named ${req.node} is known (pgherd member ls lists them; a node id works too)`));
    return req.kind === "member-approve" ? this.approve(id, st) : this.remove(id, st);
  }

  /** A node id, or the id of the known node with that name (voters, approvals and peers). */
  private resolve(ref: string, st: Status): string | null {
    if (isNodeId(ref)) return ref;
    const ids = new Set([this.d.nodeId, ...(st.membership?.voters ?? []), ...(st.membership?.approved ?? []), ...this.d.peers().map((p) => p.id)]);
    return [...ids].find((id) => this.d.nameOf(id) === ref) ?? null;
  }

  private async approve(id: string, st: Status): Promise<ActionResult> {
    const name = this.d.nameOf(id);
    this.d.keeper.clearRemoval(id);
    if (st.membership!.voters.includes(id)) return ok(`${name} is already a voter`);
    if (!st.membership!.approved?.includes(id)) {
      const stored = await this.change("approve", id, (s) => s.membership?.approved?.includes(id) === true || s.membership?.voters.includes(id) === true);
      if (!stored.ok) return stored;
      this.record(`member ${name} (${id}) approved as a voter`);
    }
    if (!this.d.peers().some((p) => p.id === id && p.connected)) {
      return ok(`${name} approved: the leader makes it a voter once it is connected`, 202);
    }
    const blocked = this.d.joinBlocker?.(id) ?? null;
    if (blocked) return ok(`${name} approved, not a voter yet: ${blocked}; the leader adds it once that changes`, 202);
    // The keeper adds it next (automatic failover is suspended for that moment).
    const voter = await this.until((s) => s.membership?.voters.includes(id) === true && s.membershipCommitted);
    return voter ? ok(`${name} is a voter: ${this.votersLine(voter)}`) : ok(`${name} approved; not yet a voter (the leader adds it within moments)`, 202);
  }

  private async remove(id: string, st: Status): Promise<ActionResult> {
    const name = this.d.nameOf(id);
    const m = st.membership!;
    if (id === this.d.nodeId && m.voters.includes(id)) {
      return no(409, `${name} leads the cluster and cannot remove itself: pgherd switchover first, then remove it through the new leader`);
    }
    if (!m.voters.includes(id)) {
      if (!m.approved?.includes(id)) return no(404, `${name} is not a voter and not approved: nothing to remove`);
      // Gone from the approvals also when the keeper made it a voter meanwhile (its add committed
      // before this withdrawal could be): then it is a voter, not withdrawn (review).
      const done = await this.change("remove", id, (s) => !s.membership?.approved?.includes(id) || s.membership?.voters.includes(id) === true);
      if (!done.ok) return done;
      if (this.d.consensus.status().membership?.voters.includes(id)) {
        return no(409, `${name} became a voter before its approval could be withdrawn: run pgherd member remove ${name} again to remove the voter`);
      }
      this.record(`approval of ${name} (${id}) withdrawn`);
      return ok(`approval of ${name} withdrawn`);
    }
    this.d.keeper.requestRemoval(id);
    const after = await this.until((s) => s.membership?.voters.includes(id) === false && s.membershipCommitted);
    if (!after && this.d.consensus.status().role !== "leader") {
      return no(503, `this node stopped leading before ${name} was removed: the request went with the leadership; ask the new leader`);
    }
    if (!after) {
      // The request stays with this leader and is carried out once a majority answers: say so, and
      // in the history, which would otherwise not show a removal made after this answer (review).
      this.record(`removal of voter ${name} (${id}) requested; not done within ${this.waitMs() / 1000} s, still pending on this leader`);
      return no(504, `${name} is still a voter after ${this.waitMs() / 1000} s (the leader first suspends automatic failover, which needs a majority: see its log); the removal stays requested and is made once a majority answers, while this node leads (\`pgherd member approve ${name}\` cancels it)`);
    }
    this.record(`voter ${name} (${id}) removed: ${this.votersLine(after)}`);
    return ok(`${name} removed: ${this.votersLine(after)}`);
  }

  /**
   * Proposes a change that needs no failover guard (approvals), retrying while another change
   * commits. Stored once its membership is committed, or a later one exists (changes go one at a
   * time, so a later one means ours was committed first).
   */
  private async change(op: "approve" | "remove", id: string, done: (s: Status) => boolean): Promise<ActionResult> {
    const deadline = performance.now() + this.waitMs();
    let mine: { term: number; index: number } | null = null;
    while (performance.now() < deadline) {
      const s = this.d.consensus.status();
      if (s.role !== "leader" || !s.membership) return no(503, "this node stopped leading: try again");
      const m = s.membership;
      const later = mine !== null && (m.term > mine.term || m.index > mine.index);
      if (done(s) && (s.membershipCommitted || later)) return ok("stored");
      if (!done(s) && s.membershipCommitted) {
        await this.d.consensus.propose(op, id);
        const after = this.d.consensus.status();
        if (after.membership && done(after)) mine = { term: after.membership.term, index: after.membership.index };
      }
      await this.d.sleep(100);
    }
    return no(504, `the ${op === "approve" ? "approval" : "withdrawal"} was not stored by a majority within ${this.waitMs() / 1000} s`);
  }

  private async until(cond: (s: Status) => boolean): Promise<Status | null> {
    const deadline = performance.now() + this.waitMs();
    for (;;) {
      const s = this.d.consensus.status();
      if (cond(s)) return s;
      if (performance.now() >= deadline || s.role !== "leader") return null;
      await this.d.sleep(100);
    }
  }

  private waitMs(): number {
    return this.d.waitMs ?? 20_000;
  }

  private votersLine(s: Status): string {
    const v = s.membership?.voters ?? [];
    return `voters now ${v.map((x) => this.d.nameOf(x)).join(", ")} (majority ${majority(v.length)} of ${v.length})`;
  }

  private record(reason: string): void {
    const term = this.d.consensus.status().term;
    this.d.record({ term, kind: "config", node: this.d.nodeName, reason, oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
  }
}
