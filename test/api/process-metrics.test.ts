// /metrics process series: they parse as Prometheus text, RSS is this process's, and a blocked
// event loop shows up in the lag quantiles.
import { expect, test } from "bun:test";
import { eventLoopLag, processMetricLines } from "../../src/api/process-metrics.ts";
import { waitFor } from "../helpers/proc.ts";
import { parseProm } from "./prom.ts";

test("RSS, heap and CPU parse, and a 1 s block of the event loop is in the lag p99", async () => {
  await waitFor(() => (eventLoopLag()?.samples ?? 0) >= 3, { timeoutMs: 3000, what: "lag samples" });
  const end = performance.now() + 1000; // the 500 ms timer fires at least 500 ms late
  while (performance.now() < end); // block the loop
  await waitFor(() => (eventLoopLag()?.max ?? 0) >= 490, { timeoutMs: 3000, what: "the block in the lag samples" });
  const fams = parseProm(`${processMetricLines().join("\n")}\n`);
  const rss = fams.get("pgherd_process_resident_memory_bytes")!.samples[0]!.value;
  expect(Math.abs(rss - process.memoryUsage.rss())).toBeLessThan(16 * 1024 * 1024);
  const pss = fams.get("pgherd_process_proportional_memory_bytes")!.samples[0]!.value;
  const uss = fams.get("pgherd_process_unique_memory_bytes")!.samples[0]!.value;
  expect(uss).toBeGreaterThan(0);
  expect(uss).toBeLessThanOrEqual(pss);
  expect(pss).toBeLessThanOrEqual(rss + 16 * 1024 * 1024);
  expect(fams.get("pgherd_process_cpu_seconds_total")!.samples[0]!.value).toBeGreaterThan(0.05); // the busy loop, on a shared core
  const lag = fams.get("pgherd_event_loop_lag_seconds")!.samples;
  expect(lag.map((s) => s.labels.quantile)).toEqual(["0.5", "0.99", "1"]);
  expect(lag.find((s) => s.labels.quantile === "1")!.value).toBeGreaterThanOrEqual(0.49);
  expect(lag.find((s) => s.labels.quantile === "0.5")!.value).toBeLessThan(0.1);
});
