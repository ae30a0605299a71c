// runTool: user switching, secret masking, timeouts that kill the whole process group, and
// binary discovery (configured dir, pg_config, versioned roots, clear errors).
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { BinDirError, findBinDir } from "../../src/postgres/binaries.ts";
import { pidAlive } from "../../src/postgres/datadir.ts";
import { MAX_STDOUT, runTool, runToolOk, secret, ToolError } from "../../src/postgres/exec.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER, pgBins, pgSkipReason } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

describe("runTool", () => {
  test("runs as the given OS user when root, with a minimal C-locale environment", async () => {
    requireReal("running a tool as another OS user", isRoot() ? null : "needs root");
    const log = memoryLogger();
    const r = await runToolOk({ bin: "/bin/sh", args: ["-c", "id -un; echo $LC_ALL; echo ${PGPASSWORD:-unset}"], user: "postgres", timeoutMs: 10_000, log });
    expect(r.stdout.split("\n").slice(0, 3)).toEqual(["postgres", "C", "unset"]);
    expect(log.lines.some((l) => l.includes("(as postgres)"))).toBe(true);
  });

  test("a tool run as the OS user starts in /, also when our working directory is closed to that user", async () => {
    requireReal("running a tool as another OS user", isRoot() ? null : "needs root");
    const closed = mkdtempSync("/tmp/pgherd-closed-"); // 0700, owned by root: postgres cannot enter it
    const before = process.cwd();
    process.chdir(closed);
    try {
      const r = await runToolOk({ bin: "/bin/sh", args: ["-c", "pwd"], user: "postgres", timeoutMs: 10_000, log: memoryLogger() });
      expect({ cwd: r.stdout.trim(), stderr: r.stderr }).toEqual({ cwd: "/", stderr: "" });
    } finally {
      process.chdir(before);
      rmSync(closed, { recursive: true, force: true });
    }
  });

  test("secrets in args, env and stdin never reach the log or the captured output", async () => {
    const log = memoryLogger();
    const r = await runTool({
      bin: "/bin/sh",
      args: ["-c", 'read x; echo "env=$TOP arg=$1 in=$x" >&2; exit 3', "sh", secret("hunter2-arg")],
      env: { TOP: secret("hunter2-env"), VISIBLE: "shown" },
      input: secret("hunter2-in"),
      timeoutMs: 10_000,
      log,
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe("env=*** arg=*** in=***\n");
    const all = log.lines.join("\n");
    expect(all).toContain("exited 3");
    expect(all).toContain("VISIBLE=shown");
    expect(all).not.toContain("hunter2-env");
    expect(all).not.toContain("hunter2-arg");
    expect(all).not.toContain("hunter2-in");
  });

  test("output beyond the cap keeps its tail and says it was cut", async () => {
    const log = memoryLogger();
    const big = await runTool({ bin: "/bin/sh", args: ["-c", `head -c ${MAX_STDOUT + 10} /dev/zero | tr '\\0' x; echo END`], timeoutMs: 20_000, log });
    expect(big.stdoutCut).toBe(true);
    expect(big.stdout.length).toBe(MAX_STDOUT);
    expect(big.stdout.endsWith("xEND\n")).toBe(true);
    const small = await runTool({ bin: "/bin/sh", args: ["-c", "echo ok"], timeoutMs: 10_000, log });
    expect(small.stdoutCut).toBeUndefined();
  });

  test("a timeout kills the whole process group and is reported", async () => {
    const dir = mkdtempSync("/tmp/pgherd-exec-");
    try {
      const pidFile = join(dir, "pid");
      const log = memoryLogger();
      const t0 = performance.now();
      const r = await runTool({ bin: "/bin/sh", args: ["-c", `sleep 30 & echo $! > ${pidFile}; wait`], timeoutMs: 300, log });
      expect(r.timedOut).toBe(true);
      expect(r.code).toBeNull();
      expect(performance.now() - t0).toBeLessThan(5000);
      const grandchild = Number(readFileSync(pidFile, "utf8"));
      await waitFor(() => !pidAlive(grandchild), { timeoutMs: 5000, what: "the background sleep to be killed" });
      expect(log.lines.some((l) => l.startsWith("warn") && l.includes("timed out after 300 ms"))).toBe(true);
      await expect(runToolOk({ bin: "/bin/sleep", args: ["5"], timeoutMs: 100, log })).rejects.toMatchObject({ failure: "timeout" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an abort stops the whole process group as the timeout does, and is no timeout", async () => {
    const dir = mkdtempSync("/tmp/pgherd-exec-");
    try {
      const pidFile = join(dir, "pid");
      const log = memoryLogger();
      const stop = new AbortController();
      const t0 = performance.now();
      const r = await runTool({
        bin: "/bin/sh", args: ["-c", `sleep 30 & echo $! > ${pidFile}; echo started >&2; wait`], timeoutMs: 60_000, log, signal: stop.signal,
        onStderrLine: (l) => { if (l === "started") stop.abort(); },
      });
      expect(r.timedOut).toBe(false);
      expect(r.code).toBeNull();
      expect(r.signal).toBe("SIGTERM");
      expect(performance.now() - t0).toBeLessThan(5000);
      const grandchild = Number(readFileSync(pidFile, "utf8"));
      await waitFor(() => !pidAlive(grandchild), { timeoutMs: 5000, what: "the background sleep to be killed" });
      // Aborted before it starts: stopped at once.
      const early = new AbortController();
      early.abort();
      const e = await runTool({ bin: "/bin/sleep", args: ["5"], timeoutMs: 60_000, log, signal: early.signal });
      expect(e.signal).toBe("SIGTERM");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("non-zero exit → ToolError with tool, code and stderr; missing binary → spawn failure", async () => {
    const log = memoryLogger();
    const e = await runToolOk({ bin: "/bin/sh", args: ["-c", "echo boom >&2; exit 4"], timeoutMs: 5000, log }).catch((x) => x);
    expect(e).toBeInstanceOf(ToolError);
    expect(e).toMatchObject({ tool: "sh", failure: "exit", code: 4, stderr: "boom\n" });
    expect(e.message).toContain("boom");
    const s = await runTool({ bin: "/nonexistent/tool", args: [], timeoutMs: 5000, log }).catch((x) => x);
    expect(s).toBeInstanceOf(ToolError);
    expect(s.failure).toBe("spawn");
  });

  test("stderr lines are delivered as they arrive, split on \\r and \\n", async () => {
    const lines: string[] = [];
    await runToolOk({
      bin: "/bin/sh", args: ["-c", "printf 'a\\rb\\nc' >&2"], timeoutMs: 5000, log: memoryLogger(), onStderrLine: (l) => lines.push(l),
    });
    expect(lines).toEqual(["a", "b", "c"]);
  });
});

describe("findBinDir", () => {
  test("finds the installed binaries and their major version", async () => {
    requireReal("binary discovery on this machine", pgSkipReason);
    const b = await findBinDir();
    expect(b.dir).toBe(pgBins!.dir);
    expect(b.versionString).toContain(`(PostgreSQL) ${b.version}`);
    expect(await findBinDir(b.dir)).toEqual(b);
  });

  test.skipIf(process.getuid?.() !== 0)("as root, the probe runs as postgres.os_user (a root agent never runs a configured program as root)", async () => {
    const dir = mkdtempSync("/tmp/pgherd-fakebin-");
    try {
      chmodSync(dir, 0o755);
      writeFileSync(join(dir, "postgres"), '#!/bin/sh\necho "postgres (PostgreSQL) 15.99 uid=$(id -u)"\n', { mode: 0o755 });
      const pg = await lookupOsUser(PG_OS_USER);
      expect((await findBinDir(dir, { osUser: PG_OS_USER })).versionString).toBe(`postgres (PostgreSQL) 15.99 uid=${pg.uid}`);
      expect((await findBinDir(dir)).versionString).toBe("postgres (PostgreSQL) 15.99 uid=0"); // no user given: as the caller
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a configured bin_dir that does not exist is an error naming it (no silent fallback)", async () => {
    const e = await findBinDir("/nonexistent/pg/bin").catch((x) => x);
    expect(e).toBeInstanceOf(BinDirError);
    expect(e.message).toContain('postgres.bin_dir "/nonexistent/pg/bin"');
    expect(e.message).toContain("/nonexistent/pg/bin/postgres");
  });

  test("nothing found → error listing what was tried", async () => {
    const empty = mkdtempSync("/tmp/pgherd-bins-");
    try {
      const e = await findBinDir(undefined, {
        pgConfig: "/nonexistent/pg_config",
        versionedRoots: [{ root: empty, prefix: "", suffix: "bin" }],
      }).catch((x) => x);
      expect(e).toBeInstanceOf(BinDirError);
      expect(e.message).toContain("/nonexistent/pg_config --bindir (not found)");
      expect(e.message).toContain(`${empty}/<version>/bin (none)`);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
