import { defineCommand } from "citty";
import type { CliContext } from "./context.ts";
import { versionLine } from "./version-info.ts";

export const versionCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "version", description: "Print the pgherd version, Bun version and platform" },
    run: () => ctx.out(`${versionLine()}\n`),
  });
