import { parseConfig } from "../../src/config/load.ts";
import { expect, test } from "bun:test";
import { electionMargins } from "../../src/config/margins.ts";

test("default timings: numbers the agent logs", () => {
  const m = electionMargins({ lease_ms: 1000, timeout_ms: 1500, max_drift: 0.02, fence_ms: 400 });
  expect(m.leaseRealMaxMs).toBeCloseTo(1020.41, 2);
  expect(m.fencedByRealMaxMs).toBeCloseTo(1428.57, 2);
  expect(m.followerWaitRealMinMs).toBeCloseTo(1470.59, 2);
  expect(m.slackMs).toBeCloseTo(42.02, 2);
  expect(m.minTimeoutMs).toBe(1458);
  expect(m.ok).toBe(true);
});

test("the previous defaults (1500/2500/500) keep a 410 ms spare", () => {
  const m = electionMargins({ lease_ms: 1500, timeout_ms: 2500, max_drift: 0.02, fence_ms: 500 });
  expect(m.slackMs).toBeCloseTo(410.16, 2);
  expect(m.minTimeoutMs).toBe(2082);
});

test("no drift: the exact sum is enough (no rounding up)", () => {
  const m = electionMargins({ lease_ms: 1000, timeout_ms: 1200, max_drift: 0, fence_ms: 200 });
  expect(m.minTimeoutMs).toBe(1200);
  expect(m.slackMs).toBe(0);
  expect(m.ok).toBe(true);
  expect(electionMargins({ lease_ms: 1000, timeout_ms: 1199, max_drift: 0, fence_ms: 200 }).ok).toBe(false);
});

test("minTimeoutMs is the boundary: one less is unsafe, and ok agrees with slack", () => {
  for (const [lease, fence, drift] of [[1500, 500, 0.02], [300, 0, 0.05], [5000, 1234, 0.1], [10, 1, 0.5]] as const) {
    const min = electionMargins({ lease_ms: lease, timeout_ms: 0, max_drift: drift, fence_ms: fence }).minTimeoutMs;
    const at = electionMargins({ lease_ms: lease, timeout_ms: min, max_drift: drift, fence_ms: fence });
    const below = electionMargins({ lease_ms: lease, timeout_ms: min - 1, max_drift: drift, fence_ms: fence });
    expect(at.ok).toBe(true);
    expect(at.slackMs).toBeGreaterThanOrEqual(-1e-9);
    expect(below.ok).toBe(false);
    expect(below.slackMs).toBeLessThan(0);
  }
});

test("election.fence_ms below 100 is refused at load, naming the key: PostgreSQL does not stop the instant the lease ends (review: 0 loaded with the kernel watchdog off)", () => {
  const load = (fence: number) => () => parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\n[election]\nlease_ms = 1000\ntimeout_ms = 1200\nmax_drift = 0\nfence_ms = ${fence}\n`, "pgherd.toml");
  expect(load(0)).toThrow(/election\.fence_ms/);
  expect(load(99)).toThrow(/election\.fence_ms/);
  expect(load(100)).not.toThrow();
});
