// Runs the CLI and returns the exit code; main.ts turns it into process.exit.
import { renderUsage, runCommand } from "citty";
import { checkArgs, resolveCommand } from "./_resolve.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";
import { rootCommand } from "./root.ts";
import { versionLine } from "./version-info.ts";

const EXPECTED_ERRORS = new Set(["AgentStartError", "ConfigError", "StoreError"]);

export async function runCli(argv: readonly string[], ctx: CliContext): Promise<number> {
  const root = rootCommand(ctx);
  const { cmd, parent, rest } = await resolveCommand(root, argv);
  const usage = async () => `${await renderUsage(cmd, parent)}\n`;
  const options = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : argv.length);
  try {
    if (options.includes("--help") || options.includes("-h")) {
      ctx.out(await usage());
      return 0;
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      ctx.out(`${versionLine()}\n`);
      return 0;
    }
    const problem = await checkArgs(cmd, rest);
    if (problem) {
      ctx.err(`${await usage()}\npgherd: ${problem}\n`);
      return EXIT_USAGE;
    }
    await runCommand(root, { rawArgs: [...argv] });
    return 0;
  } catch (e) {
    if (e instanceof CliExit) {
      if (e.message) ctx.err(`${e.message}\n`);
      return e.code;
    }
    // citty's own usage errors (unknown command, no command) are of its private class CLIError.
    if (e instanceof Error && e.name === "CLIError") {
      ctx.err(`${await usage()}\npgherd: ${e.message}\n`);
      return EXIT_USAGE;
    }
    // Expected failures (bad files on disk) read as one line; anything else is a bug: show the stack.
    const expected = e instanceof Error && EXPECTED_ERRORS.has(e.name);
    ctx.err(`pgherd: ${e instanceof Error ? (expected ? e.message : (e.stack ?? e.message)) : String(e)}\n`);
    return EXIT_FAILURE;
  }
}
