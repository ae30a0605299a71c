// `pgherd demo`: the same 3-node loopback cluster as `npm run demo`, run by this executable.
import { defineCommand } from "citty";
import { createLogger } from "../log.ts";
import { DEFAULT_TIMEOUT_SEC, parseDemoOptions } from "../demo/options.ts";
import { runDemo } from "../demo/run.ts";
import { selfCommand } from "../self.ts";
import { abortOnSignals } from "../demo/signals.ts";
import { type CliContext, CliExit, EXIT_USAGE } from "./context.ts";

export const demoCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "demo", description: "Run a 3-node cluster with PostgreSQL on loopback in the foreground (Ctrl-C stops and removes it)" },
    args: {
      keep: { type: "boolean", description: "Keep the scratch directory (configs, logs, data) after stopping" },
      timeout: { type: "string", valueHint: "seconds", description: `Give up if the cluster is not ready in time (default ${DEFAULT_TIMEOUT_SEC})` },
    },
    run: async ({ args }) => {
      let options;
      try {
        options = parseDemoOptions({ keep: args.keep, timeout: args.timeout });
      } catch (e) {
        throw new CliExit(EXIT_USAGE, (e as Error).message);
      }
      const signals = abortOnSignals((sig) => ctx.out(`${sig}: already stopping, please wait\n`));
      try {
        const code = await runDemo({ pgherd: selfCommand(), options, stop: signals.signal, out: ctx.out, log: createLogger("error", "demo") });
        if (code !== 0) throw new CliExit(code);
      } finally {
        signals.dispose();
      }
    },
  });
