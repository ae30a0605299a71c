// `npm test`: make sure the system packages the tests need are there (scripts/system-packages.sh
// installs them as root on Debian), build the binary, type-check, run bun test. A full run stops
// at once when packages are missing or it is not root: the suite never passes with real-component
// tests left out. A subset run only warns (the files that need a missing part fail, naming it).
// Every later step runs even if an earlier one failed (one run shows all problems); the exit code
// is 1 if any step failed.
//   bun scripts/test.ts [bun test args...]     e.g.  npm test -- test/config  /  npm test -- -t lease
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, ROOT } from "./build.ts";

type Step = { name: string; ok: boolean; seconds: number };
const steps: Step[] = [];

function step(name: string, run: () => boolean): void {
  console.log(`\n== ${name}`);
  const t0 = performance.now();
  let ok = false;
  try {
    ok = run();
  } catch (e) {
    console.error((e as Error).message);
  }
  steps.push({ name, ok, seconds: (performance.now() - t0) / 1000 });
}

/** Runs a command with inherited stdio, so bun test's summary (on stderr) reaches the log. */
function sh(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit" });
  if (r.error) console.error(`${cmd}: ${r.error.message}`);
  return r.status === 0;
}

const extra = process.argv.slice(2);
// Default to test/ unless the caller named files or folders themselves.
const namesPaths = extra.some((a) => !a.startsWith("-") && existsSync(join(ROOT, a)));
const testArgs = ["test", ...(namesPaths ? [] : ["./test"]), ...extra];

const subset = namesPaths || extra.some((a) => a === "-t" || a.startsWith("--test-name-pattern"));
const packages = spawnSync("bash", [join(ROOT, "scripts", "system-packages.sh")], { cwd: ROOT, stdio: "inherit" });
const isRoot = process.getuid?.() === 0;
if (!subset && (packages.status !== 0 || !isRoot)) {
  if (!isRoot) console.error("the full suite needs root: PostgreSQL runs as the postgres OS user, the multi-host tests in network namespaces");
  console.error("npm test: stopped before running any test (see above); `npm test -- <path>` runs a subset");
  process.exit(1);
}
if (packages.status !== 0) console.warn("npm test: running the subset anyway; tests that need a missing package fail");

step("build dist/pgherd", () => {
  const r = ensureBuilt();
  console.log(r.rebuilt ? `built ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.ms / 1000).toFixed(1)} s` : "up to date");
  return true;
});
step("typecheck (tsc --noEmit)", () => sh(join(ROOT, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", "."]));
step(`bun ${testArgs.join(" ")}`, () => sh(process.execPath, testArgs));

console.log("\n== summary");
for (const s of steps) console.log(`${s.ok ? "ok  " : "FAIL"}  ${s.name}  (${s.seconds.toFixed(1)} s)`);
process.exit(steps.every((s) => s.ok) ? 0 : 1);
