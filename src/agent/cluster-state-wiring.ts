// The agent's side of the cluster-state store (cluster-state.ts): hands the shared store's slots
// to the flags, the history and the cluster-wide configuration, starts and stops its polling with
// the agent, and stores an action's flag changes before the action answers. With the built-in
// backend (`local`) all of this does nothing.
import type { ActionResult } from "../api/actions-contract.ts";
import type { Config } from "../config/schema.ts";
import type { DynamicDoc } from "../config/schema-dynamic.ts";
import type { Logger } from "../log.ts";
import type { ClusterStateStore, StateSlot } from "./cluster-state.ts";
import { createClusterState } from "./cluster-state-create.ts";
import type { FlagsStore } from "./flags.ts";
import type { History } from "./history.ts";

export class ClusterStateWiring {
  /** Where the flags, the cluster-wide configuration and the history are shared (etcd), or the mesh. */
  private readonly state: ClusterStateStore;

  constructor(cfg: Config, log: Logger, private readonly flags: FlagsStore, history: History, leaderTerm: () => number | null) {
    this.state = createClusterState(cfg, log);
    if (this.state.kind === "shared") {
      flags.share(this.state.slots.flags, leaderTerm, log);
      history.share(this.state.slots.history, leaderTerm, (m) => log.warn(m));
    }
  }

  /** The configuration document's slot, for DynamicConfig (absent: versions travel over the mesh). */
  configSlot(): { shared?: StateSlot<DynamicDoc> } {
    return this.state.kind === "shared" ? { shared: this.state.slots.config } : {};
  }

  start(): void {
    if (this.state.kind === "shared") this.state.start();
  }

  stop(): void {
    if (this.state.kind === "shared") this.state.stop();
  }

  /**
   * With a shared store a flag change is stored by compare-and-swap after the action decided: a
   * refusal turns its answer into one; and this node reads the store before it answers, so what it
   * shows next includes the change (also one the leader made for it).
   */
  async flagsStored(r: ActionResult): Promise<ActionResult> {
    const refused = await this.flags.flush();
    if (this.state.kind === "shared") await this.state.refresh();
    return refused && r.ok ? { ok: false, ...refused } : r;
  }
}
