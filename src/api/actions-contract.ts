// What the HTTP API asks the agent to do, and what it gets back. The agent implements it.
import { z } from "zod";
import { accessRules } from "../config/schema-access.ts";
import { dynamicSettings } from "../config/schema-dynamic.ts";
import { backupAction } from "../backup/backup-contract.ts";

/** A member as an operator names it: its node_name or its node id. */
const memberRef = z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, "must be a node name or node id");

export const ActionRequestSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("switchover"), to: z.string().min(1, "names no member").max(64).optional(), at: z.string().min(1, "names no time").max(64).optional(), force: z.boolean().optional() }),
  /** Drop the scheduled switchover (the agent answers 404 when none is scheduled). */
  z.strictObject({ kind: z.literal("switchover-cancel") }),
  z.strictObject({ kind: z.literal("failover"), to: z.string().min(1, "names no member").max(64), force: z.boolean().optional(), acceptDataLoss: z.boolean().optional() }),
  z.strictObject({ kind: z.literal("rejoin"), forceClone: z.boolean().optional() }),
  z.strictObject({ kind: z.literal("pause") }),
  z.strictObject({ kind: z.literal("resume") }),
  /** Cluster-wide configuration (docs/api.md): keys to set, or a whole document, on top of version `base`. */
  z.strictObject({
    kind: z.literal("config"), durability: z.enum(["quorum", "strict", "async"]).optional(), base: z.number().int().min(0).optional(),
    set: z.record(z.string().max(200), z.union([z.string().max(10_000), z.number(), z.boolean(), z.null(), accessRules])).optional(),
    replace: dynamicSettings.optional(),
  }),
  /** `pgherd member approve NODE`: the node (name or node id) becomes a voter once connected. */
  z.strictObject({ kind: z.literal("member-approve"), node: memberRef }),
  /** `pgherd member remove NODE`: a voter (alive or dead) leaves the voter set; an approval is withdrawn. */
  z.strictObject({ kind: z.literal("member-remove"), node: memberRef }),
  /**
   * `pgherd restart`: a fast restart of one member's PostgreSQL (absent: this node's), through the
   * leader (never more than one node down; `force` goes straight to the member), over the mesh to
   * it (src/agent/restart-actions.ts).
   */
  z.strictObject({ kind: z.literal("node-restart"), node: memberRef.optional(), force: z.boolean().optional() }),
  /** `pgherd reload`: one member's agent re-reads its pgherd.toml and reloads its PostgreSQL. */
  z.strictObject({ kind: z.literal("node-reload"), node: memberRef.optional() }),
  /** `pgherd consensus migrate --to etcd|builtin`: run by the leader (src/agent/migrate-driver.ts). */
  z.strictObject({ kind: z.literal("consensus-migrate"), to: z.enum(["etcd", "builtin"], 'must be "etcd" or "builtin"') }),
  /** `pgherd backup`: the leader picks where it runs (src/backup/choose.ts) and hands it to that member. */
  backupAction,
]);
export type ActionRequest = z.infer<typeof ActionRequestSchema>;

/**
 * What only the leader sets in a request it hands to a member (a backup's `run`), named; null when
 * the request carries none. Refused from the local API and from a peer that does not lead.
 */
export function leaderOnlyPart(req: ActionRequest): string | null {
  if (req.kind === "backup" && req.run) return "a backup handed over by the leader (run)";
  return null;
}

/**
 * Longest a switchover runs on the leader before it answers: stopForHandover (src/agent/pg/loop.ts:
 * the executor's slot 30 s, the CHECKPOINT 60 s, the fast stop 60 s, the final position 5 s), the
 * target's confirmation 5 s, the wait for its promotion 30 s; and a margin. A request forwarded to
 * the leader waits this long, the CLI a little longer: one cut short told the operator it failed
 * while it went on, and a retry switched over again.
 */
export const SWITCHOVER_ANSWER_MS = 200_000;

export interface ActionResult {
  status: number;
  ok: boolean;
  message: string;
  detail?: unknown;
}

/** One role change as GET /history and the dashboard show it. */
export interface HistoryEntry {
  at: string;
  term: number;
  kind: string;
  /** The node that recorded it. */
  node: string;
  reason: string;
  oldPrimary: string | null;
  newPrimary: string | null;
  timeline: number | null;
  lsn: string | null;
}
