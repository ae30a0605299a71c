// Discovery and the peer mesh as the agent uses them: authenticated beacons feed the peer table
// and the mesh dials what they announce; the mesh's peer events keep the table's connected flags.
// A peer's address (pg_hba, upstream) is the remote IP of its authenticated mesh connection only:
// a beacon's UDP source is not covered by its MAC and a recorded beacon can be re-sent from anywhere.
import type { Config } from "../config/schema.ts";
import { parseHostPort, formatHostPort } from "../config/hostport.ts";
import type { Logger } from "../log.ts";
import { Beacon, defaultBroadcastAddresses, type Announcement } from "../net/beacon.ts";
import { Mesh } from "../net/mesh.ts";
import { AgentMsgSchema, type AgentMsg } from "./messages.ts";
import type { PeerTable } from "./peers.ts";
import { isWildcard } from "./self-address.ts";

export interface TransportHooks {
  onMessage(peer: string, msg: AgentMsg): void;
  /** A peer's connection was authenticated; `localHost` is the address it reached us at. */
  onPeerUp(id: string, localHost: string): void;
  /** A peer's last connection closed. */
  onPeerDown(id: string): void;
  /** Beacon extras: this node's bootstrap vote and whether it holds a membership. */
  beaconExtra(): Record<string, unknown>;
  /** An authenticated announcement updated the peer table (a bootstrap vote may have come with it). */
  announced?(): void;
}

