// The mesh messages of a backend migration (src/core/consensus-migrate.ts), validated at receipt
// as part of src/agent/messages.ts: the leader's switch, a member's acknowledgement, and every
// migrated node's epoch (so a member that missed the switch adopts it later).
import { z } from "zod";
import { GuardSchema, MembershipSchema, NodeIdSchema } from "../core/messages.ts";

const backend = z.enum(["builtin", "etcd"]);
const epoch = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

/** Leader → voter: store `to` at `epoch` and run on it; to builtin with "term, voted for leader". */
export const MigrateSwitchSchema = z.object({
  t: z.literal("migrate-switch"), to: backend, epoch, leader: NodeIdSchema,
  term: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  leaderTerm: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** To builtin: the guard and membership stamped in the resumed term. */
  resumed: z.object({ guard: GuardSchema, membership: MembershipSchema }).optional(),
});
const term = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/**
 * Voter → leader: `epoch` is stored (ok), or why not; both carry the voter's backend, epoch and
 * stored built-in term now (`own`): a refusal's let the leader's next attempt start above them, an
 * acceptance's is the report the way back to builtin needs.
 */
export const MigrateAckSchema = z.object({
  t: z.literal("migrate-ack"), epoch, ok: z.boolean(), reason: z.string().max(300),
  own: z.object({ backend, epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), term }).optional(),
});
/**
 * Every node whose record is a migration's (epoch ≥ 1), every few seconds, holds included: the
 * backend in force and the node's stored built-in term (the way back to builtin resumes above it).
 */
export const MigrateEpochSchema = z.object({ t: z.literal("migrate-epoch"), backend, epoch, term: term.optional() });

export type MigrateSwitch = z.infer<typeof MigrateSwitchSchema>;
export type MigrateMsg = MigrateSwitch | z.infer<typeof MigrateAckSchema> | z.infer<typeof MigrateEpochSchema>;
