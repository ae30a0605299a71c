// `pgherd consensus migrate --to etcd|builtin [--yes]`: asks the agent to move the running cluster to
// the other consensus backend (POST /consensus/migrate). Exit codes: 0 done, 1 refused or failed
// (the agent's reason is printed), 2 usage.
import { defineCommand } from "citty";
import { apiArgs, apiBase, apiToken, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

const BACKENDS = ["etcd", "builtin"] as const;

const migrateCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "migrate", description: "Move the running cluster to another consensus backend (etcd or builtin)" },
    args: {
      ...apiArgs, ...tokenArg,
      to: { type: "string", valueHint: "etcd|builtin", required: true, description: "The backend to move to" },
      yes: { type: "boolean", description: "Proceed without asking (the request changes how the whole cluster elects its leader)" },
      json: { type: "boolean", description: "Print the agent's JSON answer" },
    },
    run: async ({ args }) => {
      const to = BACKENDS.find((b) => b === args.to);
      if (!to) throw new CliExit(EXIT_USAGE, `pgherd: --to must be "etcd" or "builtin", not ${JSON.stringify(args.to)}`);
      if (!args.yes) throw new CliExit(EXIT_USAGE, `pgherd: moving the cluster to ${to} changes how every node elects the leader; run again with --yes`);
      const r = await sendAction(apiBase(args, ctx), "POST", "/consensus/migrate", { to }, apiToken(args, ctx));
      ctx.out(args.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.message}\n`);
      if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
    },
  });

export const consensusCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "consensus", description: "The cluster's consensus backend (built-in election or etcd)" },
    subCommands: { migrate: migrateCommand(ctx) },
  });
