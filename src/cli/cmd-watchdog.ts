// `pgherd watchdog`: started by the agent (detached); stops PostgreSQL when the lease file's
// deadline passes. Not meant to be run by hand.
import { defineCommand } from "citty";
import { createLogger } from "../log.ts";
import { runWatchdog } from "../fence/watchdog.ts";
import type { CliContext } from "./context.ts";

export const watchdogCommand = (_ctx: CliContext) =>
  defineCommand({
    meta: { name: "watchdog", description: "Fencing watchdog (started by the agent)", hidden: true },
    args: { "state-dir": { type: "string", required: true, description: "The agent's state_dir" } },
    run: async ({ args }) => {
      await runWatchdog(args["state-dir"], createLogger("info", "watchdog"));
    },
  });
