#!/usr/bin/env bun
// The process edge: the only place that reads argv/env, touches stdout/stderr for the CLI,
// and calls process.exit. Everything below returns values or throws.
export {}; // an ES module (top-level await); every import below is dynamic
// The fencing watchdog (a mode of this binary) must stay small: it loads only its own entry.
if (process.argv[2] === "watchdog") process.exit(await (await import("./fence/watchdog-main.ts")).watchdogMain(process.argv.slice(3)));
if (process.argv[2] === "agent") await reexecWithAllocatorOptions();
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

/**
 * Options of Bun's allocator (mimalloc) that it reads only from the environment at process start:
 * an agent without them in its environment replaces itself (execve, same pid, same arguments) with
 * a copy that has them; the watchdog it starts inherits them. Its background scavenger otherwise
 * purges freed memory "holes" every 100 ms, about 10 wakeups a second in an idle process; once a
 * second took 0.2–0.37 % of a core off an idle agent for the same resident memory
 * (bench:footprint, docs/design.md "Footprint"). An option already set (by an operator) is kept;
 * without /proc or glibc the agent runs with the defaults.
 */
async function reexecWithAllocatorOptions(): Promise<void> {
  const want: Record<string, string> = { MIMALLOC_PURGE_HOLES_MIN_INTERVAL: "1000" };
  const missing = Object.keys(want).filter((k) => process.env[k] === undefined);
  if (missing.length === 0) return;
  try {
    const { readFileSync } = await import("node:fs");
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const argv = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1); // the exact argv this process got
    const env = { ...process.env, ...Object.fromEntries(missing.map((k) => [k, want[k]!])) };
    const keep: ArrayBufferView[] = []; // the C strings and arrays stay referenced until execve returns
    const cstr = (s: string) => {
      const b = Buffer.from(`${s}\0`, "utf8");
      keep.push(b);
      return ptr(b);
    };
    const array = (xs: string[]) => {
      const a = new BigUint64Array(xs.length + 1); // a NULL-terminated char *[]
      xs.forEach((x, i) => (a[i] = BigInt(cstr(x))));
      keep.push(a);
      return ptr(a);
    };
    const libc = dlopen("libc.so.6", { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
    libc.symbols.execve(cstr("/proc/self/exe"), array(argv), array(Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]))));
    libc.close(); // execve returned: it failed
  } catch {
    // no /proc or no glibc: the agent runs with the allocator's defaults
  }
}
