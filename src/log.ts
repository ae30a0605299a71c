// One logger factory for the whole agent. Adapters take a Logger so tests can
// capture lines; nothing else in src/ writes to stdout/stderr directly.
import { createConsola, type ConsolaInstance, LogLevels } from "consola";

export type Logger = Pick<ConsolaInstance, "debug" | "info" | "warn" | "error" | "success"> & {
  withTag(tag: string): Logger;
};

export type LogLevel = "debug" | "info" | "warn" | "error";

/** Logger writing plain lines (no fancy reporter) so journald and test captures stay greppable. */
export function createLogger(level: LogLevel = "info", tag?: string): Logger {
  const base = createConsola({
    level: LogLevels[level === "debug" ? "debug" : level === "warn" ? "warn" : level === "error" ? "error" : "info"],
    fancy: false,
    formatOptions: { date: true, colors: false, compact: true },
  });
  return (tag ? base.withTag(tag) : base) as unknown as Logger;
}

/** A logger that remembers lines: used by tests that assert a reason was logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const mk = (prefix: string): Logger & { lines: string[] } => {
    const at = (lvl: string) => (...args: unknown[]) => {
      lines.push(`${lvl} ${prefix}${args.map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`);
    };
    return {
      lines,
      debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), success: at("success"),
      withTag: (t: string) => mk(`${prefix}[${t}] `),
    } as unknown as Logger & { lines: string[] };
  };
  return mk("");
}
