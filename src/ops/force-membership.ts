// `pgherd member force` carried out (the decision: src/core/force-membership.ts). Run on a surviving
// voter whose agent is stopped, as the agent's OS user: reads the config and the stored election
// state, checks nothing answers on the agent's API address, and stores the forced membership with
// the agent's own store (election.json, fsync'd). Nothing is written without `write`.
import { existsSync, statSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import { canLead } from "../core/sync-exclusion.ts";
import { clearedGuard, planForcedMembership } from "../core/force-membership.ts";
import { isNodeId, type Membership } from "../core/messages.ts";
import { ensurePrivateDir } from "../store/dir.ts";
import { ElectionStore } from "../store/election-state.ts";
import { existingNodeId } from "../store/node-id.ts";

export type ForceOutcome =
  | { ok: true; written: boolean; self: string; before: Membership; after: Membership; lost: string[]; term: number; guard: string | null; guardCleared: boolean }
  | { ok: false; usage: boolean; message: string };

/** What answers on the agent's API address, or null when nothing does (connection refused or no answer within 1.5 s). */
export async function agentAnswering(apiUrl: string): Promise<string | null> {
  try {
    const r = await fetch(`${apiUrl}/node`, { signal: AbortSignal.timeout(1500), tls: { rejectUnauthorized: false } });
    const node = ((await r.json().catch(() => null)) as { node?: { id?: unknown; name?: unknown } } | null)?.node;
    return typeof node?.id === "string" ? `the agent of node ${String(node.name ?? node.id)} (${node.id})` : `something (HTTP ${r.status})`;
  } catch {
    return null; // refused, no answer within 1.5 s, or not HTTP at all
  }
}

/** The ids `names` stand for: node ids as they are, this node's node_name as its id. */
function resolveIds(names: readonly string[], cfg: Config, self: string): string[] | string {
  const out: string[] = [];
  for (const n of names) {
    if (isNodeId(n)) out.push(n);
    else if (n === cfg.node_name) out.push(self);
    else return `${JSON.stringify(n)} is neither a node id (16 lowercase hex, as pgherd member ls shows) nor this node's name`;
  }
  return out;
}

export async function forceMembership(cfg: Config, o: { voters: readonly string[]; write: boolean; acceptDataLoss: boolean; apiUrl: string; uid?: number }): Promise<ForceOutcome> {
  if (cfg.consensus.backend === "etcd") {
    return { ok: false, usage: true, message: "with [consensus] backend = \"etcd\" the voters are kept in etcd, which this command does not change (docs/operations.md, \"A majority of the voters lost for good\")" };
  }
  const uid = o.uid ?? process.getuid?.() ?? 0;
  const dir = cfg.state_dir;
  if (!existsSync(dir)) return { ok: false, usage: true, message: `${dir} (state_dir) does not exist: this host never ran the agent with this config` };
  const owner = statSync(dir).uid;
  if (uid === 0 && owner !== 0) return { ok: false, usage: true, message: `run it as the agent's OS user, the owner of ${dir}: sudo -u ${cfg.postgres.os_user} pgherd member force … (or runuser -u ${cfg.postgres.os_user} --)` };
  ensurePrivateDir(dir); // this user's, no link
  const self = existingNodeId(dir);
  if (!self) return { ok: false, usage: true, message: `${dir} holds no node id: this host never ran the agent with this config` };
  const ids = resolveIds(o.voters, cfg, self);
  if (typeof ids === "string") return { ok: false, usage: true, message: ids };
  const store = new ElectionStore(dir);
  const st = store.get();
  const plan = planForcedMembership({ term: st.term, membership: st.membership, self, canLead: canLead({ role: cfg.role, nofailover: cfg.tags.nofailover, priority: cfg.priority }), keep: ids });
  if (!plan.ok) return { ok: false, usage: true, message: plan.reason };
  const g = st.guard;
  const guard = g?.block ? "automatic failover is blocked (the last primary acknowledged writes without enough synchronous standbys)"
    : g?.floor ? `a new primary must hold WAL up to ${g.floor.lsn} on timeline ${g.floor.timeline}` : null;
  if (o.write) {
    const running = await agentAnswering(o.apiUrl);
    if (running) return { ok: false, usage: false, message: `${running} answers on ${o.apiUrl}: stop this host's agent first (systemctl stop pgherd), then run this again` };
    // Kept, a survivor stands only past it (a floor it holds, no block it does not hold: election.ts);
    // cleared with --accept-data-loss, as a forced election (`failover --accept-data-loss`) clears it.
    const kept = g && guard && o.acceptDataLoss ? clearedGuard(g, plan.term) : g;
    store.saveElection({ term: plan.term, votedFor: null, membership: plan.membership, ledTerm: null, guard: kept ?? null, hold: st.hold });
  }
  return { ok: true, written: o.write, self, before: st.membership!, after: plan.membership, lost: plan.lost, term: plan.term, guard, guardCleared: guard !== null && o.acceptDataLoss };
}
