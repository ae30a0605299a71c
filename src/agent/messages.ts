// Everything an agent accepts from a peer over the mesh, validated by zod before use.
import { z } from "zod";
import { ElectionMsgSchema } from "../core/messages.ts";
import { ClusterViewSchema } from "../core/cluster-view.ts";

import { PgReportSchema } from "../core/report.ts";
export type { PgReport } from "../core/report.ts";

const StateMsg = z.strictObject({ t: z.literal("state"), role: z.enum(["database", "witness"]), pg: PgReportSchema.nullable() });

/** From the leader only: the cluster's identity and role passwords (the mesh is encrypted). */
const SecretsMsg = z.strictObject({
  t: z.literal("secrets"),
  systemId: z.string().regex(/^\d{1,20}$/).nullable(),
  replPassword: z.string().min(16).max(200),
  monitorPassword: z.string().min(16).max(200),
});

/** `cluster ls` on any host shows the leader's view: asked for over the mesh. */
const ViewReq = z.strictObject({ t: z.literal("view-req"), id: z.number().int().min(0) });
const ViewResp = z.strictObject({ t: z.literal("view"), id: z.number().int().min(0), view: ClusterViewSchema });

export const AgentMsgSchema = z.union([ElectionMsgSchema, StateMsg, SecretsMsg, ViewReq, ViewResp]);
export type AgentMsg = z.infer<typeof AgentMsgSchema>;
export type StateMessage = z.infer<typeof StateMsg>;
export type SecretsMessage = z.infer<typeof SecretsMsg>;
