// A stopping leader's handover (src/agent/handover.ts) with a fake agent and a clock moved by hand.
import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ActionResult } from "../../src/api/actions-contract.ts";
import type { Config } from "../../src/config/schema.ts";
import type { PgReport } from "../../src/core/report.ts";
import type { Candidate } from "../../src/core/switchover.ts";
import { handOverBeforeStop, type HandoverAgent } from "../../src/agent/handover.ts";
import type { Logger } from "../../src/log.ts";
import { FakeClock } from "./_clock.ts";

const rep = (over: Partial<PgReport> = {}): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000000" },
  receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: null, streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const primary = rep({ inRecovery: false, streaming: false, action: "primary" });

/** Leader A hands over to standby B; `stopAt`: when its primary's clean stop begins (after the checkpoint). */
function world(o: { clock: FakeClock; stopAt: number; bLsn?: string; maxLagBytes?: number }) {
  const { clock } = o;
  let stopped: number | null = null;
  const asked: string[] = [];
  const led = () => stopped !== null && clock.now() >= stopped + 2000; // B promoted 2 s after the clean stop
  const follows = () => stopped !== null && clock.now() >= stopped + 5000; // A's server runs as B's standby 3 s later
  const cands = (): Candidate[] => [
    { id: "A", name: "a", voter: true, witness: false, neverPromoted: false, report: follows() ? rep() : primary },
    { id: "B", name: "b", voter: true, witness: false, neverPromoted: false, report: led() ? primary : rep({ replayLsn: o.bLsn ?? "0/3000000" }) },
  ];
  const agent: HandoverAgent = {
    nodeId: "A",
    nameOf: (id) => id.toLowerCase(),
    answers: async () => true,
    handOver: (to) => {
      asked.push(to);
      return new Promise<ActionResult>((resolve) => {
        clock.after(o.stopAt, () => {
          stopped = clock.now();
          clock.after(2000, () => resolve({ status: 200, ok: true, message: "switchover to b done" }));
        });
      });
    },
    loopContext: {
      candidates: cands,
      leadership: () => {
        const l = led();
        return { term: l ? 4 : 3, leading: !l, acquiringLease: false, leaderId: l ? "B" : "A", member: true, voter: true };
      },
      paused: () => false,
      leaderPg: () => (led() ? { id: "B", report: primary } : { id: "A", report: primary }),
      maxLagBytes: () => o.maxLagBytes ?? 1 << 20,
    } as unknown as HandoverAgent["loopContext"],
  };
  return { agent, asked };
}

function run(clock: FakeClock, agent: HandoverAgent, maxLagInToml = 1 << 20) {
  const lines: string[] = [];
  const log = { debug: () => {}, info: (m: string) => lines.push(`info ${m}`), warn: (m: string) => lines.push(`warn ${m}`), error: (m: string) => lines.push(`error ${m}`) } as unknown as Logger;
  const cfg = {
    state_dir: mkdtempSync(join(tmpdir(), "pgherd-stop-handover-")), // no lease file: disarmed
    election: { timeout_ms: 1500, jitter_ms: 300, lease_ms: 1000 }, postgres: { loop_ms: 500 }, failover: { max_lag_bytes: maxLagInToml },
  } as unknown as Config;
  let finished = false;
  const done = handOverBeforeStop("SIGTERM", { cfg, agent, database: true, enabled: true, log, clock }).then(() => void (finished = true));
  return { lines, done, finished: () => finished };
}

test("a checkpoint of 25 s before the clean stop: the handover still completes (the bound counts from the clean stop on)", async () => {
  const clock = new FakeClock();
  const { agent } = world({ clock, stopAt: 25_000 });
  const r = run(clock, agent);
  for (let i = 0; i < 120 && !r.finished(); i++) await clock.advance(500);
  await r.done;
  expect(r.lines.filter((l) => l.includes("not confirmed"))).toEqual([]);
  expect(r.lines.at(-1)).toMatch(/^info SIGTERM: handed over to b in 30\d\d\d ms/);
});

test("the whole wait stays within the unit's TimeoutStopSec=90s: a clean stop that never begins ends it at 45 s + 22.8 s", async () => {
  const clock = new FakeClock();
  const { agent } = world({ clock, stopAt: 10 * 60_000 });
  const r = run(clock, agent);
  for (let i = 0; i < 400 && !r.finished(); i++) await clock.advance(500);
  await r.done;
  expect(clock.now()).toBeGreaterThanOrEqual(67_800);
  expect(clock.now()).toBeLessThanOrEqual(67_800 + 500);
  expect(r.lines.at(-1)).toMatch(/^warn SIGTERM: handover not confirmed after 68 s \(this node leads again\)/);
});

test("the target is chosen with failover.max_lag_bytes in force (the cluster's), not pgherd.toml's", async () => {
  // pgherd.toml: the default 1 MiB; `pgherd config set failover.max_lag_bytes=67108864`; b lags 2 MiB.
  const clock = new FakeClock();
  const { agent, asked } = world({ clock, stopAt: 1000, bLsn: "0/2E00000", maxLagBytes: 64 << 20 });
  const r = run(clock, agent, 1 << 20);
  for (let i = 0; i < 120 && !r.finished(); i++) await clock.advance(500);
  await r.done;
  expect(asked).toEqual(["B"]);
  expect(r.lines.at(-1)).toMatch(/^info SIGTERM: handed over to b/);
});
