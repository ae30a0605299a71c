// `pgherd config set durability=quorum|strict|async`: agreed through the leader, applied everywhere.
import { defineCommand } from "citty";
import { apiArgs, apiBase, apiToken, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const configCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "config", description: "Change cluster-wide settings through the leader" },
    subCommands: {
      set: defineCommand({
        meta: { name: "set", description: "durability=quorum|strict|async" },
        args: { ...apiArgs, ...tokenArg, setting: { type: "positional", required: true, description: "key=value" } },
        run: async ({ args }) => {
          const m = /^durability=(quorum|strict|async)$/.exec(args.setting);
          if (!m) throw new CliExit(EXIT_USAGE, `pgherd config set: expected durability=quorum|strict|async, got ${JSON.stringify(args.setting)}`);
          const r = await sendAction(apiBase(args, ctx), "PATCH", "/config", { durability: m[1] }, apiToken(args, ctx));
          ctx.out(`${r.message}\n`);
          if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
        },
      }),
    },
  });
