// Client access: `pgherd dsn` (a libpq URI that follows the primary) and `pgherd passwd ROLE`.
import { defineCommand } from "citty";
import type { ClusterView } from "../core/cluster-view.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { buildDsn, type DsnTarget } from "../ops/dsn.ts";
import { setPassword } from "../ops/passwd.ts";
import { readSecret } from "../ops/secret-input.ts";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const dsnCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "dsn", description: "Print a libpq multi-host URI for applications (target_session_attrs picks the primary, a replica or any)" },
    args: {
      ...apiArgs,
      primary: { type: "boolean", description: "Connect to the primary, wherever it is (default)" },
      replica: { type: "boolean", description: "Connect to a standby" },
      any: { type: "boolean", description: "Connect to the first node that answers" },
      user: { type: "string", valueHint: "role", description: "Database role (default: libpq's, the OS user name)" },
      dbname: { type: "string", valueHint: "name", description: "Database (default: libpq's, the role name)" },
    },
    run: async ({ args }) => {
      const picked = (["primary", "replica", "any"] as const).filter((k) => args[k]);
      if (picked.length > 1) throw new CliExit(EXIT_USAGE, "pgherd dsn: give one of --primary, --replica, --any");
      const target: DsnTarget = picked[0] ?? "primary";
      const r = (await getJson(apiBase(args, ctx), "/cluster")) as { view: ClusterView };
      try {
        ctx.out(`${buildDsn(r.view.members, { target, user: args.user, dbname: args.dbname })}\n`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd dsn: ${(e as Error).message}`);
      }
    },
  });

export const passwdCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "passwd", description: "Set a database role's password (SCRAM verifier computed here; the password from a prompt or stdin, never the command line). Run on the primary's host as root or postgres" },
    args: {
      role: { type: "positional", required: true, description: "Role name" },
      create: { type: "boolean", description: "Create the role (LOGIN) if it does not exist" },
      config: { type: "string", valueHint: "path", description: `Config file (default: $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH})` },
    },
    run: async ({ args }) => {
      let cfg;
      try {
        cfg = loadConfig(configPathFrom(args.config, ctx));
      } catch (e) {
        if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
        throw e;
      }
      let password: string;
      try {
        password = await readSecret(`password for ${args.role}`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd passwd: ${(e as Error).message}`);
      }
      try {
        const done = await setPassword(cfg, { role: args.role, password, create: !!args.create, log: createLogger("error", "passwd") });
        ctx.out(`${done} role ${args.role} (password stored as a SCRAM-SHA-256 verifier)\n`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd passwd: ${(e as Error).message}`);
      }
    },
  });
