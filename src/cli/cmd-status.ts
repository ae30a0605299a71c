// `pgherd status`: this agent's own view (role, term, leader, lease, peers).
import { defineCommand } from "citty";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import type { NodeStatus } from "../core/node-status.ts";
import type { CliContext } from "./context.ts";

export const statusCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "status", description: "Show the local agent's election state" },
    args: { ...apiArgs, json: { type: "boolean", description: "Print the raw JSON" } },
    run: async ({ args }) => {
      const s = (await getJson(apiBase(args, ctx), "/node")) as NodeStatus;
      if (args.json) return ctx.out(`${JSON.stringify(s, null, 2)}\n`);
      const e = s.election;
      ctx.out(
        [
          `cluster   ${s.cluster}`,
          `node      ${s.node.name} (${s.node.id}, ${s.node.role})`,
          `election  ${e.role}, term ${e.term}, leader ${e.leaderName ?? "-"}${e.leading ? `, lease ${e.leaseRemainingMs} ms left` : ""}`,
          `voters    ${e.voters.map((v) => v.name).join(", ") || "-"}`,
          ...(s.bootstrap ? [`bootstrap ${s.bootstrap}`] : []),
          `peers     ${s.peers.map((p) => `${p.name}${p.connected ? "" : " (down)"}`).join(", ") || "-"}`,
        ].join("\n") + "\n",
      );
    },
  });
