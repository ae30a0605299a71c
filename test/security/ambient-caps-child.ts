// The process side of test/security/ambient-caps.test.ts: started as postgres holding CAP_NET_ADMIN
// and CAP_NET_RAW as ambient capabilities (as docs/vip.md's unit grants them), it starts
// `grep ^CapEff /proc/self/status` three ways and prints one JSON line with what each child saw:
// through runTool (pg_ctl, initdb, pg_basebackup, pg_rewind, pgBackRest…), through runHook, and a
// plain Bun.spawn (the control: what any child inherits unless pgherd drops the capabilities).
//   bun test/security/ambient-caps-child.ts   (as above; prints {"self":…,"tool":…,"hook":…,"control":…})
import { readFileSync } from "node:fs";
import { runHook } from "../../src/hooks/runner.ts";
import { memoryLogger } from "../../src/log.ts";
import { runTool } from "../../src/postgres/exec.ts";

const GREP = ["/bin/grep", "^CapEff", "/proc/self/status"] as const;
const capEff = (text: string | undefined) => /CapEff:\s*([0-9a-f]+)/.exec(text ?? "")?.[1] ?? `no CapEff in ${JSON.stringify(text)}`;

const self = /CapAmb:\s*([0-9a-f]+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
const tool = await runTool({ bin: GREP[0], args: GREP.slice(1), timeoutMs: 10_000, log: memoryLogger() });
const hookLog = memoryLogger();
await runHook({ path: GREP[0], args: GREP.slice(1), env: {}, timeoutMs: 10_000, log: hookLog, name: "caps" });
const control = Bun.spawn([...GREP], { stdout: "pipe", stderr: "inherit" });
const controlOut = await new Response(control.stdout).text();
await control.exited;

console.log(JSON.stringify({ self, tool: capEff(tool.stdout), hook: capEff(hookLog.lines.find((l) => l.includes("CapEff"))), control: capEff(controlOut) }));
