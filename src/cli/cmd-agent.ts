// `pgherd agent`: the thin shell around runAgent. (src/cli/agent.ts is reserved for the lead.)
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { AgentStartError, runAgent } from "../agent/run.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import { createLogger, type LogFormat, setLogFormat } from "../log.ts";
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
      "log-format": { type: "enum", options: ["text", "json"], description: "Log line format (default: [log] format, else text)" },
      handover: {
        type: "boolean", description: "On SIGTERM/SIGINT a leader hands over to a caught-up standby first (default: [shutdown] handover)",
        negativeDescription: "Stop without handing leadership over (docs/upgrade.md)",
      },
    },
    run: async ({ args }) => {
      const flagFormat = args["log-format"] as LogFormat | undefined;
      if (flagFormat) setLogFormat(flagFormat);
      // Absolute, so a reload after a chdir still finds the same file.
      const configPath = resolve(configPathFrom(args.config, ctx));
      let cfg;
      try {
        cfg = loadConfig(configPath, { ownerOnly: true });
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // A log shipper expects JSON lines: report the refusal as one.
        if (flagFormat === "json") {
          createLogger("error", "config").error(e.message);
          throw new CliExit(EXIT_USAGE, "");
        }
        throw new CliExit(EXIT_USAGE, e.message);
      }
      if (!flagFormat) setLogFormat(cfg.log.format);
      // A start error is a config value this host cannot use (postgres.bin_dir): a restart cannot fix it.
      await runAgent(cfg, { configPath, logFormatFixed: flagFormat !== undefined, handover: args.handover as boolean | undefined }).catch((e: unknown) => {
        if (!(e instanceof AgentStartError)) throw e;
        // In JSON mode the refusal is one more JSON line, like every other line the agent writes.
        if (cfg.log.format === "json" || flagFormat === "json") {
          createLogger("error", cfg.node_name).error(e.message);
          throw new CliExit(EXIT_USAGE, "");
        }
        throw new CliExit(EXIT_USAGE, e.message);
      });
    },
  });
