// src/main.ts: an agent replaces itself (execve) with a copy whose environment has the allocator
// options, once, keeping an option an operator set. Bun's mimalloc prints the options it read
// (MIMALLOC_VERBOSE) at each process start, so the real runtime shows what each image got.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

function run(args: string[], extra: Record<string, string>): { inits: number; intervals: string[]; stderr: string } {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", MIMALLOC_VERBOSE: "1", ...extra };
  const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: "utf8", timeout: 30_000 });
  const out = `${r.stdout}${r.stderr}`;
  return {
    inits: out.match(/mimalloc: process init/g)?.length ?? 0,
    intervals: [...out.matchAll(/option 'purge_holes_min_interval': (\d+)/g)].map((m) => m[1]!),
    stderr: out,
  };
}

describe("agent allocator options", () => {
  test("an agent started without them runs again, once, with them, and the same arguments", () => {
    const r = run(["agent", "--config", "/nonexistent/pgherd.toml"], {});
    expect(r.intervals).toEqual(["100", "1000"]);
    expect(r.inits).toBe(2);
    expect(r.stderr).toContain("/nonexistent/pgherd.toml"); // the re-executed agent got the same argv
  });

  test("an option set by the operator is kept, without a second start", () => {
    const r = run(["agent", "--config", "/nonexistent/pgherd.toml"], { MIMALLOC_PURGE_HOLES_MIN_INTERVAL: "500" });
    expect(r.intervals).toEqual(["500"]);
    expect(r.inits).toBe(1);
  });

  test("other commands do not re-execute", () => {
    const r = run(["version"], {});
    expect(r.intervals).toEqual(["100"]);
    expect(r.inits).toBe(1);
  });
});
