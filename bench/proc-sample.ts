// /proc readings for the benches: resident memory and CPU ticks of a process, and which pgherd
// processes (agent, watchdog) run under a directory.
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
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

/**
 * One process's memory from /proc/PID/smaps_rollup (bytes). rss counts every resident page;
 * pss splits each shared page between the processes that map it; uss is what only this process
 * holds (Private_Clean + Private_Dirty): what killing it would free. anon is heap, JIT and stacks;
 * file is mapped files, almost all of it the binary's own pages (code, embedded sources), shared
 * by every process of the binary.
 */
export type MemSplit = { rss: number; pss: number; uss: number; anon: number; file: number };

export function memSplit(pid: number): MemSplit | null {
  try {
    const st = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(st)?.[1] ?? NaN) * 1024;
    const rss = kb("Rss");
    const anon = kb("Anonymous");
    return { rss, pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty"), anon, file: rss - anon };
  } catch {
    return null;
  }
}

const PAGE = 4096;

/**
 * Resident bytes of a set of processes with every page counted once: their anonymous pages
 * (private to each) plus the union of their resident file pages, a page being (file, offset).
 * This is the sum of PSS the processes would have on a host where nothing else maps the same
 * files, e.g. one host's agent + watchdog when the bench runs three hosts on one machine (there,
 * the measured PSS also divides the binary's pages with the other hosts' processes). Reads
 * /proc/PID/pagemap's present bit (no privilege needed for it); null if a process is gone.
 */
export function distinctResident(pids: readonly number[]): number | null {
  let anon = 0;
  const filePages = new Set<string>();
  for (const pid of pids) {
    const m = memSplit(pid);
    if (!m) return null;
    anon += m.anon;
    let maps: string;
    let fd: number;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, "utf8");
      fd = openSync(`/proc/${pid}/pagemap`, "r");
    } catch {
      return null;
    }
    try {
      for (const line of maps.split("\n")) {
        // start-end perms offset dev inode path; only file mappings (inode != 0)
        const f = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ (\d+)\s+(.*)$/.exec(line);
        if (!f || f[4] === "0") continue;
        const start = parseInt(f[1]!, 16);
        const pages = (parseInt(f[2]!, 16) - start) / PAGE;
        const firstPage = parseInt(f[3]!, 16) / PAGE;
        const buf = Buffer.alloc(pages * 8);
        if (readSync(fd, buf, 0, buf.length, (start / PAGE) * 8) !== buf.length) continue;
        for (let i = 0; i < pages; i++) {
          if ((buf.readUInt8(i * 8 + 7) & 0xa0) === 0xa0) filePages.add(`${f[4]}:${firstPage + i}`); // bits 63 and 61: present, a file page
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return anon + filePages.size * PAGE;
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

/** Medians over a run, in MB, and CPU % of one core over its wall time. */
export type Sampled = { rss: number; pss: number; uss: number; anon: number; file: number; pct: number };

/**
 * Samples `pids` once a second for `seconds`: per process the median of each memory figure and
 * its CPU % over the run, per group the median of its resident pages counted once (MB). A process
 * that left no sample (it exited) throws, naming it through `name`.
 */
export async function sampleRun<G>(pids: number[], groups: Map<G, number[]>, seconds: number, name: (pid: number) => string): Promise<{ per: Map<number, Sampled>; once: Map<G, number>; wall: number }> {
  const MB = 1048576;
  const cpu0 = new Map(pids.map((pid) => [pid, cpuSeconds(pid)!]));
  const mem = new Map<number, MemSplit[]>(pids.map((pid) => [pid, []]));
  const once = new Map<G, number[]>([...groups.keys()].map((g) => [g, []]));
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (const pid of pids) {
      const m = memSplit(pid);
      if (m) mem.get(pid)!.push(m);
    }
    for (const [g, members] of groups) {
      const b = distinctResident(members);
      if (b !== null) once.get(g)!.push(b);
    }
    await Bun.sleep(1000);
  }
  const wall = (performance.now() - t0) / 1000;
  const per = new Map<number, Sampled>();
  for (const pid of pids) {
    const ms = mem.get(pid)!;
    if (ms.length === 0) throw new Error(`${name(pid)} (pid ${pid}) exited during the run`);
    const m = (k: keyof MemSplit) => median(ms.map((x) => x[k])) / MB;
    per.set(pid, { rss: m("rss"), pss: m("pss"), uss: m("uss"), anon: m("anon"), file: m("file"), pct: ((cpuSeconds(pid)! - cpu0.get(pid)!) / wall) * 100 });
  }
  return { per, once: new Map([...once].map(([g, xs]) => [g, median(xs) / MB])), wall };
}
