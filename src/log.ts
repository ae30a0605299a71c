// One logger factory for the whole agent. Adapters take a Logger so tests can
// capture lines; nothing else in src/ writes log lines directly. Lines carry an
// ISO timestamp with milliseconds: tests on one machine order events of
// different agents by it, and journald keeps it when forwarding.
import { createConsola, type ConsolaInstance, type LogObject, LogLevels } from "consola";
import { formatWithOptions } from "node:util";

export type Logger = Pick<ConsolaInstance, "debug" | "info" | "warn" | "error" | "success"> & {
  withTag(tag: string): Logger;
};

export type LogLevel = "debug" | "info" | "warn" | "error";

const reporter = {
  log(o: LogObject) {
    const tag = o.tag ? ` [${o.tag}]` : "";
    const msg = formatWithOptions({ breakLength: Infinity, colors: false, compact: true }, ...o.args);
    process.stderr.write(`${o.date.toISOString()} ${o.type}${tag} ${msg}\n`);
  },
};

/** Plain one-line-per-event logger on stderr. */
export function createLogger(level: LogLevel = "info", tag?: string): Logger {
  const base = createConsola({ level: LogLevels[level], reporters: [reporter] });
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
