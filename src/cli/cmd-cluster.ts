import { defineCommand } from "citty";
import { CliExit, EXIT_FAILURE } from "./context.ts";

// Placeholder group: `cluster ls` talks to the agent's HTTP API in a later issue.
export const clusterCommand = () =>
  defineCommand({
    meta: { name: "cluster", description: "Inspect the cluster through the local agent" },
    subCommands: {
      ls: defineCommand({
        meta: { name: "ls", description: "List the cluster's nodes (not implemented yet)" },
        run: () => {
          throw new CliExit(EXIT_FAILURE, "pgherd cluster ls: not implemented yet");
        },
      }),
    },
  });
