// `pgherd pgpool config`: the backend section of pgpool.conf for this cluster, pgpool's own
// failover off (docs/pgpool.md). Reads GET /cluster from the agent.
import { defineCommand } from "citty";
import { slotFor } from "../agent/pg/context.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { renderPgpoolConfig } from "../integrations/pgpool.ts";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import type { CliContext } from "./context.ts";

export const pgpoolCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "pgpool", description: "pgpool-II in front of the cluster (docs/pgpool.md)" },
    subCommands: {
      config: defineCommand({
        meta: { name: "config", description: "Print pgpool.conf's backend section for the current cluster, pgpool's own failover off" },
        args: { ...apiArgs },
        run: async ({ args }) => {
          const r = (await getJson(apiBase(args, ctx), "/cluster")) as { source: string; view: ClusterView };
          ctx.out(renderPgpoolConfig(r.view, slotFor));
          if (r.source === "local") ctx.out("# [leader unreachable: this agent's local view]\n");
        },
      }),
    },
  });
