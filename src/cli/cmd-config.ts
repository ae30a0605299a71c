// `pgherd config set durability=…` (agreed through the leader, applied everywhere) and
// `pgherd config check [FILE]` (the local file, without starting anything).
import { closeSync, fstatSync, openSync } from "node:fs";
import { basename, resolve } from "node:path";
import { defineCommand } from "citty";
import { ConfigError, loadConfig, privacyProblem } from "../config/load.ts";
import { stringify } from "smol-toml";
import { apiArgs, apiBase, apiToken, getJson, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const configCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "config", description: "Check the local config file; change cluster-wide settings through the leader" },
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
      show: defineCommand({
        meta: { name: "show", description: "Show the local agent's configuration in force (GET /config: secret and token redacted)" },
        args: { ...apiArgs, json: { type: "boolean", description: "Print JSON (default: TOML)" } },
        run: async ({ args }) => {
          const c = (await getJson(apiBase(args, ctx), "/config")) as Record<string, unknown>;
          ctx.out(args.json ? `${JSON.stringify(c, null, 2)}\n` : `${stringify(c)}\n`);
        },
      }),
      check: defineCommand({
        meta: { name: "check", description: `Validate a config file as the agent would load it (exit 2 naming file and key); default $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH}` },
        args: { file: { type: "positional", required: false, description: "config file" } },
        run: ({ args }) => {
          const path = resolve(args.file || configPathFrom(undefined, ctx));
          let cfg;
          try {
            cfg = loadConfig(path);
          } catch (e) {
            if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
            throw e;
          }
          // The agent also refuses a file group or others may read (ownership it checks against its own user at start).
          const fd = openSync(path, "r");
          let problem: string;
          try {
            const st = fstatSync(fd);
            problem = privacyProblem(st, path, st.uid);
          } finally {
            closeSync(fd);
          }
          if (problem) throw new CliExit(EXIT_USAGE, `${basename(path)}: ${problem}`);
          ctx.out(`${path}: valid (cluster ${cfg.cluster}, node ${cfg.node_name}, ${cfg.role})\n`);
        },
      }),
    },
  });
