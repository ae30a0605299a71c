// [hooks]: on_start, on_stop and on_role_change run off the critical path (one at a time, in
// order, each bounded by the timeout; nothing waits for them); pre_promote is the one the
// PostgreSQL loop waits for: its verdict is a fact the pure decision reads (core/ha.ts
// `prePromote`), so a veto makes the leader resign and another standby take over.
import type { Config } from "../config/schema.ts";
import type { PromoteCheck } from "../core/ha.ts";
import type { Logger } from "../log.ts";
import { observeRole, type Observation, type RoleEvent, type WatchState } from "./role-watch.ts";
import { describeRun, runHook, succeeded, type HookRun } from "./runner.ts";

export interface HookContext {
  node: string;
  cluster: string;
  term: number;
  /** The leader's node name ("" when none). */
  leader: string;
  timeline: number | null;
}

export interface HookRecord {
  hook: string;
  /** One line: which hook, for which change, and how it ended. */
  reason: string;
  timeline: number | null;
  term: number;
}

/** A role event, or pre_promote (a standby about to become the primary). */
type HookEvent = Omit<RoleEvent, "action"> & { action: RoleEvent["action"] | "pre_promote" };

/** Callbacks that wait longer than this many runs are dropped (logged): a hook never backs up without bound. */
const MAX_QUEUED = 32;

export class Hooks {
  private watch: WatchState | null = null;
  private queue: Array<() => Promise<void>> = [];
  private draining = false;
  private verdict: { term: number; vetoed: string | null } | null = null;
  /** Settles when the callback queue is empty (tests, shutdown). */
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly cfg: Pick<Config, "hooks">,
    private readonly log: Logger,
    private readonly context: () => HookContext,
    private readonly record: (r: HookRecord) => void,
  ) {
    const configured = Object.entries(cfg.hooks).filter(([k, v]) => k !== "timeout_ms" && v !== "").map(([k]) => k);
    if (configured.length) log.info(`hooks configured: ${configured.join(", ")} (timeout ${cfg.hooks.timeout_ms} ms)`);
  }

  /** A monitoring round's observation of the local server: queues the callbacks it calls for. */
  observe(o: Observation): RoleEvent[] {
    const { state, events } = observeRole(this.watch, o);
    this.watch = state;
    for (const e of events) this.enqueue(e);
    return events;
  }

  /** pre_promote's verdict for `term`: allowed without a hook; unchecked until it ran in this term. */
  promoteCheck(term: number): PromoteCheck {
    if (this.cfg.hooks.pre_promote === "") return "allowed";
    if (this.verdict?.term !== term) return "unchecked";
    return this.verdict.vetoed === null ? "allowed" : { vetoed: this.verdict.vetoed };
  }

  /** Runs pre_promote for `term` (awaited by the PostgreSQL loop: this is the one hook that may delay a promotion). */
  async checkPromote(term: number): Promise<void> {
    const ctx = { ...this.context(), term };
    const r = await this.run("pre_promote", this.cfg.hooks.pre_promote, { action: "pre_promote", role: "replica", oldRole: "replica", newRole: "primary" }, ctx);
    const vetoed = succeeded(r) ? null : `pre_promote ${describeRun(r, this.cfg.hooks.timeout_ms)}`;
    this.verdict = { term, vetoed };
    if (vetoed) this.log.warn(`${vetoed}: this node will not be promoted in term ${term}`);
  }

  /** Resolves once every queued callback has run. */
  drained(): Promise<void> {
    return this.idle;
  }

  private enqueue(e: RoleEvent): void {
    const path = this.cfg.hooks[e.action];
    if (path === "") return;
    const ctx = this.context(); // the facts at the time of the change, not when the hook gets its turn
    if (this.queue.length >= MAX_QUEUED) {
      this.log.warn(`hook ${e.action} (${e.oldRole ?? "none"} -> ${e.newRole ?? "none"}) dropped: ${MAX_QUEUED} hook runs are already waiting`);
      return;
    }
    this.queue.push(async () => void (await this.run(e.action, path, e, ctx)));
    if (!this.draining) this.idle = this.drain();
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      for (let job = this.queue.shift(); job; job = this.queue.shift()) await job().catch((err: Error) => this.log.error(`hook: ${err.message}`));
    } finally {
      this.draining = false;
    }
  }

  private async run(hook: string, path: string, e: HookEvent, ctx: HookContext): Promise<HookRun> {
    const env = hookEnv(e, ctx);
    const change = `${e.oldRole ?? "none"} -> ${e.newRole ?? "none"}`;
    this.log.info(`hook ${hook} (${change}): running ${path}`);
    const r = await runHook({ path, args: [e.action, e.role, ctx.cluster], env, timeoutMs: this.cfg.hooks.timeout_ms, log: this.log, name: hook });
    const how = describeRun(r, this.cfg.hooks.timeout_ms);
    const line = `hook ${hook} (${change}) ${how}`;
    if (succeeded(r)) this.log.info(line);
    else this.log.warn(line);
    this.record({ hook, reason: line, timeline: ctx.timeline, term: ctx.term });
    return r;
  }
}

/** The environment a hook gets (besides PATH, HOME, LANG): every fact as PGHERD_*. */
export function hookEnv(e: HookEvent, ctx: HookContext): Record<string, string> {
  return {
    PGHERD_ACTION: e.action,
    PGHERD_ROLE: e.role,
    PGHERD_OLD_ROLE: e.oldRole ?? "",
    PGHERD_NEW_ROLE: e.newRole ?? "",
    PGHERD_NODE: ctx.node,
    PGHERD_CLUSTER: ctx.cluster,
    PGHERD_LEADER: ctx.leader,
    PGHERD_TERM: String(ctx.term),
    PGHERD_TIMELINE: ctx.timeline === null ? "" : String(ctx.timeline),
  };
}
