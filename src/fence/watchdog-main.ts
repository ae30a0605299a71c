// The fencing watchdog's own entry inside the one binary: main.ts hands `pgherd watchdog …` here
// before it loads the CLI, so this process holds only node:fs and the few src/fence files it needs
// (no citty, zod, consola or postgres client): its memory is what it imports. Log lines keep the
// format of src/log.ts (ISO time, level, tag).
import { runWatchdog, type WatchdogLog } from "./watchdog.ts";

const USAGE = "usage: pgherd watchdog --state-dir DIR";

/** `argv` is what follows `watchdog`; returns the exit code. */
export async function watchdogMain(argv: readonly string[]): Promise<number> {
  const stateDir = stateDirArg(argv);
  if (stateDir === null) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const log = leanLog("watchdog");
  // Bun exits on either of these; the watchdog must keep fencing.
  process.on("unhandledRejection", (reason) => log.error(`unhandled promise rejection: ${String(reason)}`));
  process.on("uncaughtException", (err) => log.error(`uncaught exception: ${err.stack ?? err.message}`));
  await runWatchdog(stateDir, log);
  return 0;
}

function stateDirArg(argv: readonly string[]): string | null {
  if (argv.length === 2 && argv[0] === "--state-dir" && argv[1]) return argv[1];
  if (argv.length === 1 && argv[0]!.startsWith("--state-dir=") && argv[0]!.length > 12) return argv[0]!.slice(12);
  return null;
}

function leanLog(tag: string): WatchdogLog {
  const line = (level: string) => (msg: string) => {
    process.stderr.write(`${new Date().toISOString()} ${level} [${tag}] ${msg}\n`);
  };
  return { info: line("info"), warn: line("warn"), error: line("error") };
}
