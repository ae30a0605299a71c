// The checkpoint after a promotion (src/agent/pg/timeline-checkpoint.ts) over a fake connection: one
// at a time, none for a server whose pg_control names its timeline, none again for a timeline one
// already named, and after a failure not again before its retry time (a full disk warned every
// round). The real CHECKPOINT: test/postgres/detach.test.ts.
import { expect, test } from "bun:test";
import { TimelineCheckpoint } from "../../src/agent/pg/timeline-checkpoint.ts";
import type { PgHost } from "../../src/agent/pg/host.ts";
import { memoryLogger } from "../../src/log.ts";
import type { ProbeUp } from "../../src/postgres/probe.ts";
import type { Db } from "../../src/postgres/sql.ts";
import { FakeClock } from "./_clock.ts";

function setup() {
  const clock = new FakeClock();
  const log = memoryLogger();
  const calls: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const db = {
    query: () => new Promise<unknown[]>((resolve, reject) => calls.push({ resolve: () => resolve([]), reject })),
    close: async () => {},
  } as unknown as Db;
  const tc = new TimelineCheckpoint({ sideDb: () => db, log, clock } as unknown as PgHost);
  return { clock, log, calls, tc };
}

const primary = (timeline: number, checkpointTimeline: number) => ({ up: true, inRecovery: false, timeline, checkpointTimeline }) as ProbeUp;

test("one CHECKPOINT at a time, only for a primary whose pg_control names an older timeline, once per timeline", async () => {
  const { calls, tc } = setup();
  tc.ensure(primary(2, 2));
  tc.ensure({ ...primary(2, 1), inRecovery: true });
  expect(calls.length).toBe(0);
  tc.ensure(primary(2, 1));
  tc.ensure(primary(2, 1)); // a round while it runs
  expect(calls.length).toBe(1);
  calls[0]!.resolve();
  await tc.settled();
  tc.ensure(primary(2, 1)); // a probe taken while it ran
  expect(calls.length).toBe(1);
  tc.ensure(primary(3, 2)); // promoted again
  expect(calls.length).toBe(2);
});

test("after a failure, not again before its retry time: one warning, not one a round", async () => {
  const { clock, log, calls, tc } = setup();
  tc.ensure(primary(2, 1));
  calls[0]!.reject(new Error("could not write: No space left on device"));
  await tc.settled();
  for (let i = 0; i < 19; i++) {
    await clock.advance(500);
    tc.ensure(primary(2, 1));
  }
  expect(calls.length).toBe(1);
  await clock.advance(500);
  tc.ensure(primary(2, 1));
  expect(calls.length).toBe(2);
  expect(log.lines.filter((l) => l.includes("checkpoint after the promotion: could not write")).length).toBe(1);
});
