// `pgherd status`: this agent's own view (election, local PostgreSQL, peers); --json prints /node as is.
import { defineCommand } from "citty";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import type { NodeStatus } from "../core/node-status.ts";
import { statusText } from "../ops/status-text.ts";
import type { CliContext } from "./context.ts";

export const statusCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "status", description: "Show the local agent: election state and its PostgreSQL (role, timeline, LSN, lag, pending restart)" },
    args: { ...apiArgs, json: { type: "boolean", description: "Print the agent's /node document" } },
    run: async ({ args }) => {
      const s = (await getJson(apiBase(args, ctx), "/node")) as NodeStatus;
      ctx.out(args.json ? `${JSON.stringify(s, null, 2)}\n` : statusText(s));
    },
  });
