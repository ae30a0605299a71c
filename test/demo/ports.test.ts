// Free loopback ports: a port handed out once is never handed out again by the same process, so two
// servers a test picks ports for one after the other never get the same one (CI: a test's two
// PostgreSQL servers were given one port, and the second failed with "Address already in use").
import { expect, test } from "bun:test";
import { freeTcpPorts, freeUdpPort } from "../../src/demo/ports.ts";

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
