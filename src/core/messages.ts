// Wire schemas of everything the core exchanges. Every frame read off the
// network is parsed by these before the core sees it.
import { z } from "zod";
import { isLsn } from "./position.ts";

const nodeId = z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/);
const term = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const ms = z.number().finite();

export const PositionSchema = z.strictObject({
  timeline: z.number().int().min(0).max(0xffffffff),
  lsn: z.string().max(17).refine(isLsn, "not an LSN"),
});

export const MembershipVersionSchema = z.strictObject({ term: z.number().int().min(-1), index: z.number().int().min(-1) });

export const MembershipSchema = z.strictObject({
  term,
  index: z.number().int().min(0),
  voters: z.array(nodeId).min(1).max(64),
});

export type Membership = z.infer<typeof MembershipSchema>;

/**
 * The leader's statement of which candidates could hold every acknowledged write (docs/design.md,
 * durability). block: none known (the primary acknowledged writes without enough synchronous
 * standbys): no automatic failover. floor: a candidate must be at or beyond it.
 */
export const GuardSchema = z.strictObject({
  /** Term of the leader that set it: a later leader's guard supersedes an earlier one. */
  term: z.number().int().min(0).optional(),
  seq: z.number().int().min(0),
  block: z.boolean(),
  /** With block: the primary that ran degraded; it alone holds every acknowledged write. */
  holder: z.string().min(1).max(64).nullable().optional(),
  floor: PositionSchema.nullable(),
});
export type Guard = z.infer<typeof GuardSchema>;
export type MembershipVersion = z.infer<typeof MembershipVersionSchema>;

export const ElectionMsgSchema = z.discriminatedUnion("t", [
  z.strictObject({ t: z.literal("prevote"), term, cfg: MembershipVersionSchema, pos: PositionSchema, force: z.boolean().optional(), guard: GuardSchema.optional() }),
  z.strictObject({ t: z.literal("prevote-resp"), term, granted: z.boolean(), reason: z.string().max(200).optional(), membership: MembershipSchema.optional() }),
  z.strictObject({ t: z.literal("vote"), term, cfg: MembershipVersionSchema, pos: PositionSchema, force: z.boolean().optional(), guard: GuardSchema.optional() }),
  z.strictObject({ t: z.literal("vote-resp"), term, granted: z.boolean(), reason: z.string().max(200).optional(), membership: MembershipSchema.optional() }),
  z.strictObject({ t: z.literal("hb"), term, seq: ms, membership: MembershipSchema, pos: PositionSchema, guard: GuardSchema.optional() }),
  z.strictObject({ t: z.literal("hb-resp"), term, seq: ms, ok: z.boolean(), cfg: MembershipVersionSchema, guardSeq: z.number().int().min(0).optional() }),
  z.strictObject({ t: z.literal("resign"), term, transferTo: nodeId.optional() }),
]);

export type ElectionMsg = z.infer<typeof ElectionMsgSchema>;
