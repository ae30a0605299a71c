// `npm test`: make sure the system packages the tests need are there (scripts/system-packages.sh
// installs them as root on Debian), build the binary, type-check, run bun test. The suite never
// passes with tests left out: a full run stops at once when packages are missing or it is not root,
// and fails when bun test reports a skipped or todo test. A subset run only warns about missing
// packages (the files that need one fail, naming it).
// Every later step runs even if an earlier one failed (one run shows all problems); the exit code
// is 1 if any step failed.
//   bun scripts/test.ts [bun test args...]     e.g.  npm test -- test/config  /  npm test -- -t lease
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, ROOT } from "./build.ts";

type Step = { name: string; ok: boolean; seconds: number };
const steps: Step[] = [];

async function step(name: string, run: () => boolean | Promise<boolean>): Promise<void> {
  console.log(`\n== ${name}`);
  const t0 = performance.now();
  let ok = false;
  try {
    ok = await run();
  } catch (e) {
    console.error((e as Error).message);
  }
  steps.push({ name, ok, seconds: (performance.now() - t0) / 1000 });
}

/** Runs a command with inherited stdio, so its output reaches the log as it comes. */
function sh(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit" });
  if (r.error) console.error(`${cmd}: ${r.error.message}`);
  return r.status === 0;
}

/** Failed tests with the first lines of their error, printed again beside the summary (a CI log may show only its end). */
const failures: string[] = [];

/**
 * Reads bun test's stderr line by line: what it printed since the previous result is the failing
 * test's error (code frame, message, log tails, stack); its first lines from `error:` are kept.
 */
function failureDigest(): (line: string) => void {
  let since: string[] = [];
  return (line) => {
    const result = /^\((pass|fail|skip|todo)\) (.*)$/.exec(line);
    if (!result) {
      if (since.length < 400) since.push(line);
      return;
    }
    if (result[1] === "fail") {
      const from = since.findIndex((l) => l.startsWith("error:"));
      const all = (from < 0 ? since : since.slice(from)).filter((l) => l.trim() !== "" && !/^\s+at /.test(l));
      // The message, then the warnings and errors of the log tails a cluster test appends to it.
      const lines = [...all.slice(0, 4), ...all.slice(4).filter((l) => /\b(error|warn)\b/.test(l)).slice(-6)];
      failures.push([`(fail) ${result[2]}`, ...lines.map((l) => `    ${l.slice(0, 240)}`)].join("\n"));
    }
    since = [];
  };
}

/** bun test, its stderr (where its results and summary go) passed through and kept to read the summary. */
function bunTest(args: string[]): Promise<{ ok: boolean; skipped: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["inherit", "inherit", "pipe"] });
    let tail = "";
    let partial = "";
    const digest = failureDigest();
    child.stderr.on("data", (d: Buffer) => {
      process.stderr.write(d);
      tail = (tail + d.toString()).slice(-4096);
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) digest(l);
    });
    child.on("error", (e) => { console.error(`bun test: ${e.message}`); resolve({ ok: false, skipped: 0 }); });
    child.on("close", (code) => {
      const count = (word: string) => Number(new RegExp(`^\\s*(\\d+) ${word}$`, "m").exec(tail)?.[1] ?? 0);
      resolve({ ok: code === 0, skipped: count("skip") + count("todo") });
    });
  });
}

const extra = process.argv.slice(2);
// Default to test/ unless the caller named files or folders themselves.
const namesPaths = extra.some((a) => !a.startsWith("-") && existsSync(join(ROOT, a)));
// One file after the other. `npm test -- --parallel=2` runs two at a time (src/demo/ports.ts gives
// each bun test worker its own ports): 1,297 s instead of 1,690 s on the 2-core test machine, but
// there two clusters at once slowed what the e2e tests time (an agent's restart took 1.2 s instead of
// 0.2 s, past its lease, and a failover followed): the full suite stays serial.
const testArgs = ["test", ...(namesPaths ? [] : ["./test"]), ...extra];
const subset = namesPaths || extra.some((a) => a === "-t" || a.startsWith("--test-name-pattern"));

console.log("== system packages");
const packages = spawnSync("bash", [join(ROOT, "scripts", "system-packages.sh")], { cwd: ROOT, stdio: "inherit" });
const isRoot = process.getuid?.() === 0;
if (!subset && (packages.status !== 0 || !isRoot)) {
  if (!isRoot) console.error("the full suite needs root: PostgreSQL runs as the postgres OS user, the multi-host tests in network namespaces");
  console.error("npm test: stopped before running any test (see above); `npm test -- <path>` runs a subset");
  process.exit(1);
}
console.log(packages.status === 0 ? "all present" : "npm test: running the subset anyway; tests that need a missing package fail");

await step("build dist/pgherd", () => {
  const r = ensureBuilt();
  console.log(r.rebuilt ? `built ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.ms / 1000).toFixed(1)} s` : "up to date");
  return true;
});
await step("typecheck (tsc --noEmit)", () => sh(join(ROOT, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", "."]));
await step(`bun ${testArgs.join(" ")}`, async () => {
  const r = await bunTest(testArgs);
  if (r.skipped > 0 && !subset) console.error(`npm test: ${r.skipped} test(s) skipped or todo; the full suite runs every test`);
  return r.ok && (subset || r.skipped === 0);
});

if (failures.length > 0) console.log(`\n== failed tests, first lines of each error (the whole error is above)\n${failures.join("\n")}`);
console.log("\n== summary");
for (const s of steps) console.log(`${s.ok ? "ok  " : "FAIL"}  ${s.name}  (${s.seconds.toFixed(1)} s)`);
process.exit(steps.every((s) => s.ok) ? 0 : 1);
