// What the agent does with each message a peer sends over the mesh (validated at receipt,
// src/agent/messages.ts): route it to the module that owns the concern. It owns the name of the
// old primary that handed over to this node (read once when this node became the primary).
import * as F from "../core/cluster-facts.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import type { Logger } from "../log.ts";
import type { Mesh } from "../net/mesh.ts";
import type { SecretsStore } from "../store/cluster-secrets.ts";
import { leaderOnlyPart, type ActionRequest, type ActionResult } from "../api/actions-contract.ts";
import type { AgentActionHost } from "./action-host.ts";
import type { DynamicConfig } from "./dynamic-config.ts";
import type { Consensus } from "./election-driver.ts";
import type { FlagsStore } from "./flags.ts";
import type { History } from "./history.ts";
import type { AgentMsg } from "./messages.ts";
import type { MigrateMsg } from "../consensus/migrate-msgs.ts";
import type { PeerTable } from "./peers.ts";
import type { Exclusion } from "../core/sync-exclusion.ts";
import { slotFor, type LoopControl } from "./pg/context.ts";

export interface RouterDeps {
  log: Logger;
  /** This node's id. */
  self: string;
  consensus: Consensus;
  secrets: SecretsStore;
  peers: PeerTable;
  mesh: () => Mesh;
  host: () => AgentActionHost;
  flags: FlagsStore;
  dynamic: DynamicConfig;
  history: History;
  /** The view requests this node has in flight (leader-view.ts). */
  views: { answer(id: number, view: ClusterView, from: string): void };
  /** Peers' last state messages (read by the agent's facts). */
  reports: Map<string, F.PeerReport>;
  loop: () => LoopControl | null;
  localView: () => ClusterView;
  /** An action forwarded to this node as the leader, its flag changes stored. */
  runAsLeader: (req: ActionRequest, from: string) => Promise<ActionResult>;
  stopped: () => boolean;
  safe: (f: () => void) => void;
  now: () => number;
  /** The leader's state message: its record (null: none), the message's run and number (the standby's echo: src/agent/sync-cap.ts). */
  exclusionHeard: (leader: string, exclusion: Exclusion | null, msg: { epoch?: number; seq?: number }) => void;
  /** A backend migration's message (src/agent/migrate-driver.ts). */
  migrate: (peer: string, msg: MigrateMsg) => void;
}

export class MessageRouter {
  private expectingHandoverFrom: string | null = null;
  /** Per peer, the earlier run whose dropped message was last warned about. */
  private readonly warnedRun = new Map<string, number>();

  constructor(private readonly d: RouterDeps) {}

  /** The old primary that handed over to this node, once (then forgotten). */
  takeHandoverFrom(): string | null {
    const from = this.expectingHandoverFrom;
    this.expectingHandoverFrom = null;
    return from;
  }

  /** `peer`: the node id the mesh authenticated the connection of (the sender); a message naming another `from` is dropped. */
  route(peer: string, msg: AgentMsg): void {
    const d = this.d;
    if (d.stopped()) return; // a stopping agent takes no part (a leader's shutdown handover asks)
    if ("from" in msg && msg.from !== peer) {
      d.log.warn(`dropped ${msg.t} from ${d.peers.name(peer)}: it names ${JSON.stringify(msg.from).slice(0, 80)} as its sender`);
      return;
    }
    switch (msg.t) {
      case "state": return this.onState(peer, msg);
      case "secrets": {
        if (d.consensus.status().leader !== peer) return; // only the current leader speaks for the cluster's identity
        if (d.secrets.set({ systemId: msg.systemId, replPassword: msg.replPassword, monitorPassword: msg.monitorPassword, ca: msg.ca })) {
          d.log.info(`received the cluster's credentials from the leader ${d.peers.name(peer)} (system identifier ${msg.systemId ?? "not yet created"})`);
        }
        return;
      }
      case "view-req":
        d.mesh().send(peer, { t: "view", id: msg.id, view: d.localView() });
        return;
      case "view": return d.views.answer(msg.id, msg.view, peer);
      case "action":
        // Only the leader hands a backup to a member.
        const leaderOnly = leaderOnlyPart(msg.req);
        if (leaderOnly && d.consensus.status().leader !== peer) {
          d.log.warn(`refused ${leaderOnly} from ${d.peers.name(peer)}, which is not the leader`);
          d.mesh().send(peer, { t: "action-resp", id: msg.id, result: { status: 403, ok: false, message: `${msg.req.kind}: ${leaderOnly} comes from the leader only` } });
          return;
        }
        // A failure on the leader (a state file it cannot write) is answered, not left to the asker's timeout.
        void d.runAsLeader(msg.req, peer).then(
          (result) => result,
          (e: Error): ActionResult => ({ status: 500, ok: false, message: `${msg.req.kind} failed on the leader: ${e.message}` }),
        ).then((result) => d.safe(() =>
          d.mesh().send(peer, { t: "action-resp", id: msg.id, result: { status: result.status, ok: result.ok, message: result.message.slice(0, 2000), ...boundedDetail(result.detail) } })));
        return;
      case "action-resp": return d.host().forwarded.answer(msg.id, msg.result, peer);
      case "history":
        d.history.merge(msg.entries);
        return;
      case "campaign-now":
        // Sent by the node that runs a manual failover: a voter (the leader, after resigning, included).
        if (!d.consensus.status().membership?.voters.includes(peer)) {
          d.log.warn(`refused a request to stand for election from ${d.peers.name(peer)}, which is not a voter`);
          return;
        }
        d.log.warn(`asked to stand for election by ${d.peers.name(peer)}: ${msg.reason}${msg.force ? " (accepting data loss)" : ""}`);
        d.host().campaignNow(msg.force === true);
        return;
      case "handover": return this.onHandover(peer, msg);
      case "config-req": return d.dynamic.onRequest(peer, msg.read);
      case "config-version": return d.dynamic.observe(peer, msg);
      case "config-doc": return d.dynamic.onDocument(peer, msg.doc, msg.read);
      case "config-ack": return d.dynamic.onAck(peer, msg);
      case "handover-ready":
        if (msg.id !== undefined) d.host().handovers.answer(msg.id, msg.pos, peer);
        return;
      case "failsafe-req":
      case "failsafe-resp":
        d.consensus.failsafeMessage?.(peer, msg);
        return;
      case "migrate-switch":
      case "migrate-ack":
      case "migrate-epoch":
        return d.migrate(peer, msg);
      default:
        d.consensus.receive(peer, msg); // validated on receipt (AgentMsgSchema holds ElectionMsgSchema)
    }
  }

