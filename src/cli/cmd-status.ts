// `pgherd status`: this agent's own view (role, term, leader, lease, peers).
import { defineCommand } from "citty";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import type { CliContext } from "./context.ts";

interface NodeStatus {
  cluster: string;
  node: { name: string; id: string; role: string };
  election: { role: string; term: number; leaderName: string | null; leading: boolean; leaseRemainingMs: number; voters: Array<{ name: string }> };
  bootstrap: string | null;
  peers: Array<{ name: string; connected: boolean; mesh: string }>;
}

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
