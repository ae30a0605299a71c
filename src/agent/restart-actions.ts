// `pgherd restart` and `pgherd reload`, one member at a time: the API hands the request to the
// local agent, which carries it over the mesh to the member named (or runs it here). A restart goes
// through the leader first, which grants one at a time and only while every other database member
// is healthy (core/restart-plan.ts restartRefusal) and no switchover runs (actions.ts); `force`
// skips the leader. What the leader hands to the member is the request as an agent of an earlier
// version sent it; a member that does not lead runs a restart of itself only when it comes from the
// node it knows as the leader (actions.ts runAsLeader). The order of a
// rolling restart is core/restart-plan.ts's, run by the CLI (src/cli/cmd-restart.ts).
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import { restartMember, restartRefusal } from "../core/restart-plan.ts";
import { describePlan } from "../ops/reload-plan.ts";
import { reloadConfigNow } from "../ops/reload.ts";
import type { ActionHost } from "./actions.ts";

export type NodeOpRequest = Extract<ActionRequest, { kind: "node-restart" | "node-reload" }>;

/** A restart waits for the serial executor (a round, at most a switchover's stop) and pg_ctl's own bounds. */
export const NODE_OP_TIMEOUT_MS = 180_000;

export const isNodeOp = (req: ActionRequest): req is NodeOpRequest => req.kind === "node-restart" || req.kind === "node-reload";

/** How long the leader waits for its view to show the other members healthy (a report behind the member's own) before it refuses. */
const HEALTHY_WAIT_MS = 5_000;

/** A forwarded restart: the leader's first hop, then the member's restart and the leader's wait for the others' health. */
export const FORWARDED_RESTART_MS = NODE_OP_TIMEOUT_MS + HEALTHY_WAIT_MS + 15_000;

/** The leader's grants of members' restarts, one at a time. The agent's ActionRunner owns it. */
export class RestartGrants {
  /** The member whose restart this leader granted and has not yet heard back from. */
  private granted: string | null = null;
  /** Members whose restart the leader is deciding (waiting for its view to show the others healthy). */
  private readonly deciding = new Set<string>();

  /** `switching`: a switchover runs on this leader (its stopped primary still reads as running). */
  constructor(private readonly h: ActionHost, private readonly switching: () => boolean) {}

  /** The member whose restart this leader granted or is deciding and has not yet heard back from, or null (a switchover waits for none). */
  underWay(): string | null {
    return this.granted ?? this.deciding.values().next().value ?? null;
  }

  /** On the leader: grant one member's restart when the rule allows it, and hand it to that member. */
  async lead(req: Extract<NodeOpRequest, { kind: "node-restart" }>): Promise<ActionResult> {
    const h = this.h;
    const ref = req.node ?? h.nodeId;
    const target = h.candidates().find((c) => c.id === ref || c.name === ref);
    if (!target) return { status: 404, ok: false, message: `no member named ${ref}` };
    let refusal: string | null = null;
    this.deciding.add(target.name);
    try {
      for (const until = h.wallNow() + HEALTHY_WAIT_MS; ;) {
        refusal = restartRefusal(h.clusterView().members.map(restartMember), target.name, this.granted);
        if (refusal === null || this.granted !== null || h.wallNow() >= until) break;
        await h.sleep(200);
      }
    } finally {
      this.deciding.delete(target.name);
    }
    // Never during a switchover (its target may be the member asked for). A switchover refuses while
    // a restart is decided (underWay), and ActionRunner refuses a restart during one: checked again
    // after the wait all the same (review: the wait used to let a switchover start meanwhile).
    if (refusal === null && this.switching()) refusal = "a switchover is in progress: one node down at a time; try again once it is done";
    // The leadership may have gone during the wait: a member that has not heard of the new leader yet
    // would still take this node's grant (review).
    if (refusal === null && !h.electionState().leading) return { status: 503, ok: false, message: `${h.nodeName} no longer leads: the restart of ${target.name} was not granted; try again` };
    if (refusal !== null) return { status: 409, ok: false, message: `${h.nodeName} (leader): restart of ${target.name} refused: ${refusal}` };
    this.granted = target.name;
    try {
      return await runNodeOp(h, { kind: "node-restart", node: target.id });
    } finally {
      this.granted = null;
    }
  }
}

export async function runNodeOp(h: ActionHost, req: NodeOpRequest): Promise<ActionResult> {
  const target = req.node ? h.candidates().find((c) => c.id === req.node || c.name === req.node) : null;
  if (req.node && !target) return { status: 404, ok: false, message: `no member named ${req.node}` };
  if (target && target.id !== h.nodeId) {
    if (!h.isConnected(target.id)) return { status: 503, ok: false, message: `${target.name} is not connected` };
    return h.askNode(target.id, { ...req, node: target.id }, NODE_OP_TIMEOUT_MS);
  }
  try {
    if (req.kind === "node-reload") {
      const plan = await reloadConfigNow();
      const note = plan ? `pgherd.toml reloaded (${describePlan(plan)})` : "pgherd.toml NOT reloaded: it does not load (the agent's log says why), the running configuration stays";
      if (!h.pg) return { status: plan ? 200 : 422, ok: plan !== null, message: `${h.nodeName}: ${note}; no PostgreSQL here` };
      const r = await h.pg.reloadServer(note);
      return { status: r.ok && plan ? 200 : 422, ok: r.ok && plan !== null, message: r.message };
    }
    if (!h.pg) return { status: 400, ok: false, message: `${h.nodeName} is a witness: no PostgreSQL to restart` };
    const r = await h.pg.restartServer();
    return { status: r.ok ? 200 : 409, ok: r.ok, message: r.message };
  } catch (e) {
    return { status: 500, ok: false, message: `${h.nodeName}: ${req.kind === "node-reload" ? "reload" : "restart"} failed: ${(e as Error).message}` };
  }
}
