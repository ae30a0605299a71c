// Everything an agent accepts from a peer over the mesh, validated by zod before use.
import { z } from "zod";
import { ElectionMsgSchema } from "../core/messages.ts";

export const AgentMsgSchema = ElectionMsgSchema;
export type AgentMsg = z.infer<typeof AgentMsgSchema>;
