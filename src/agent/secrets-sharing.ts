// The cluster's shared secrets (the replication and monitoring passwords, the CA, the system
// identifier: src/store/cluster-secrets.ts) as the leader shares them: to every connected peer when they change, and again at most every
// 5 s with the PostgreSQL loop's reports, so a peer that connected later has them too.
import type { Mesh } from "../net/mesh.ts";
import { SecretsStore, type ClusterSecrets } from "../store/cluster-secrets.ts";

const RESEND_MS = 5000;

export class SecretsSharing {
  readonly store: SecretsStore;
  private lastSent = 0;

  constructor(stateDir: string, private readonly mesh: () => Mesh, private readonly leading: () => boolean, private readonly now: () => number) {
    this.store = new SecretsStore(stateDir);
  }

  get(): ClusterSecrets | undefined {
    return this.store.get();
  }

  /** Stores `s`; a change goes to the peers at once. */
  save(s: ClusterSecrets): void {
    if (this.store.set(s)) this.share(true);
  }

  /** Sends the secrets to every connected peer while leading: when `force`, else at most every 5 s. */
  share(force: boolean): void {
    const s = this.store.get();
    if (!s || !this.leading()) return;
    if (!force && this.now() - this.lastSent < RESEND_MS) return;
    this.lastSent = this.now();
    const mesh = this.mesh();
    for (const id of mesh.connected()) mesh.send(id, { t: "secrets", ...s });
  }
}
