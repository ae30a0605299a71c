// Wire schemas of everything the core exchanges. Every frame read off the
// network is parsed by these before the core sees it.
import { z } from "zod";
import { isLsn } from "./position.ts";

/**
 * A node's identity: 16 lowercase hex characters, as store/node-id.ts creates it. The one schema for
 * node ids wherever one arrives or is stored (beacon, mesh hello, election messages, state files,
 * operator requests), so an id that could not be read back is never accepted.
 */
export const NODE_ID_PATTERN = /^[0-9a-f]{16}$/;
export const NodeIdSchema = z.string().regex(NODE_ID_PATTERN, "must be a node id (16 lowercase hex characters)");
export type NodeId = z.infer<typeof NodeIdSchema>;

export function isNodeId(s: unknown): boolean {
  return typeof s === "string" && NODE_ID_PATTERN.test(s);
}

const nodeId = NodeIdSchema;
const term = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const ms = z.number().finite();

export const PositionSchema = z.object({
  timeline: z.number().int().min(0).max(0xffffffff),
  lsn: z.string().max(17).refine(isLsn, "not an LSN"),
});

export const MembershipVersionSchema = z.object({ term: z.number().int().min(-1), index: z.number().int().min(-1) });

export const MembershipSchema = z.object({
  term,
  index: z.number().int().min(0),
  voters: z.array(nodeId).min(1).max(64),
  /**
   * Nodes an operator approved (`pgherd member approve`) that are not voters yet: the leader adds
   * each once it is connected. Stored with the membership, so every later leader knows them.
   */
  approved: z.array(nodeId).max(64).optional(),
  /**
   * Nodes an operator removed (`pgherd member remove`), newest last: `auto_join` does not add them
   * back, under this leader or a later one, until an operator approves them again.
   */
  removed: z.array(nodeId).max(64).optional(),
});

export type Membership = z.infer<typeof MembershipSchema>;

/**
 * The leader's statement of which candidates could hold every acknowledged write (docs/design.md,
 * durability). block: none known (the primary acknowledged writes without enough synchronous
 * standbys): no automatic failover. floor: a candidate must be at or beyond it.
 */
export const GuardSchema = z.object({
  /** Term of the leader that set it: a later leader's guard supersedes an earlier one. */
  term: z.number().int().min(0).optional(),
  seq: z.number().int().min(0),
  block: z.boolean(),
  /** With block: the primary that ran degraded; it alone holds every acknowledged write. */
  holder: nodeId.nullable().optional(),
  floor: PositionSchema.nullable(),
  /**
   * The highest timeline number a leader reserved for a promotion (core/timelines.ts): stored by a
   * majority before that promotion, so every later leader learns it from its voters.
   */
  timeline: z.number().int().min(1).max(0xffffffff).optional(),
});
export type Guard = z.infer<typeof GuardSchema>;
export type MembershipVersion = z.infer<typeof MembershipVersionSchema>;

export const ElectionMsgSchema = z.discriminatedUnion("t", [
  z.object({ t: z.literal("prevote"), term, cfg: MembershipVersionSchema, pos: PositionSchema, force: z.boolean().optional(), guard: GuardSchema.optional(), transfer: term.optional() }),
  z.object({ t: z.literal("prevote-resp"), term, granted: z.boolean(), reason: z.string().max(200).optional(), membership: MembershipSchema.optional() }),
  z.object({ t: z.literal("vote"), term, cfg: MembershipVersionSchema, pos: PositionSchema, force: z.boolean().optional(), guard: GuardSchema.optional(), transfer: term.optional() }),
  // guard: a granting voter's (the new leader carries on the newest its votes hold); timeline: its reservation, for candidates of older versions.
  z.object({ t: z.literal("vote-resp"), term, granted: z.boolean(), reason: z.string().max(200).optional(), membership: MembershipSchema.optional(), timeline: z.number().int().min(1).max(0xffffffff).optional(), guard: GuardSchema.optional() }),
  // hold: how long a follower waits after this heartbeat before it votes or stands (the leader's lease, fence and drift: election.ts).
  z.object({ t: z.literal("hb"), term, seq: ms, left: ms.min(0).optional(), hold: z.number().int().min(0).max(3_600_000).optional(), membership: MembershipSchema, pos: PositionSchema, guard: GuardSchema.optional() }),
  z.object({ t: z.literal("hb-resp"), term, seq: ms, ok: z.boolean(), cfg: MembershipVersionSchema, guardSeq: z.number().int().min(0).optional(), guardTimeline: z.number().int().min(1).max(0xffffffff).optional() }),
  z.object({ t: z.literal("resign"), term, transferTo: nodeId.optional() }),
]);

export type ElectionMsg = z.infer<typeof ElectionMsgSchema>;
