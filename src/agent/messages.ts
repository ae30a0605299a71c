// Everything an agent accepts from a peer over the mesh, validated by zod before use.
import { z } from "zod";
import { ElectionMsgSchema, PositionSchema } from "../core/messages.ts";
import { ClusterViewSchema } from "../core/cluster-view.ts";
import { ActionRequestSchema } from "../api/actions-contract.ts";
import { HistoryEntrySchema } from "./history.ts";
import { ScheduledSwitchoverSchema } from "./flags.ts";

import { PgReportSchema } from "../core/report.ts";
import { ExclusionSchema, HeardSchema } from "../core/sync-exclusion.ts";
import { ClusterCaSchema } from "../store/cluster-secrets.ts";
import { FailsafeReqSchema, FailsafeRespSchema } from "../consensus/etcd/failsafe-core.ts";
import { MigrateAckSchema, MigrateEpochSchema, MigrateSwitchSchema } from "../consensus/migrate-msgs.ts";
export type { PgReport } from "../core/report.ts";

const DynVersion = z.object({ version: z.number().int().min(1), term: z.number().int().min(0) });
const StateMsg = z.object({
  t: z.literal("state"), role: z.enum(["database", "witness"]), pg: PgReportSchema.nullable(),
  /** Set by the leader only: maintenance mode, adopted by every follower. */
  paused: z.boolean().optional(),
  durability: z.enum(["quorum", "strict", "async"]).optional(),
  nofailover: z.boolean().optional(),
  /** Whether this node may ever be promoted (database, not nofailover, priority > 0); absent from older versions. */
  promotable: z.boolean().optional(),
  /** This agent run's epoch, above every earlier run's of the node (store/run-epoch.ts; promotability changes only with a restart). */
  epoch: z.number().int().min(0).optional(),
  /** This message's number in the sender's run (increasing); absent from older versions. */
  seq: z.number().int().min(0).optional(),
  /** The last leader state message this node processed: its echo (core/sync-exclusion.ts mayNameCannotLead). */
  heard: HeardSchema.optional(),
  /** Set by the leader only: standbys left out of synchronous_standby_names, confirmed at a position (core/sync-exclusion.ts). */
  exclusion: ExclusionSchema.optional(),
  /** Set by the leader only: the switchover scheduled with `--at` (null: none). */
  scheduled: ScheduledSwitchoverSchema.nullable().optional(),
});

/** From the leader only: the cluster's identity and role passwords (the mesh is encrypted). */
const SecretsMsg = z.object({
  t: z.literal("secrets"),
  systemId: z.string().regex(/^\d{1,20}$/).nullable(),
  replPassword: z.string().min(16).max(200),
  monitorPassword: z.string().min(16).max(200),
  ca: ClusterCaSchema.optional(),
});

/** `cluster ls` on any host shows the leader's view: asked for over the mesh. */
const ViewReq = z.object({ t: z.literal("view-req"), id: z.number().int().min(0) });
const ViewResp = z.object({ t: z.literal("view"), id: z.number().int().min(0), view: ClusterViewSchema });

/** An action (switchover, pause…) forwarded to the leader, and its answer. */
const ActionMsg = z.object({ t: z.literal("action"), id: z.number().int().min(0), req: ActionRequestSchema });
const ActionResp = z.object({
  t: z.literal("action-resp"), id: z.number().int().min(0),
  /** `detail`: the answer's facts (a switchover's winner: the CLI's exit code), at most 8 KiB of JSON (message-router.ts); absent from older versions. */
  result: z.object({ status: z.number().int(), ok: z.boolean(), message: z.string().max(2000), detail: z.unknown().optional() }),
});
const HistoryMsg = z.object({ t: z.literal("history"), entries: z.array(HistoryEntrySchema).max(1000) });
/** `pgherd failover --to` this node: campaign now. */
const CampaignMsg = z.object({ t: z.literal("campaign-now"), reason: z.string().max(200), force: z.boolean().optional() });
/** Leader → switchover target: you will be handed leadership; promote as soon as you lead. */
/** `term`: the term of the sender's lease, the one it leads in (absent from agents before it was added: then not checked). */
const HandoverMsg = z.object({ t: z.literal("handover"), from: z.string().max(64), final: PositionSchema.optional(), id: z.number().int().min(0).optional(), term: z.number().int().min(0).optional() });
/** Target → leader: it holds the old primary's final WAL and reports that position in its votes. */
const HandoverReady = z.object({ t: z.literal("handover-ready"), pos: PositionSchema.nullable(), id: z.number().int().min(0).optional() });

/** The cluster-wide configuration (src/agent/dynamic-config.ts): asked for, sent (the document is checked
 *  with its own schema on receipt, so a bad one is named in the log), stored. */
const ConfigReq = z.object({
  t: z.literal("config-req"),
  /** A leader's read, with its term: answer with what you hold now (a null doc: nothing), stamped with it. */
  read: z.number().int().min(0).optional(),
});
/** Every node, every second: the version it stores (its own message: a node of an earlier version drops it, not its state messages). */
const ConfigVersion = z.object({ t: z.literal("config-version"), ...DynVersion.shape });
const ConfigDoc = z.object({ t: z.literal("config-doc"), doc: z.unknown(), read: z.number().int().min(0).optional() });
const ConfigAck = z.object({ t: z.literal("config-ack"), ...DynVersion.shape });

const options = [ElectionMsgSchema, StateMsg, SecretsMsg, ViewReq, ViewResp, ActionMsg, ActionResp, HistoryMsg, CampaignMsg, HandoverMsg, HandoverReady, ConfigReq, ConfigVersion, ConfigDoc, ConfigAck, FailsafeReqSchema, FailsafeRespSchema, MigrateSwitchSchema, MigrateAckSchema, MigrateEpochSchema] as const;
/** Discriminated on `t`: a frame is checked against its own type only (z.union tried every type in turn, ~50× the CPU).
 *  The schema as written; the mesh checks every frame with AgentMsgSchema below. */
export const AgentMsgRuntimeSchema = z.discriminatedUnion("t", options);
/** What every node receives several times a second: the election's messages, state reports, configuration versions. */
const HOT: ReadonlySet<z.ZodType> = new Set([ElectionMsgSchema, StateMsg, ConfigVersion]);
/**
 * The same union with its hot members compiled by zod (`z.compile`): zod generates a parser for
 * each, which answers a valid message itself and hands anything it does not accept to the schema as
 * written, so every rejection and its issues are the runtime's own. Under the binary's JIT policy
 * (mostly interpreted) a heartbeat took 29–61 µs, a standby's state report 82–110 µs; compiled 5–17
 * and 12–13 µs (docs/design.md, Footprint). Only the hot members: generating code for all of them cost
 * the agent ~4 MB more anonymous memory. test/agent/messages.test.ts holds both to the same answers.
 */
export const AgentMsgSchema = z.discriminatedUnion("t", options.map((o) => (HOT.has(o) ? z.compile(o) : o)) as unknown as typeof options);
export type AgentMsg = z.infer<typeof AgentMsgSchema>;
export type StateMessage = z.infer<typeof StateMsg>;
export type SecretsMessage = z.infer<typeof SecretsMsg>;
