// What the agent tells the rest of an operator's stack: [hooks] (src/hooks) now. The agent
// feeds it its PostgreSQL reports and history entries; it never decides anything itself (the
// pre_promote verdict is read by core/ha.ts through the PostgreSQL loop).
import type { Config } from "../config/schema.ts";
import type { PromoteCheck } from "../core/ha.ts";
import type { PgReport } from "../core/report.ts";
import type { Logger } from "../log.ts";
import { Hooks } from "../hooks/hooks.ts";
import type { HistoryEntry } from "../agent/history.ts";

/** What the integrations read from the agent. */
export interface IntegrationHost {
  readonly nodeId: string;
  leadership(): { term: number; leading: boolean; leaderId: string | null };
  nameOf(id: string): string;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
}

export class Integrations {
  readonly hooks: Hooks;
  private timeline: number | null = null;

  /** `kick`: run a monitoring round now (the pre_promote verdict is in). */
  constructor(private readonly cfg: Config, log: Logger, private readonly host: IntegrationHost, private readonly kick: () => void) {
    this.hooks = new Hooks(cfg, log.withTag("hooks"), () => {
      const l = host.leadership();
      return { node: cfg.node_name, cluster: cfg.cluster, term: l.term, leader: l.leaderId ? host.nameOf(l.leaderId) : "", timeline: this.timeline };
    }, (r) => host.record({
      term: r.term, kind: "hook", node: cfg.node_name, reason: r.reason.slice(0, 500), oldPrimary: null, newPrimary: null, timeline: r.timeline, lsn: null,
    }));
  }

  /** Every monitoring round's report of the local PostgreSQL. */
  observe(r: PgReport): void {
    if (r.data === "present") this.timeline = r.position.timeline;
    this.hooks.observe({ running: r.running, up: r.up, inRecovery: r.inRecovery, leading: this.host.leadership().leading });
  }

  promoteCheck(term: number): PromoteCheck {
    return this.hooks.promoteCheck(term);
  }

  async checkPromote(term: number): Promise<void> {
    await this.hooks.checkPromote(term);
    this.kick();
  }
}
