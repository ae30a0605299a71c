// What this agent knows about other nodes: from authenticated beacons (identity,
// mesh address, bootstrap state) and from the mesh (connected or not).
import type { NodePeer } from "../core/node-status.ts";

/** What the status shows of a peer is what the table keeps (core/node-status.ts). */
export type PeerInfo = NodePeer;

export class PeerTable {
  private readonly peers = new Map<string, PeerInfo>();
  private changedAt = performance.now();

  constructor(private readonly maxAgeMs: number) {}

  /**
   * Records an authenticated announcement. `isNew`: the node was unknown; `left`: the mesh address
   * it announced before this one, when it moved and no other peer announces that address (no
   * longer worth dialling), else null.
   */
  seen(p: Omit<PeerInfo, "connected" | "lastSeen">): { isNew: boolean; left: string | null } {
    const old = this.peers.get(p.id);
    if (!old || old.mesh !== p.mesh) this.changedAt = performance.now();
    this.peers.set(p.id, { ...p, connected: old?.connected ?? false, lastSeen: performance.now() });
    const was = old?.mesh ?? "";
    const moved = was !== "" && was !== p.mesh && ![...this.peers.values()].some((x) => x.id !== p.id && x.mesh === was);
    return { isNew: !old, left: moved ? was : null };
  }

  connected(id: string, up: boolean, name?: string): void {
    const p = this.peers.get(id);
    if (p) p.connected = up;
    else if (up && name) {
      // Connected before its beacon reached us (e.g. it dialled us): known by the mesh handshake.
      this.peers.set(id, { id, name, role: "database", mesh: "", address: "", vote: null, member: false, connected: true, lastSeen: performance.now() });
    }
  }

  name(id: string): string {
    return this.peers.get(id)?.name ?? id;
  }

  list(): PeerInfo[] {
    return [...this.peers.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Drops peers neither heard by beacon nor connected for maxAgeMs. */
  expire(): PeerInfo[] {
    const t = performance.now();
    const gone: PeerInfo[] = [];
    for (const p of this.peers.values()) {
      if (!p.connected && t - p.lastSeen > this.maxAgeMs) {
        this.peers.delete(p.id);
        gone.push(p);
        this.changedAt = t;
      }
    }
    return gone;
  }

  stableForMs(): number {
    return performance.now() - this.changedAt;
  }
}
