// Builds the single-file binary dist/pgherd. Skips the build when the binary is newer than
// every input (src/, package.json, package-lock.json, and the unit and example built into it) unless --force.
//   bun scripts/build.ts [--force]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const BINARY = join(ROOT, "dist", "pgherd");
const INPUTS = ["src", "package.json", "package-lock.json", "deploy/pgherd.service", "pgherd.toml.example"].map((p) => join(ROOT, p));

function newestMtime(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((m, name) => Math.max(m, newestMtime(join(path, name))), st.mtimeMs);
}

export function isUpToDate(): boolean {
  return existsSync(BINARY) && statSync(BINARY).mtimeMs > Math.max(...INPUTS.map(newestMtime));
}

/** Scale of JavaScriptCore's JIT tier-up thresholds baked into the binary (1 = Bun's default). */
export const JIT_POLICY = 1000;

export type BuildResult = { path: string; rebuilt: boolean; bytes: number; ms: number };

/** Builds dist/pgherd if stale (or `force`). Throws with bun's output on failure. */
export function ensureBuilt(opts: { force?: boolean } = {}): BuildResult {
  const started = performance.now();
  const startedAt = new Date();
  if (!opts.force && isUpToDate()) {
    return { path: BINARY, rebuilt: false, bytes: statSync(BINARY).size, ms: 0 };
  }
  // Build beside the target and rename: tests of other engineers may be running the old binary.
  // The temp file keeps the name "pgherd": it is the script name inside the binary's stack traces.
  const tmpDir = join(ROOT, "dist", `.build-${process.pid}`);
  mkdirSync(tmpDir, { recursive: true });
  const tmp = join(tmpDir, "pgherd");
  const args = [
    "build", "--compile",
    // A compiled binary would otherwise read .env and bunfig.toml from whatever directory it runs in.
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    // Dynamic imports become separate chunks inside the binary, parsed only when loaded: the
    // watchdog mode (main.ts → src/fence/watchdog-main.ts) never parses the CLI, zod or postgres
    // (measured: watchdog RSS 34 MB as one bundle, 27 MB split; 47 MB before the lean entry).
    "--splitting",
    // JavaScriptCore's tier-up thresholds times JIT_POLICY for the whole life of every mode of the
    // binary: an agent's and a watchdog's work is small and I/O-bound, and the optimizing JITs
    // (DFG, FTL) cost their compilers' code pages and JIT memory in both processes. Measured on an
    // idle 3-node cluster (bench:footprint, 60 s): agent RSS 74.7 -> 60.8 MB (USS 33.4 -> 22.0),
    // watchdog 26.5 -> 24.7 MB, CPU unchanged (3.7 % per host), host-crash failover unchanged
    // (docs/design.md, Footprint). --smol and --bytecode changed nothing measurable.
    `--compile-jit-policy=${JIT_POLICY}`,
    join(ROOT, "src", "main.ts"), "--outfile", tmp,
  ];
  try {
    const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`bun build failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
    // Stamp the binary with the build's start: a source edited during the build leaves it stale.
    utimesSync(tmp, startedAt, startedAt);
    renameSync(tmp, BINARY);
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
  return { path: BINARY, rebuilt: true, bytes: statSync(BINARY).size, ms: performance.now() - started };
}

if (import.meta.main) {
  try {
    const r = ensureBuilt({ force: process.argv.includes("--force") });
    const size = `${(r.bytes / 1024 / 1024).toFixed(1)} MiB`;
    console.log(r.rebuilt ? `built ${r.path}: ${size} in ${(r.ms / 1000).toFixed(1)} s` : `${r.path} is up to date (${size})`);
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
