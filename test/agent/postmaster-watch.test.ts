// The postmaster watch: a killed "postmaster" (a real process named in postmaster.pid) is reported
// a few ms after its monitoring connection closes (closed()), or within the safety poll without one;
// once per pid; a new postmaster in the file is watched again.
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

async function killAndTime(everyMs: number, signalClose: boolean): Promise<number[]> {
  const gone: Array<{ pid: number; at: number }> = [];
  const w = new PostmasterWatch({ clock: realClock, everyMs, pidFile, gone: (pid) => gone.push({ pid, at: performance.now() }) });
  w.start();
  const delays: number[] = [];
  try {
    for (let round = 0; round < 2; round++) {
      const p = spawn("sleep", ["600"], { stdio: "ignore" });
      writeFileSync(pidFile, `${p.pid}\n/data\n`);
      if (!signalClose) await Bun.sleep(everyMs * 2); // the safety poll has read the new pid
      expect(gone.length).toBe(round);
      const killedAt = performance.now();
      p.kill("SIGKILL");
      // What the monitoring connection does when its postmaster dies: it closes (here: a little before the exit is visible).
      if (signalClose) w.closed();
      await waitFor(() => gone.length > round, { timeoutMs: everyMs * 4, intervalMs: 2, what: "the exit to be reported" });
      expect(gone[round]!.pid).toBe(p.pid!);
      delays.push(gone[round]!.at - killedAt);
      w.closed(); // postmaster.pid still names the dead pid: nothing to watch, not reported again
      await Bun.sleep(100);
      expect(gone.length).toBe(round + 1);
    }
  } finally {
    w.stop();
  }
  return delays;
}

test("after the monitoring connection closes, a dead postmaster is reported within a few ms, once per pid", async () => {
  const delays = await killAndTime(5000, true);
  console.log(`reported ${delays.map((d) => d.toFixed(0)).join(", ")} ms after SIGKILL (safety poll 5000 ms)`);
  for (const d of delays) expect(d).toBeLessThan(100);
});

test("without a connection event, the safety poll reports it", async () => {
  const delays = await killAndTime(50, false);
  for (const d of delays) expect(d).toBeLessThan(300);
});
