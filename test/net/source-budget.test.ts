// The beacon's verification budget (pure arithmetic, time passed in).
import { expect, test } from "bun:test";
import { SourceBudget } from "../../src/net/source-budget.ts";

const limits = { perSourcePerSec: 10, perSourceBurst: 5, sharedPerSec: 20, sharedBurst: 8, trustMs: 1000, trustedPerSec: 30, trustedBurst: 6, maxSources: 3 };

function spend(b: SourceBudget, source: string, now: number, n: number): number {
  let allowed = 0;
  for (let i = 0; i < n; i++) {
    if (!b.allows(source, now)) continue;
    allowed++;
    b.failed(source, now);
  }
  return allowed;
}

test("a source may fail `burst` times at once, then perSourcePerSec; others are not charged", () => {
  const b = new SourceBudget(limits, 0);
  expect(spend(b, "10.0.0.1", 0, 100)).toBe(5);
  expect(spend(b, "10.0.0.1", 500, 100)).toBe(5); // 0.5 s × 10/s, capped at the burst
  expect(b.allows("10.0.0.2", 500)).toBe(true);
});

test("the shared bucket bounds many sources together; a recently authentic source bypasses it", () => {
  const b = new SourceBudget(limits, 0);
  b.succeeded("10.0.0.9", 0);
  let total = 0;
  for (let i = 0; i < 50; i++) total += spend(b, `10.1.0.${i}`, 0, 5);
  expect(total).toBe(8);
  expect(b.allows("10.1.1.1", 0)).toBe(false);
  expect(b.allows("10.0.0.9", 0)).toBe(true);
  expect(b.allows("10.0.0.9", 1001)).toBe(true); // trust expired, but 1 s × 20/s refilled the shared bucket
  expect(spend(b, "10.0.0.9", 2000, 100)).toBe(5); // trust expired: its own bucket applies
});

test("failures forged with a trusted peer's address do not shut out its genuine datagrams: a trusted source whose own bucket is spent is verified out of the trusted pool, which bounds it", () => {
  const b = new SourceBudget(limits, 0);
  b.succeeded("10.0.0.7", 0);
  // Forged failures at the peer's address: its own 5, then the pool's 6, then nothing more.
  expect(spend(b, "10.0.0.7", 0, 100)).toBe(11);
  expect(b.allows("10.0.0.7", 0)).toBe(false);
  // 100 ms later the pool has 3 tokens again (30/s) and its own bucket 1 (10/s): the genuine beacon is verified.
  expect(b.allows("10.0.0.7", 100)).toBe(true);
  b.succeeded("10.0.0.7", 100);
  // Sources never authentic are not helped by the pool.
  expect(spend(b, "10.0.0.8", 100, 100)).toBe(5);
  expect(b.allows("10.0.0.8", 100)).toBe(false);
});

test("forgetting old sources keeps the map bounded", () => {
  const b = new SourceBudget(limits, 0);
  for (let i = 0; i < 10; i++) spend(b, `10.2.0.${i}`, 0, 1);
  expect(b.tracked()).toBe(3);
});