export function createTransport(cfg: Config, nodeId: string, peers: PeerTable, log: Logger, hooks: TransportHooks): { mesh: Mesh; beacon: Beacon } {
  const authenticated = new Map<string, string>(); // peer id → remote IP of its last authenticated connection
  const listen = parseHostPort(cfg.mesh.listen);
  if (typeof listen === "string") throw new Error(`mesh.listen: ${listen}`);
  /** Mesh addresses a peer announced before its current one: dropped from the dial list once it is connected. */
  const movedFrom = new Map<string, Set<string>>();
  const forgetMoved = (id: string) => {
    const was = movedFrom.get(id);
    if (!was) return;
    movedFrom.delete(id);
    const current = new Set(peers.list().map((p) => p.mesh)); // its own, and any other peer's now
    for (const addr of was) {
      if (current.has(addr)) continue;
      log.debug(`${peers.name(id)} (${id}) moved: no longer dialling ${addr}`);
      mesh.forget(addr);
    }
  };
  const mesh: Mesh = new Mesh({
    cluster: cfg.cluster, secret: cfg.secret, nodeId, nodeName: cfg.node_name,
    listenHost: listen.host, listenPort: listen.port, advertise: cfg.mesh.advertise || undefined,
    maxFrameBytes: cfg.mesh.max_frame_bytes, pingMs: cfg.mesh.ping_ms, deadMs: cfg.mesh.dead_ms,
    handshakeMs: cfg.mesh.handshake_ms, maxBufferedBytes: cfg.mesh.max_buffered_bytes,
    backoffMinMs: 100, backoffMaxMs: 5000, messageSchema: AgentMsgSchema, log: log.withTag("mesh"),
    onMessage: (peer, msg) => hooks.onMessage(peer, msg as AgentMsg),
    onPeerUp: (p) => {
      authenticated.set(p.id, p.remoteHost);
      forgetMoved(p.id);
      peers.connected(p.id, true, p.name);
      const known = peers.list().find((x) => x.id === p.id);
      if (known && known.address !== p.remoteHost) peers.seen({ ...known, address: p.remoteHost });
      log.info(`peer ${p.name} (${p.id}) connected from ${p.remoteAddress}`);
      hooks.onPeerUp(p.id, p.localHost.replace(/^::ffff:/, ""));
    },
    onPeerDown: (id, reason) => {
      peers.connected(id, false);
      log.info(`peer ${peers.name(id)} (${id}) disconnected: ${reason}`);
      hooks.onPeerDown(id);
    },
  });
  /** Where a connected peer announcing a wildcard is dialled: its known mesh host, else its authenticated IP (null: none known); undefined when not connected. */
  const connectedHost = (id: string): string | null | undefined => {
    const known = peers.list().find((p) => p.id === id && p.connected);
    if (!known) return undefined;
    const hp = parseHostPort(known.mesh);
    return typeof hp !== "string" ? hp.host : authenticated.get(id) ?? mesh.remoteHost(id) ?? null;
  };
  const onAnnouncement = (a: Announcement, from: { address: string }) => {
    const hp = parseHostPort(a.mesh);
    if (typeof hp === "string") {
      log.warn(`beacon from ${a.name} (${from.address}) announces a bad mesh address ${JSON.stringify(a.mesh)}: ${hp}`);
      return;
    }
    // A wildcard mesh address means "where my beacon came from". The datagram's source is not
    // covered by the MAC, and a fresh beacon whose original was dropped (a forged flood spends the
    // source budgets) can be re-sent from anywhere: while the peer is connected, such a beacon does
    // not move where it is dialled (else the copy would replace the real address, and the next
    // reconnect would go through the sender's relay, whose IP would then be the peer's
    // authenticated address). A peer not connected is dialled at the source, as an invitation only:
    // the handshake proves the expected id, and a renumbered peer is found again. A connected peer
    // with no mesh address yet (it dialled us before any beacon of it was accepted) is dialled at
    // its authenticated connection's remote IP, never at a beacon's source (review: the copy's
    // relay address stuck, later genuine beacons could not repair it while connected, and the next
    // reconnect went through the relay).
    const host = !isWildcard(hp.host) ? hp.host : connectedHost(a.nodeId) ?? from.address;
    if (host === null) return;
    const mesh_ = formatHostPort({ host, port: hp.port });
    const vote = Array.isArray(a.extra.vote) && a.extra.vote.every((v) => typeof v === "string") ? (a.extra.vote as string[]) : null;
    const { isNew, left } = peers.seen({ id: a.nodeId, name: a.name, role: a.role, mesh: mesh_, address: authenticated.get(a.nodeId) ?? "", vote, member: a.extra.member === true });
    if (isNew) log.info(`discovered ${a.name} (${a.nodeId}, ${a.role}) at ${mesh_}`);
    if (left) {
      // It moved (a new address, another port): where it was is no longer dialled once it is
      // connected again (forgetting at once would restart the dial's backoff on every beacon of a
      // peer whose beacons come from two addresses in turn).
      const was = movedFrom.get(a.nodeId) ?? new Set<string>();
      movedFrom.set(a.nodeId, was.add(left));
    }
    mesh.dial(mesh_, a.nodeId);
    hooks.announced?.();
    if (movedFrom.has(a.nodeId) && peers.list().find((p) => p.id === a.nodeId)?.connected) forgetMoved(a.nodeId);
  };
  const broadcast = cfg.discovery.broadcast.flatMap((b) => (b === "auto" ? defaultBroadcastAddresses() : [b]));
  const beacon = new Beacon({
    cluster: cfg.cluster, secret: cfg.secret, nodeId, nodeName: cfg.node_name, role: cfg.role,
    port: cfg.discovery.port, broadcast, peers: [...cfg.discovery.peers],
    meshAddr: () => cfg.mesh.advertise || formatHostPort(mesh.address()), intervalMs: cfg.discovery.interval_ms, maxAgeMs: cfg.discovery.max_age_ms,
    extra: hooks.beaconExtra, log: log.withTag("beacon"),
    onAnnouncement: (a, from) => {
      try {
        onAnnouncement(a, from);
      } catch (e) {
        log.error(`internal error on a beacon from ${a.name}: ${(e as Error).stack ?? e}`);
      }
    },
  });
  return { mesh, beacon };
}
