// Free loopback ports for the demo. Picked below the kernel's ephemeral range: between choosing
// a port and PostgreSQL binding it (seconds later, on a standby), the agents open many outgoing
// connections, and any of them could otherwise take the port as its source port.
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

const LOWEST = 20_000;

/**
 * Every port this process has handed out, never handed out again: a caller that picks two ports one
 * after the other (a test's two servers) must not get the same one twice, which two free-right-now
 * looks can return when the first port is not yet bound.
 */
const given = new Set<number>();

function ephemeralStart(): number {
  try {
    const first = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 1024 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/** Slices of the range: one per worker of `bun test --parallel` (the suite runs two). */
const SLICES = 8;

/**
 * Under `bun test --parallel` each worker is a process of its own, and `given` is per process: two
 * workers could pick one port at once, and the second server to bind it fails. So a worker
 * (BUN_TEST_WORKER_ID 1, 2, …, inherited by what it starts: the demo, agents) picks from its own
 * slice of the range only; outside the test runner the whole range.
 */
export function pickRange(low: number, top: number, worker: string | undefined): { low: number; top: number } {
  const id = Number(worker);
  if (!Number.isInteger(id) || id < 1) return { low, top };
  const size = Math.floor((top - low) / SLICES);
  const from = low + ((id - 1) % SLICES) * size;
  return { low: from, top: from + size };
}

function candidates(): () => number {
  const top = ephemeralStart();
  const slice = pickRange(LOWEST, top, process.env.BUN_TEST_WORKER_ID);
  // A slice too small (an ephemeral range that starts low): the whole range, shared by the workers;
  // a range too small to pick from (unusual sysctl): let the kernel choose.
  const r = slice.top - slice.low >= 1000 ? slice : { low: LOWEST, top };
  if (r.top - r.low < 1000) return () => 0;
  return () => r.low + Math.floor(Math.random() * (r.top - r.low));
}

const tcpTry = (host: string, port: number) =>
  new Promise<{ port: number; close: () => Promise<void> } | null>((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(null));
    s.listen({ host, port, exclusive: true }, () => {
      const a = s.address();
      const got = typeof a === "object" && a ? a.port : 0;
      resolve({ port: got, close: () => new Promise((r) => s.close(() => r())) });
    });
  });

/** `n` distinct TCP ports free on `host` right now (all held open together, then released). */
export async function freeTcpPorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const pick = candidates();
  const held: Array<{ port: number; close: () => Promise<void> }> = [];
  try {
    for (let tries = 0; held.length < n; tries++) {
      if (tries > 1000) throw new Error(`no ${n} free TCP ports on ${host}`);
      const got = await tcpTry(host, pick());
      if (got && !given.has(got.port)) held.push(got);
      else await got?.close();
    }
    for (const h of held) given.add(h.port);
    return held.map((h) => h.port);
  } finally {
    await Promise.all(held.map((h) => h.close()));
  }
}

/** A UDP port nobody has bound (a bind without SO_REUSEADDR fails if anyone holds it). */
export async function freeUdpPort(): Promise<number> {
  const pick = candidates();
  for (let tries = 0; tries < 1000; tries++) {
    const port = await new Promise<number>((resolve) => {
      const s = createSocket({ type: "udp4" });
      s.once("error", () => { s.close(); resolve(0); });
      s.bind(pick(), "0.0.0.0", () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (port && !given.has(port)) {
      given.add(port);
      return port;
    }
  }
  throw new Error("no free UDP port");
}
