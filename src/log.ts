// One logger factory for the whole agent. Adapters take a Logger so tests can
// capture lines; nothing else in src/ writes log lines directly. Lines carry an
// ISO timestamp with milliseconds: tests on one machine order events of
// different agents by it, and journald keeps it when forwarding.
// Two formats: "text" (the default, one readable line) and "json" (one JSON object per line
// with level, time, message and fields, for log shippers). The format is process-wide: it is
// kept in $PGHERD_LOG_FORMAT so the fencing watchdog the agent spawns writes the same format.
import { createConsola, type ConsolaInstance, type LogObject, LogLevels } from "consola/core";
import { formatWithOptions } from "node:util";

export type Logger = Pick<ConsolaInstance, "debug" | "info" | "warn" | "error" | "success"> & {
  withTag(tag: string): Logger;
};

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export const LOG_FORMAT_ENV = "PGHERD_LOG_FORMAT";

let format: LogFormat = process.env[LOG_FORMAT_ENV] === "json" ? "json" : "text";

/** Switches every logger of this process (and the processes it spawns afterwards) to `f`. */
export function setLogFormat(f: LogFormat): void {
  format = f;
  process.env[LOG_FORMAT_ENV] = f;
}

const inspectOpts = { breakLength: Infinity, colors: false, compact: true } as const;

/** consola's types: "success", "ready", "start" are info-level events; "fail"/"fatal" errors. */
function levelName(type: string): string {
  if (type === "fatal" || type === "fail") return "error";
  if (type === "success" || type === "ready" || type === "start" || type === "log" || type === "box") return "info";
  return type;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype;
}

/** One JSON line: strings (and numbers …) make the message; plain objects are merged into fields; an Error adds error and stack. */
export function jsonLine(o: { date: Date; type: string; tag?: string; args: readonly unknown[] }): string {
  const fields: Record<string, unknown> = {};
  if (o.tag) fields.tag = o.tag;
  const parts: unknown[] = [];
  for (const a of o.args) {
    if (a instanceof Error) {
      parts.push(a.message);
      fields.error = a.message;
      if (a.stack) fields.stack = a.stack;
    } else if (isPlainObject(a)) Object.assign(fields, a);
    else parts.push(a);
  }
  const line = { time: o.date.toISOString(), level: levelName(o.type), message: formatWithOptions(inspectOpts, ...parts), fields };
  try {
    return `${JSON.stringify(line, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`;
  } catch {
    // A cyclic field: keep the line parseable, with the fields as text.
    return `${JSON.stringify({ ...line, fields: { tag: o.tag, text: formatWithOptions(inspectOpts, fields) } })}\n`;
  }
}

export function textLine(o: { date: Date; type: string; tag?: string; args: readonly unknown[] }): string {
  const tag = o.tag ? ` [${o.tag}]` : "";
  return `${o.date.toISOString()} ${o.type}${tag} ${formatWithOptions(inspectOpts, ...o.args)}\n`;
}

/** A logger and the knob that changes its level (and its children's) while it runs: SIGHUP applies [log] level. */
export function createLogControl(level: LogLevel = "info", tag?: string): { log: Logger; setLevel(l: LogLevel): void } {
  const state = { level: LogLevels[level] };
  const reporter = {
    log(o: LogObject) {
      if (o.level > state.level) return;
      process.stderr.write(format === "json" ? jsonLine(o) : textLine(o));
    },
  };
  // consola copies its options (this reporter included) into every withTag child; it filters at debug and the reporter by state.
  const base = createConsola({ level: LogLevels.debug, reporters: [reporter] });
  const log = (tag ? base.withTag(tag) : base) as unknown as Logger;
  return { log, setLevel: (l) => { state.level = LogLevels[l]; } };
}

/** One line per event on stderr, in the process-wide format. */
export function createLogger(level: LogLevel = "info", tag?: string): Logger {
  return createLogControl(level, tag).log;
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
