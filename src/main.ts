#!/usr/bin/env bun
// The process edge: the only place that reads argv/env, touches stdout/stderr for the CLI,
// and calls process.exit. Everything below returns values or throws.
export {}; // an ES module (top-level await); every import below is dynamic
// The fencing watchdog (a mode of this binary) must stay small: it loads only its own entry.
if (process.argv[2] === "watchdog") process.exit(await (await import("./fence/watchdog-main.ts")).watchdogMain(process.argv.slice(3)));
const { runCli } = await import("./cli/run.ts");
const { createLogger } = await import("./log.ts");

const log = createLogger("info", "pgherd");
// Bun exits the process on either of these; an HA agent must log and keep its lease logic running.
process.on("unhandledRejection", (reason) => log.error("unhandled promise rejection:", reason));
process.on("uncaughtException", (err) => log.error("uncaught exception:", err));

// citty colours its usage text unless NO_COLOR/CI is set; pipes and log files get plain text.
const writer = (s: NodeJS.WriteStream) => (text: string) => {
  s.write(s.isTTY ? text : text.replace(/\x1b\[[0-9;]*m/g, ""));
};
const code = await runCli(process.argv.slice(2), {
  env: process.env,
  out: writer(process.stdout),
  err: writer(process.stderr),
});
// Let piped output drain before exiting: an empty write's callback runs after earlier writes.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write("", () => r()))));
process.exit(code);
