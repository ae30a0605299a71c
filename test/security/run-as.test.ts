// A non-root agent cannot switch users: runTool must then refuse a tool meant for another OS user
// (it would run as the agent's own account), and run one meant for itself. Runs a child process
// as postgres (setpriv) that calls the product's runTool.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "../../scripts/build.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { run } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const users = await Promise.all([lookupOsUser("postgres"), lookupOsUser("nobody")]).catch(() => null);
requireReal("runTool as a non-root user", !isRoot() ? "needs root (to become postgres)" : !users ? "needs the OS users postgres and nobody" : null);

const CHILD = `
import { runTool } from ${JSON.stringify(join(ROOT, "src/postgres/exec.ts"))};
import { memoryLogger } from ${JSON.stringify(join(ROOT, "src/log.ts"))};
const spec = (user) => ({ bin: "/bin/sh", args: ["-c", "id -un"], user, timeoutMs: 10_000, log: memoryLogger() });
const own = await runTool(spec("postgres"));
console.log("own:" + own.code + ":" + own.stdout.trim());
try {
  await runTool(spec("nobody"));
  console.log("other: ran");
} catch (e) {
  console.log("other: " + e.name + ": " + e.message);
}
`;

test("as postgres: a tool for postgres runs, a tool for another user is refused naming both", async () => {
  const r = await run([process.execPath, "-e", CHILD], { user: "postgres", timeoutMs: 30_000 });
  expect(r.stderr).toBe("");
  const [own, other] = r.stdout.trim().split("\n");
  expect(own).toBe("own:0:postgres");
  expect(other).toStartWith("other: ToolError: sh: must run as the OS user \"nobody\"");
  expect(other).toContain(`this process runs as uid ${users![0].uid}`);
});
