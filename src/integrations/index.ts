// What the agent tells the rest of an operator's stack: [hooks] (src/hooks), [sentry]
// (sentry.ts) and [pgpool] (pgpool.ts). The agent feeds it its PostgreSQL reports and the history entries it records; it
// never decides anything itself (the pre_promote verdict is read by core/ha.ts through the
// PostgreSQL loop).
import type { Config } from "../config/schema.ts";
import type { PromoteCheck } from "../core/ha.ts";
import type { PgReport } from "../core/report.ts";
import type { Logger } from "../log.ts";
import { Hooks } from "../hooks/hooks.ts";
import type { HistoryEntry } from "../agent/history.ts";
import type { SentryClient, SentryLevel } from "./sentry.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { PgpoolKeeper } from "./pgpool.ts";

/** Role changes worth an event, and how loud. Hook runs only when they failed. */
const EVENT_LEVELS: Partial<Record<HistoryEntry["kind"], SentryLevel>> = {
  failover: "warning", fence: "warning", restart: "warning", switchover: "info", rejoin: "info", promote: "info",
  bootstrap: "info", adopt: "info", pause: "info", resume: "info", config: "info", schedule: "info", hook: "warning",
};

/** What the integrations read from the agent. */
export interface IntegrationHost {
  readonly nodeId: string;
  leadership(): { term: number; leading: boolean; leaderId: string | null };
  nameOf(id: string): string;
  record(e: Omit<HistoryEntry, "id" | "at">): void;
  /** The cluster's role passwords once known (scrubbed from anything sent out). */
  secrets(): { replPassword: string; monitorPassword: string } | undefined;
  /** This agent's composition of the cluster table (the leader's is the cluster's). */
  localView(): ClusterView;
}

export class Integrations {
  readonly hooks: Hooks;
  private timeline: number | null = null;
  private role = "unknown";
  private sentry: SentryClient | null = null;
  private readonly pgpool: PgpoolKeeper | null = null;

  /** `kick`: run a monitoring round now (the pre_promote verdict is in). */
  constructor(private readonly cfg: Config, log: Logger, private readonly host: IntegrationHost, private readonly kick: () => void) {
    this.hooks = new Hooks(cfg, log.withTag("hooks"), () => {
      const l = host.leadership();
      return { node: cfg.node_name, cluster: cfg.cluster, term: l.term, leader: l.leaderId ? host.nameOf(l.leaderId) : "", timeline: this.timeline };
    }, (r) => host.record({
      term: r.term, kind: "hook", node: cfg.node_name, reason: r.reason.slice(0, 500), oldPrimary: null, newPrimary: null, timeline: r.timeline, lsn: null,
    }));
    if (cfg.pgpool.pcp_host) {
      this.pgpool = new PgpoolKeeper(cfg.pgpool, log.withTag("pgpool"), () => (host.leadership().leading ? host.localView() : null));
      this.pgpool.start();
    }
  }

  /** [sentry]: report role changes here, tagged with this node's role and term, scrubbed of the cluster's passwords. */
  useSentry(client: SentryClient | null): void {
    this.sentry = client;
    if (!client) return;
    client.context = () => ({ role: this.role, term: this.host.leadership().term });
    client.scrub.also(() => {
      const s = this.host.secrets();
      return s ? [s.replPassword, s.monitorPassword] : [];
    });
  }

  /** A history entry this node recorded (not one merged from a peer: each is reported once). */
  recorded(e: HistoryEntry): void {
    const level = EVENT_LEVELS[e.kind];
    if (!this.sentry || !level || (e.kind === "hook" && / exit 0 in /.test(e.reason))) return;
    this.sentry.capture(level, `${e.kind}: ${e.reason}`, {
      kind: e.kind, oldPrimary: e.oldPrimary, newPrimary: e.newPrimary, timeline: e.timeline, lsn: e.lsn, at: e.at,
    }, {
      term: String(e.term),
      // Recorded as the promotion finishes, before the next round observes it: this node is the primary now.
      ...(e.newPrimary === this.cfg.node_name ? { role: "primary" } : {}),
    });
  }

  /** Every monitoring round's report of the local PostgreSQL. */
  observe(r: PgReport): void {
    if (r.data === "present") this.timeline = r.position.timeline;
    const role = !r.running ? "stopped" : r.inRecovery === null ? "unknown" : r.inRecovery ? "replica" : "primary";
    if (role === "primary" && this.role !== "primary") this.pgpool?.kick(); // just promoted: point pgpool here now
    this.role = role;
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