  private onState(peer: string, msg: Extract<AgentMsg, { t: "state" }>): void {
    const held = this.d.reports.get(peer);
    if (!F.newerReport(held, peer, msg)) return this.droppedEarlierRun(peer, held!, msg.epoch);
    const before = held?.report;
    this.d.reports.set(peer, {
      report: msg.pg, role: msg.role, at: this.d.now(), nofailover: msg.nofailover ?? false,
      ...(msg.promotable !== undefined ? { promotable: msg.promotable } : {}), ...(msg.epoch !== undefined ? { epoch: msg.epoch } : {}),
      ...(msg.seq !== undefined ? { seq: msg.seq } : {}), ...(msg.heard !== undefined ? { heard: msg.heard } : {}),
      ...optional("unreadableSince", F.unreadableSince(held, msg.pg, this.d.now())),
    });
    if (this.d.consensus.status().leader !== peer) return;
    this.d.exclusionHeard(peer, msg.exclusion ?? null, msg);
    this.d.flags.adopt(msg, this.d.log);
    if (F.leaderPrimaryBack(before, msg.pg)) this.d.loop()?.primaryBack();
    // The leader's server first known here (a restart, a new leader), or this node's slot just created: decide now.
    else if ((!before && msg.pg) || F.leaderSlotCreated(before, msg.pg, slotFor(this.d.self))) this.d.loop()?.kick();
  }

  /**
   * A late frame was dropped (core/cluster-facts.ts newerReport). One of the peer's earlier run is
   * told once per run: a leftover of a restart, harmless; repeated with every message, the peer's
   * run epoch went back and its state is ignored until this agent restarts.
   */
  private droppedEarlierRun(peer: string, held: F.PeerReport, epoch: number | undefined): void {
    if (epoch === undefined || held.epoch === undefined || epoch >= held.epoch || this.warnedRun.get(peer) === epoch) return;
    this.warnedRun.set(peer, epoch);
    this.d.log.warn(`${this.d.peers.name(peer)}: a state message of its run ${epoch} dropped, older than its run ${held.epoch} (a restart's leftover frame; if its messages keep being dropped, its <state_dir>/run-epoch.json was removed while its clock was behind: restart this agent)`);
  }

  /**
   * Sent by the leader in a switchover to this node, before it resigns: taken from the leader, or
   * from a voter while this node knows no leader; never one sent in a term older than this node's
   * (a deposed leader's, arriving late).
   */
  private onHandover(peer: string, msg: Extract<AgentMsg, { t: "handover" }>): void {
    // A node that does not know the leader yet (just restarted or reconnected) takes it from a voter:
    // refusing would leave the leader waiting out its 5 s for an answer before it hands over unconfirmed.
    const s = this.d.consensus.status();
    if (s.leader !== peer && (s.leader !== null || !s.membership?.voters.includes(peer))) {
      this.d.log.warn(`refused a handover from ${this.d.peers.name(peer)}, which is not the leader${s.leader === null ? " nor a voter" : ""}`);
      return;
    }
    if (msg.term !== undefined && msg.term < s.term) {
      this.d.log.warn(`refused a handover from ${this.d.peers.name(peer)}: sent in term ${msg.term}, this node is in term ${s.term}`);
      return;
    }
    this.expectingHandoverFrom = peer;
    const loop = this.d.loop();
    loop?.requestPromotion(); // an operator's switchover: promote even while paused
    // Vote with the old primary's final position, or the other voters refuse us as behind them.
    void (loop ? loop.catchUp(msg.final ?? null, 3000) : Promise.resolve(null)).then((pos) => this.d.safe(() => {
      if (pos) this.d.consensus.setPosition(pos);
      this.d.mesh().send(peer, { t: "handover-ready", pos, ...(msg.id !== undefined ? { id: msg.id } : {}) });
    }), (e: Error) => {
      // Not ready: the old leader's wait for this answer runs out and it stays (its log says so).
      this.d.log.warn(`switchover to this node: catching up with ${this.d.peers.name(peer)}'s final position failed: ${e.message}`);
    });
  }
}

/** An answer's detail, carried back to the asker when its JSON is small (review: dropped, a switchover won by another node exited 0 on a follower). */
const MAX_DETAIL_CHARS = 8192;
function boundedDetail(detail: unknown): { detail?: unknown } {
  if (detail === undefined) return {};
  const json = JSON.stringify(detail);
  return json !== undefined && json.length <= MAX_DETAIL_CHARS ? { detail } : {};
}

const optional = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : ({ [k]: v } as { [P in K]?: V }));
