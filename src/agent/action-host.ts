// What the operator actions (actions.ts) may see and do on this agent: the election, the flags
// the leader keeps, the PostgreSQL loop's controls, and requests to the leader or a target.
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import * as F from "../core/cluster-facts.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import type { Position } from "../core/position.ts";
import { lsnCompare } from "../postgres/lsn.ts";
import type { Config } from "../config/schema.ts";
import type { Mesh } from "../net/mesh.ts";
import type { ActionHost } from "./actions.ts";
import { publishGuard, type Consensus } from "./election-driver.ts";
import type { FlagsStore, ScheduledSwitchover } from "./flags.ts";
import type { DynamicConfig } from "./dynamic-config.ts";
import type { DynamicChange } from "../config/dynamic.ts";
import type { HistoryEntry } from "./history.ts";
import type { LoopControl } from "./pg/context.ts";
import type { PgReport } from "./messages.ts";
import { PendingRequests } from "./requests.ts";

export interface ActionHostDeps {
  cfg: Config;
  nodeId: string;
  consensus: Consensus;
  flags: FlagsStore;
  dynamic: DynamicConfig;
  mesh: Mesh;
  loop(): LoopControl | null;
  facts(): F.FactsSnapshot;
  localView(): ClusterView;
  /** Flags changed on the leader: tell every node now (and the loop when it must act). */
  flagsChanged(kickLoop: boolean): void;
  /** The backup this node takes began or ended: its state goes out now, with it or without it. */
  backupChanged(): void;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
}

export class AgentActionHost implements ActionHost {
  readonly forwarded = new PendingRequests<ActionResult>();
  /** The switchover target's answer: the position it holds (null: none known). */
  readonly handovers = new PendingRequests<Position | null>();

  constructor(private readonly d: ActionHostDeps) {}

  get nodeId(): string { return this.d.nodeId; }
  get nodeName(): string { return this.d.cfg.node_name; }
  get maxLagBytes(): number { return this.d.dynamic.maxLagBytes(); }
  get pg() { return this.d.loop(); }

  electionState() {
    const s = this.d.consensus.status();
    return { role: s.role, term: s.term, leader: s.leader, leading: this.d.consensus.lease() !== null, voter: s.membership ? s.membership.voters.includes(this.nodeId) : null };
  }

  paused(): boolean { return this.d.flags.get().paused; }
  scheduled(): ScheduledSwitchover | null { return this.d.flags.get().scheduled; }

  setPaused(p: boolean): Promise<{ status: number; message: string } | null> {
    this.d.flags.set({ paused: p });
    this.d.flagsChanged(false);
    return this.d.flags.flush();
  }

  changeConfig(change: DynamicChange): Promise<ActionResult> { return this.d.dynamic.change(change); }

  setScheduled(s: ScheduledSwitchover | null): Promise<{ status: number; message: string } | null> {
    this.d.flags.set({ scheduled: s });
    this.d.flagsChanged(false);
    return this.d.flags.flush();
  }

  backupChanged(): void { this.d.backupChanged(); }
  candidates() { return F.candidates(this.d.facts()); }
  myReport(): PgReport | null { return this.d.facts().self.report; }
  clusterView(): ClusterView { return this.d.localView(); }
  reportOf(id: string): PgReport | null { return F.freshReport(this.d.facts(), id); }
  nameOf(id: string): string { return F.nameOf(this.d.facts(), id); }
  isConnected(id: string): boolean { return this.d.mesh.connected().includes(id); }
  record(e: Omit<HistoryEntry, "id" | "at">): void { this.d.record(e); }
  resign(reason: string, transferTo?: string): Promise<void> { return this.d.consensus.resign(reason, transferTo); }
  wallNow(): number { return Date.now(); }
  sleep(ms: number): Promise<void> { return Bun.sleep(ms); }

  forwardToLeader(req: ActionRequest, timeoutMs: number): Promise<ActionResult> {
    const leader = this.d.consensus.status().leader;
    if (!leader) return Promise.resolve({ status: 503, ok: false, message: "no leader" });
    return this.askNode(leader, req, timeoutMs, "the leader ");
  }

  askNode(to: string, req: ActionRequest, timeoutMs: number, what = ""): Promise<ActionResult> {
    const name = this.nameOf(to);
    return this.forwarded.ask(to, (id) => this.d.mesh.send(to, { t: "action", id, req }), timeoutMs,
      () => ({ status: 504, ok: false, message: `${what}${name} did not answer within ${timeoutMs} ms` }),
      () => ({ status: 503, ok: false, message: `${what}${name} is not connected` }));
  }

  /**
   * `peer`'s connection closed: whatever it was asked is answered now, as not answered (an answer
   * it sends meanwhile is lost, and a backup waited on would hold the next one for 24 h).
   */
  peerGone(peer: string): void {
    const name = this.nameOf(peer);
    this.forwarded.cancelTo(peer, () => ({ status: 504, ok: false, message: `${name} disconnected before it answered (what it was asked may still be running there)` }));
    this.handovers.cancelTo(peer, () => null);
  }

  /** Tell the target the final position and wait until it says it holds it: false when it does not (behind it, or no answer in time). */
  async handover(to: string, final: Position | null, timeoutMs: number): Promise<boolean> {
    // The term this node leads in, not its current one: deposed meanwhile, it may have taken a
    // newer term from a candidate, and a target in that term without a leader would take it.
    const lease = this.d.consensus.lease();
    if (!lease) return false;
    const pos = await this.handovers.ask(to, (id) => this.d.mesh.send(to, { t: "handover", from: this.d.nodeId, id, term: lease.term, ...(final ? { final } : {}) }), timeoutMs, () => null);
    return pos !== null && (final === null || lsnCompare(pos.lsn, final.lsn) >= 0);
  }

  publishFloor(pos: Position | null, timeoutMs: number): Promise<boolean> {
    return publishGuard(this.d.consensus, () => this.d.consensus.setGuard(false, pos), timeoutMs);
  }

  sendCampaign(to: string, reason: string, force = false): boolean {
    return this.d.mesh.send(to, { t: "campaign-now", reason, ...(force ? { force: true } : {}) });
  }

  campaignNow(force = false): void {
    this.d.loop()?.requestPromotion();
    void this.d.consensus.campaign(force);
  }
}
