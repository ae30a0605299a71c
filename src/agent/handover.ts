// A stopping agent's handover (SIGTERM, SIGINT): carries out core/handover.ts. A leader with a
// caught-up standby runs the operator's switchover (actions.ts: clean stop of its primary, final
// WAL confirmed, resign to the target), then waits until the new primary runs and its own server
// runs as that primary's standby with the lease file disarmed, so its watchdog never fences it.
// Bounded (HANDOVER_CHECKPOINT_MS for the primary's checkpoint, then handoverBoundMs from its clean
// stop on); otherwise it changes nothing and the agent stops as it always did.
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { HANDOVER_CHECKPOINT_MS, handoverBoundMs, handoverSettled, planShutdown } from "../core/handover.ts";
import { type Clock, realClock } from "../fence/clock.ts";
import { LEASE_FILE, readLeaseFile } from "../fence/lease-file.ts";
import type { Logger } from "../log.ts";
import type { ActionResult } from "../api/actions-contract.ts";
import type { Agent } from "./agent.ts";

/** The target's agent must answer a request within this before the primary is stopped. */
const PREFLIGHT_MS = 1000;
const POLL_MS = 50;

/** The parts of the agent a handover uses (a fake in tests). */
export type HandoverAgent = Pick<Agent, "nodeId" | "answers" | "handOver" | "nameOf"> & {
  loopContext: Pick<Agent["loopContext"], "candidates" | "leadership" | "paused" | "leaderPg" | "maxLagBytes">;
};

export async function handOverBeforeStop(sig: string, o: { cfg: Config; agent: HandoverAgent; database: boolean; enabled: boolean; log: Logger; clock?: Pick<Clock, "now" | "sleep"> }): Promise<void> {
  const { cfg, agent, log } = o;
  const clock = o.clock ?? realClock;
  const ctx = agent.loopContext; // the election and the candidates as the PostgreSQL loop sees them
  const self = () => ctx.candidates().find((c) => c.id === agent.nodeId)?.report ?? null;
  const lead = ctx.leadership();
  const plan = planShutdown({
    enabled: o.enabled, database: o.database, leading: lead.leading && lead.leaderId === agent.nodeId, paused: ctx.paused(),
    // The value in force, the switchover's (a cluster-wide `pgherd config set` overrides pgherd.toml).
    own: self(), candidates: ctx.candidates(), maxLagBytes: ctx.maxLagBytes(),
  });
  if (plan.kind === "stop") {
    if (lead.leading) log.warn(`${sig}: no handover: ${plan.reason}; PostgreSQL keeps running until this node's lease ends`);
    return;
  }
  const to = plan.to;
  // A target whose own agent is stopping (every agent stopped at once) would leave no primary.
  if (!(await agent.answers(to.id, PREFLIGHT_MS))) {
    log.warn(`${sig}: no handover: ${to.name}'s agent did not answer within ${PREFLIGHT_MS} ms`);
    return;
  }
  // From the clean stop of the primary on: the switchover begins it within HANDOVER_CHECKPOINT_MS
  // (its checkpoint first) or stops with the primary running, which ends the wait below at once.
  const afterStop = handoverBoundMs({ ...cfg.election, loop_ms: cfg.postgres.loop_ms });
  const bound = HANDOVER_CHECKPOINT_MS + afterStop;
  const t0 = clock.now();
  log.warn(`${sig}: handing leadership over to ${to.name} before stopping (its checkpoint at most ${HANDOVER_CHECKPOINT_MS / 1000} s, then at most ${Math.round(afterStop / 1000)} s)`);
  // The operator's switchover, its checkpoint limited: clean stop, final WAL confirmed, floor, resign to the target.
  let result: ActionResult | null = null;
  void agent.handOver(to.id).then((r) => (result = r), (e: Error) => (result = { status: 500, ok: false, message: e.message }));
  const leaseFile = join(cfg.state_dir, LEASE_FILE);
  let waiting = "";
  while (clock.now() - t0 < bound) {
    const r = result as ActionResult | null;
    // 504: handed over, the target's promotion not seen within 30 s: the wait for it goes on here, within the bound.
    if (r && !r.ok && r.status !== 504) return log.warn(`${sig}: handover not done: ${r.message}; stopping without it`);
    const l = ctx.leadership();
    const v = handoverSettled({
      self: agent.nodeId, leader: l.leaderId, leaderReport: ctx.leaderPg()?.report ?? null, own: self(),
      leaseArmed: leaseArmed(leaseFile, log),
      target: to.id, targetReachable: ctx.candidates().find((c) => c.id === to.id)?.report != null,
    });
    if (v.done) {
      return log.info(`${sig}: handed over to ${agent.nameOf(l.leaderId!)} in ${Math.round(clock.now() - t0)} ms; this server runs as its standby`);
    }
    waiting = v.waiting;
    if (v.giveUp) break;
    await clock.sleep(POLL_MS);
  }
  log.warn(`${sig}: handover not confirmed after ${Math.round((clock.now() - t0) / 1000)} s (${waiting}); stopping anyway`);
}

/** Whether this node's lease file holds a lease with a deadline; one that holds no lease (damaged) counts as armed: the wait goes on within its bound. */
function leaseArmed(file: string, log: Logger): boolean {
  try {
    return readLeaseFile(file)?.deadline != null;
  } catch (e) {
    log.warn(`handover: ${(e as Error).message}: taken as still armed`);
    return true;
  }
}
