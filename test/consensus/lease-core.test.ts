import { expect, test } from "bun:test";
import { etcdLeaseMargins, leaseDeadline, usableLeaseMs } from "../../src/consensus/etcd/lease-core.ts";

test("the local deadline plus the fence ends, in real time, before etcd can delete the key at worst drift", () => {
  for (const ttlS of [2, 5, 10, 60]) {
    for (const drift of [0, 0.02, 0.1]) {
      for (const fenceMs of [0, 500, 1000]) {
        const until = leaseDeadline(1000, ttlS, drift, fenceMs);
        if (until === null) continue;
        // This host's clock slow by `drift`, etcd's fast by `drift`: the tightest case.
        const fencedRealMs = (until - 1000 + fenceMs) / (1 - drift);
        const deletedRealMs = (ttlS * 1000) / (1 + drift);
        expect(fencedRealMs).toBeLessThanOrEqual(deletedRealMs + 1e-6);
      }
    }
  }
});

test("counted from the send time of the renewal; 0 TTL (lease gone) or a fence longer than the lease gives no deadline", () => {
  expect(leaseDeadline(10_000, 5, 0, 500)).toBe(14_500);
  expect(leaseDeadline(10_000, 5, 0.02, 500)).toBeCloseTo(10_000 + 5000 * 0.98 / 1.02 - 500, 6);
  expect(leaseDeadline(10_000, 0, 0.02, 500)).toBeNull();
  expect(leaseDeadline(10_000, 1, 0, 1000)).toBeNull();
  expect(usableLeaseMs(5, 0, 0)).toBe(5000);
});

test("margins: the usable lease must cover two renewal rounds; minTtlS is the smallest that does", () => {
  const base = { maxDrift: 0.02, fenceMs: 500, pollMs: 250, requestTimeoutMs: 1000 };
  expect(etcdLeaseMargins({ ...base, ttlS: 5 }).ok).toBe(true);
  const m = etcdLeaseMargins({ ...base, ttlS: 2 });
  expect(m.ok).toBe(false);
  expect(m.minTtlS).toBe(4);
  expect(etcdLeaseMargins({ ...base, ttlS: m.minTtlS }).ok).toBe(true);
  expect(etcdLeaseMargins({ ...base, ttlS: m.minTtlS - 1 }).ok).toBe(false);
});
