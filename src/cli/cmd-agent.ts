// `pgherd agent`: the thin shell around runAgent. (src/cli/agent.ts is reserved for the lead.)
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { AgentStartError, runAgent } from "../agent/run.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_USAGE } from "./context.ts";

export const agentCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "agent", description: "Run the pgherd agent on this host (foreground)" },
    args: {
      config: {
        type: "string",
        valueHint: "path",
        description: `Config file (default: $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH})`,
      },
    },
    run: async ({ args }) => {
      // Absolute, so a reload after a chdir still finds the same file.
      const configPath = resolve(configPathFrom(args.config, ctx));
      let cfg;
      try {
        cfg = loadConfig(configPath, { ownerOnly: true });
      } catch (e) {
        if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
        throw e;
      }
      // A start error is a config value this host cannot use (postgres.bin_dir): a restart cannot fix it.
      await runAgent(cfg, { configPath }).catch((e: unknown) => {
        throw e instanceof AgentStartError ? new CliExit(EXIT_USAGE, e.message) : e;
      });
    },
  });
