// Process series for GET /metrics: resident memory (RSS, and PSS/USS from smaps_rollup: the
// agent and its watchdog are one binary, so its code pages count in both processes' RSS), heap,
// CPU time and event-loop lag. The lag sampler is one unref'd timer (every LAG_TICK_MS) that
// records how late it fired; the last LAG_WINDOW samples (60 s) give p50/p99. Started on first import, so from the API server's start.
import { readFileSync } from "node:fs";

const LAG_TICK_MS = 500;
const LAG_WINDOW = 120;

const lags = new Float64Array(LAG_WINDOW);
let count = 0;
let expected = performance.now() + LAG_TICK_MS;

function sample(): void {
  const now = performance.now();
  lags[count % LAG_WINDOW] = Math.max(0, now - expected);
  count++;
  expected = now + LAG_TICK_MS;
  setTimeout(sample, LAG_TICK_MS).unref();
}
setTimeout(sample, LAG_TICK_MS).unref();

/** Event-loop lag quantiles (ms) over the last 60 s; null before the first sample. */
export function eventLoopLag(): { p50: number; p99: number; max: number; samples: number } | null {
  const n = Math.min(count, LAG_WINDOW);
  if (n === 0) return null;
  const s = Array.from(lags.subarray(0, n)).sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(n - 1, Math.ceil(p * n) - 1)]!;
  return { p50: q(0.5), p99: q(0.99), max: s[n - 1]!, samples: n };
}

/** Pss and USS (Private_Clean + Private_Dirty) in bytes from /proc/self/smaps_rollup; null where there is none. */
export function proportionalMemory(): { pss: number; uss: number } | null {
  let text: string;
  try {
    text = readFileSync("/proc/self/smaps_rollup", "utf8");
  } catch {
    return null;
  }
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
  const pss = kb("Pss");
  const uss = kb("Private_Clean") + kb("Private_Dirty");
  return Number.isFinite(pss) && Number.isFinite(uss) ? { pss, uss } : null;
}

function series(name: string, type: "gauge" | "counter", help: string, value: number): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`];
}

/** Prometheus text lines for this process. */
export function processMetricLines(): string[] {
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  const lag = eventLoopLag();
  const out = [
    ...series("pgherd_process_resident_memory_bytes", "gauge", "Resident set size of the agent process.", mem.rss),
    ...series("pgherd_process_heap_used_bytes", "gauge", "JavaScript heap in use.", mem.heapUsed),
    ...series("pgherd_process_heap_total_bytes", "gauge", "JavaScript heap size.", mem.heapTotal),
    ...series("pgherd_process_cpu_seconds_total", "counter", "User and system CPU time of the agent process.", (cpu.user + cpu.system) / 1e6),
  ];
  const prop = proportionalMemory();
  if (prop) {
    out.push(
      ...series("pgherd_process_proportional_memory_bytes", "gauge", "PSS: resident memory with each shared page divided among the processes that map it.", prop.pss),
      ...series("pgherd_process_unique_memory_bytes", "gauge", "USS: resident memory only this process holds.", prop.uss),
    );
  }
  if (lag) {
    out.push(
      `# HELP pgherd_event_loop_lag_seconds How late a ${LAG_TICK_MS} ms timer fired, over the last ${(LAG_TICK_MS * LAG_WINDOW) / 1000} s.`,
      "# TYPE pgherd_event_loop_lag_seconds gauge",
      `pgherd_event_loop_lag_seconds{quantile="0.5"} ${lag.p50 / 1000}`,
      `pgherd_event_loop_lag_seconds{quantile="0.99"} ${lag.p99 / 1000}`,
      `pgherd_event_loop_lag_seconds{quantile="1"} ${lag.max / 1000}`,
    );
  }
  return out;
}
