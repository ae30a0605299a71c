// /proc readings for the benches: resident memory and CPU ticks of a process, and which pgherd
// processes (agent, watchdog) run under a directory.
import { readFileSync } from "node:fs";
import { processesUnder } from "../src/demo/teardown.ts";

const TICKS_PER_S = 100; // USER_HZ on Linux

export type Kind = "agent" | "watchdog";
export type PgherdProc = { pid: number; kind: Kind; node: string };

/** pgherd agents and watchdogs with an argument under `dir`; node = the first path part below it. */
export function pgherdProcesses(dir: string): PgherdProc[] {
  const out: PgherdProc[] = [];
  for (const p of processesUnder(dir)) {
    const kind = p.argv.find((a) => a === "agent" || a === "watchdog") as Kind | undefined;
    const path = p.argv.find((a) => a.startsWith(`${dir}/`));
    if (!kind || !path) continue;
    out.push({ pid: p.pid, kind, node: path.slice(dir.length + 1).split("/")[0]! });
  }
  return out.sort((a, b) => a.node.localeCompare(b.node) || a.kind.localeCompare(b.kind));
}

/** VmRSS in bytes, or null when the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resident memory split (bytes): anonymous (heap, JIT, stacks) and file-backed (the binary's pages, shared by every process of it). */
export function rssSplit(pid: number): { anon: number; file: number } | null {
  try {
    const st = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? NaN) * 1024;
    return { anon: kb("RssAnon"), file: kb("RssFile") };
  } catch {
    return null;
  }
}

/** utime + stime in seconds, or null when the process is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_S; // fields 14 and 15 of stat(5)
  } catch {
    return null;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
