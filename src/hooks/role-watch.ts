// Which hooks a change of the local PostgreSQL calls for, from the monitoring rounds' reports.
// Pure: one observation in, the events out (Patroni's callback names and roles).
//
// - not running → running: on_start (role: what it runs as)
// - running → not running: on_stop; a primary stopped while this node does not lead (fenced,
//   demoted) also changes role: on_role_change primary → demoted
// - running with a role other than the last announced one: on_role_change (replica → primary on a
//   promotion, primary|demoted → replica when a former primary follows the new one)
// The first observation after the agent starts is the baseline: it calls nothing.

export type PgRole = "primary" | "replica" | "demoted";
export type HookAction = "on_start" | "on_stop" | "on_role_change";

export interface RoleEvent {
  action: HookAction;
  /** The role the hook is told about (Patroni's second argument): the new one, or the stopped server's. */
  role: PgRole;
  oldRole: PgRole | null;
  newRole: PgRole | null;
}

export interface Observation {
  running: boolean;
  up: boolean;
  inRecovery: boolean | null;
  /** This node holds the leader lease. */
  leading: boolean;
}

export interface WatchState {
  /** What the server ran as at the last observation ("stopped": not running). */
  running: "primary" | "replica" | "stopped";
  /** The role last announced to the hooks (null: none yet). */
  role: PgRole | null;
}

export function observeRole(prev: WatchState | null, o: Observation): { state: WatchState | null; events: RoleEvent[] } {
  // A running server that does not answer yet (starting, overloaded) tells nothing new, and is no
  // baseline: taken as "stopped", an agent restarted beside a busy server called on_start (review).
  if (o.running && (!o.up || o.inRecovery === null)) return { state: prev, events: [] };
  const now: WatchState["running"] = !o.running ? "stopped" : o.inRecovery ? "replica" : "primary";
  if (!prev) return { state: { running: now, role: now === "stopped" ? null : now }, events: [] };
  if (now === prev.running) return { state: prev, events: [] };
  const events: RoleEvent[] = [];
  if (now === "stopped") {
    events.push({ action: "on_stop", role: prev.running as PgRole, oldRole: prev.role, newRole: prev.role });
    if (prev.running === "primary" && !o.leading) {
      events.push({ action: "on_role_change", role: "demoted", oldRole: "primary", newRole: "demoted" });
      return { state: { running: now, role: "demoted" }, events };
    }
    return { state: { running: now, role: prev.role }, events };
  }
  if (prev.running === "stopped") events.push({ action: "on_start", role: now, oldRole: prev.role, newRole: now });
  if (prev.role !== null && prev.role !== now) events.push({ action: "on_role_change", role: now, oldRole: prev.role, newRole: now });
  return { state: { running: now, role: now }, events };
}
