// The postmaster watch: a killed "postmaster" (a real process named in postmaster.pid) is reported
// within a few check intervals, once; a new postmaster in the file is watched again.
import { afterAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PostmasterWatch } from "../../src/agent/pg/postmaster-watch.ts";
import { realClock } from "../../src/fence/clock.ts";
import { waitFor } from "../helpers/proc.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-pmwatch-"));
const pidFile = join(dir, "postmaster.pid");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a dead postmaster is reported within ~the check interval, once per pid", async () => {
  const gone: Array<{ pid: number; at: number }> = [];
  const w = new PostmasterWatch({ clock: realClock, everyMs: 20, pidFile, gone: (pid) => gone.push({ pid, at: performance.now() }) });
  w.start();
  try {
    for (let round = 0; round < 2; round++) {
      const p = spawn("sleep", ["600"], { stdio: "ignore" });
      writeFileSync(pidFile, `${p.pid}\n/data\n`);
      await Bun.sleep(100); // watched now
      expect(gone.length).toBe(round);
      const killedAt = performance.now();
      p.kill("SIGKILL");
      await waitFor(() => gone.length > round, { timeoutMs: 2000, intervalMs: 5, what: "the exit to be reported" });
      expect(gone[round]!.pid).toBe(p.pid!);
      console.log(`reported ${(gone[round]!.at - killedAt).toFixed(0)} ms after SIGKILL`);
      expect(gone[round]!.at - killedAt).toBeLessThan(250);
      await Bun.sleep(100); // postmaster.pid still names the dead pid: not reported again
      expect(gone.length).toBe(round + 1);
    }
  } finally {
    w.stop();
  }
});
