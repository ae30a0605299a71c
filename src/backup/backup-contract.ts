// The `backup` action (POST /backup): what the operator sends (a type), and what the leader adds
// when it hands the backup to the member that runs it (`run`: the primary's pgBackRest facts when
// that member is a standby). Validated at receipt like every action.
import { z } from "zod";

const word = (max: number) => z.string().min(1).max(max).regex(/^[A-Za-z0-9_.:/@+-]+$/, "must be a plain path or name");

export const PrimaryFactsSchema = z.strictObject({
  tlsPort: z.int().min(1).max(65535),
  path: word(1000).startsWith("/"),
  port: z.int().min(1).max(65535),
  socketPath: word(1000).startsWith("/"),
  user: word(63),
});
export type PrimaryFacts = z.infer<typeof PrimaryFactsSchema>;

export const backupAction = z.strictObject({
  kind: z.literal("backup"),
  type: z.enum(["full", "diff", "incr"]).optional(),
  /** Set by the leader only (refused from the API): run it here; `primary` null = this node is the primary. */
  run: z.strictObject({ primary: PrimaryFactsSchema.nullable(), leader: z.string().max(64) }).optional(),
});
