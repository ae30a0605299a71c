// The entry of the floor bench's skeleton binary (bench/floor.ts compiles it as scripts/build.ts
// compiles pgherd): one binary with three modes, as pgherd is one binary whose agent and watchdog
// share its code pages. Each mode imports only its own file (dynamic import, --splitting), so the
// idle mode is a compiled Bun process that only waits. No pgherd module, no zod, no consola.
//   floor idle | floor watchdog-like DIR | floor agent-like CONFIG.json
export {};
const mode = process.argv[2];
if (mode === "idle") {
  setInterval(() => {}, 1000);
} else if (mode === "watchdog-like" && process.argv[3]) {
  (await import("./watchdog-like.ts")).watchdogLike(process.argv[3]);
} else if (mode === "agent-like" && process.argv[3]) {
  await (await import("./agent-like.ts")).agentLike(process.argv[3]);
} else {
  process.stderr.write("usage: floor idle | floor watchdog-like DIR | floor agent-like CONFIG.json\n");
  process.exit(2);
}
