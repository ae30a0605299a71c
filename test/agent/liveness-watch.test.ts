// The liveness round's shell (src/agent/pg/liveness.ts) with its sources replaced: the processes'
// state, the fresh connection and the clock are the test's, the sampling loop and its early end are
// the real ones. The pure rules are test/core/liveness.test.ts; a real frozen server is
// test/e2e/stuck-frozen.e2e.test.ts.
import { describe, expect, test } from "bun:test";
import type { Attempt } from "../../src/core/liveness.ts";
import { LivenessWatch, type LivenessSources } from "../../src/agent/pg/liveness.ts";
import type { FreshCheck } from "../../src/postgres/liveness-obs.ts";
import type { Probe } from "../../src/postgres/index.ts";
import { memoryLogger } from "../../src/log.ts";

const ALL = { text: "postmaster 41 and 3 of 3 children stopped (state T)", all: true };
const ONE = { text: "postmaster 41 running and 1 of 3 children stopped (state T)", all: false };
const NONE = { text: "", all: false };
const up = { up: true, ms: 1, inRecovery: false, timeline: 1, currentLsn: "0/1", receiveLsn: null, replayLsn: null, flushLsn: null, walReceiver: null, replication: [], systemIdentifier: "1", serverVersion: 170000 } as unknown as Probe;
const ok: Attempt = { kind: "ok", ms: 1 };
const timeout: Attempt = { kind: "timeout", ms: 1500, error: "no answer within 1500 ms" };

/** A watch whose clock moves when the test (or its process sampler) moves it, and by 1 µs a reading; fractional, as performance.now() is. */
function harness(stopped: (n: number) => { text: string; all: boolean }, fresh: LivenessSources["fresh"], liveness: Partial<Record<"stuck_ms" | "cannot_write_ms" | "disk_full_ms", number>> = {}) {
  const clock = { t: 1000.37 };
  let samples = 0;
  const src: LivenessSources = {
    postmaster: () => 41,
    stopped: () => stopped(samples++),
    fresh,
    disks: () => [],
    wal: () => 7,
  };
  // Each reading is a little later than the one before, as a real monotonic clock's.
  const h = { node: { dataDir: "/nonexistent", osUser: "root" }, clock: { now: () => (clock.t += 0.001) }, socketDir: "/tmp", cfg: { postgres: { port: 5432, superuser: "postgres" }, liveness: { stuck_ms: 3000, cannot_write_ms: 1000, disk_full_ms: 1000, ...liveness } }, log: memoryLogger() };
  const watch = new LivenessWatch(h as unknown as ConstructorParameters<typeof LivenessWatch>[0], src);
  return { watch, clock, samples: () => samples };
}

/** A fresh check that hangs until released; `first` is told at once (SELECT 1's outcome), the rest on release. */
function hanging(first?: Partial<FreshCheck>) {
  let release!: (fc: FreshCheck) => void;
  let released = false;
  const fresh: LivenessSources["fresh"] = (_o, _write, _ms, step = () => {}) => {
    if (first) step(first);
    return new Promise<FreshCheck>((r) => (release = (fc) => {
      released = true;
      r(fc);
    }));
  };
  return { fresh, release: (fc: FreshCheck) => release(fc), released: () => released };
}

describe("liveness watch", () => {
  test("the whole server frozen after the probe answered: the round ends frozenMs after the first sighting, without waiting for the hung fresh connection", async () => {
    const f = hanging();
    const { watch, clock } = harness((n) => {
      if (n === 0) return NONE; // the round's start: running
      clock.t += 150; // time passes between samples
      return ALL;
    }, f.fresh);
    const p = await watch.observe(true, true, () => Promise.resolve(up));
    expect(f.released()).toBe(false); // the fresh connection is still pending: the round did not wait for it
    expect(p.up).toBe(true);
    expect(watch.verdict?.state).toBe("stuck");
    expect(watch.verdict?.reason).toContain("3 of 3 children stopped");
    f.release({ fresh: timeout, write: null });
  });

  test("[liveness] durations from pgherd.toml: cannot_write_ms = 5000 waits five times as long as the default for failing commits", async () => {
    const failing: LivenessSources["fresh"] = () => Promise.resolve({ fresh: ok, write: { kind: "error", ms: 3, error: "could not extend file: No space left on device", sqlstate: "53100" } });
    const states: (string | undefined)[] = [];
    for (const cw of [1000, 5000]) {
      const { watch, clock } = harness(() => NONE, failing, { cannot_write_ms: cw });
      for (let round = 0; round < 4; round++) {
        await watch.observe(true, true, () => Promise.resolve(up));
        clock.t += 500;
      }
      states.push(watch.verdict?.state);
    }
    expect(states).toEqual(["cannot-write", "busy"]);
  });

  test("a backend stopped (postmaster running) while the commit hangs: the round waits for its attempts and the verdict is busy", async () => {
    const f = hanging({ fresh: ok });
    const { watch, clock } = harness((n) => {
      if (n === 0) return NONE;
      clock.t += 150;
      if (n === 14) f.release({ fresh: ok, write: timeout }); // 1.95 s of sightings: the commit's deadline
      return ONE;
    }, f.fresh);
    await watch.observe(true, true, () => Promise.resolve(up));
    expect(f.released()).toBe(true);
    expect(watch.verdict?.state).toBe("busy");
  });

  test("attempts refused at once do not end the round while the whole server is seen stopped: the verdict comes in that round", async () => {
    const down = { up: false, ms: 1, error: "connection refused" } as Probe;
    const refused: Attempt = { kind: "timeout", ms: 1, error: "connection refused" };
    const { watch, clock, samples } = harness((n) => {
      if (n > 0) clock.t += 150;
      return ALL;
    }, (_o, _w, _ms, step = () => {}) => {
      step({ fresh: refused });
      return Promise.resolve({ fresh: refused, write: null });
    });
    await watch.observe(true, true, () => Promise.resolve(down));
    expect(watch.verdict?.state).toBe("stuck");
    expect(samples()).toBeGreaterThan(6); // sampled on past the attempts, 150 ms apart, until frozenMs
  });

  test("the round ends as soon as the whole server runs again", async () => {
    const { watch, clock, samples } = harness((n) => {
      if (n > 0) clock.t += 150;
      return n < 3 ? ALL : NONE; // stopped for 300 ms (SIGSTOP, SIGCONT)
    }, () => Promise.resolve({ fresh: ok, write: ok }));
    await watch.observe(true, true, () => Promise.resolve(up));
    expect(watch.verdict?.state).toBe("ok");
    expect(samples()).toBe(4);
  });
});
