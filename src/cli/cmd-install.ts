// `pgherd install [--root DIR]` and `pgherd uninstall [--root DIR] [--purge]`.
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { install, uninstall } from "../ops/install.ts";
import { type CliContext, CliExit, EXIT_FAILURE } from "./context.ts";

const rootArg = { root: { type: "string", valueHint: "dir", description: "Install under this directory instead of / (a scratch root, an image)" } } as const;

async function guarded(fn: () => Promise<void> | void): Promise<void> {
  try {
    await fn();
  } catch (e) {
    throw new CliExit(EXIT_FAILURE, `pgherd: ${(e as Error).message}`);
  }
}

export const installCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "install", description: "Install this binary, /etc/pgherd/pgherd.toml (if absent) and the systemd unit" },
    args: { ...rootArg, binary: { type: "string", valueHint: "path", description: "Executable to install (default: this one)" } },
    run: ({ args }) => guarded(() => {
      // Run through bun (bun src/main.ts), this process is the bun runtime, not pgherd.
      if (!args.binary && /(^|\/)bun(-\w+)?$/.test(process.execPath)) throw new Error("run install from the compiled binary (dist/pgherd install), or name it with --binary");
      return install({ root: resolve(args.root ?? "/"), binary: args.binary ?? process.execPath, say: (l) => ctx.out(`${l}\n`) });
    }),
  });

export const uninstallCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "uninstall", description: "Remove the binary and the unit (the config only with --purge; never data)" },
    args: { ...rootArg, purge: { type: "boolean", description: "Also remove /etc/pgherd/pgherd.toml" } },
    run: ({ args }) => guarded(() => uninstall({ root: resolve(args.root ?? "/"), purge: !!args.purge, say: (l) => ctx.out(`${l}\n`) })),
  });
