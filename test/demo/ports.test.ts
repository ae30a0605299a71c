// Free loopback ports: a port handed out once is never handed out again by the same process, so two
// servers a test picks ports for one after the other never get the same one (CI: a test's two
// PostgreSQL servers were given one port, and the second failed with "Address already in use").
import { expect, test } from "bun:test";
import { freeTcpPorts, freeUdpPort, pickRange } from "../../src/demo/ports.ts";

test("300 ports picked one at a time are all different, TCP and UDP alike", async () => {
  const seen: number[] = [];
  for (let i = 0; i < 150; i++) seen.push(...(await freeTcpPorts(1)));
  for (let i = 0; i < 150; i++) seen.push(await freeUdpPort());
  // 300 random picks from ~12,000 ports: without the memory, a repeat comes in most runs (p ≈ 0.97)
  expect(new Set(seen).size).toBe(seen.length);
});

test("a batch is distinct and shares nothing with earlier batches", async () => {
  const first = await freeTcpPorts(20);
  const second = await freeTcpPorts(20);
  expect(new Set([...first, ...second]).size).toBe(40);
});

// `bun test --parallel` runs files in worker processes, each with its own memory of the ports it
// gave: two workers must never pick from the same ports.
test("each bun test worker picks from a slice of its own; outside the runner the whole range", () => {
  expect(pickRange(20_000, 32_768, undefined)).toEqual({ low: 20_000, top: 32_768 });
  expect(pickRange(20_000, 32_768, "")).toEqual({ low: 20_000, top: 32_768 });
  const slices = ["1", "2", "3", "8"].map((w) => pickRange(20_000, 32_768, w));
  for (const r of slices) {
    expect(r.top - r.low).toBeGreaterThanOrEqual(1000);
    expect(r.low).toBeGreaterThanOrEqual(20_000);
    expect(r.top).toBeLessThanOrEqual(32_768);
  }
  for (let i = 0; i < slices.length; i++) for (let j = i + 1; j < slices.length; j++) {
    expect(slices[i]!.top <= slices[j]!.low || slices[j]!.top <= slices[i]!.low).toBe(true);
  }
});
