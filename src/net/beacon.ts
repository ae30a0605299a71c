// UDP discovery beacon: periodically broadcasts a MAC'd announcement and reports authenticated,
// fresh, non-replayed announcements of other nodes. Datagram format is in beacon-codec.ts.
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import os from "node:os";
import type { Logger } from "../log.ts";
import { formatHostPort, parseHostPort, type HostPort } from "./addr.ts";
import { decodeAnnouncement, encodeAnnouncement, type Announcement, type BeaconRole } from "./beacon-codec.ts";
import { RejectLog } from "./rejects.ts";
import { ReplayCache } from "./replay-cache.ts";
import { BEACON_LIMITS, SourceBudget, type BudgetLimits } from "./source-budget.ts";

export type { Announcement, BeaconRole } from "./beacon-codec.ts";

export interface BeaconOptions {
  cluster: string; secret: string; nodeId: string; nodeName: string; role: BeaconRole;
  port: number; // UDP port shared by all agents on a host: bound with reuseAddr
  bindHost?: string; // default 0.0.0.0
  broadcast: string[]; // destination broadcast addresses
  peers: string[]; // static unicast destinations "host" or "host:port"
  meshAddr: () => string; // "host:port" to announce; a wildcard host is passed on as such (the receiver decides what to dial)
  intervalMs: number; maxAgeMs: number; // maxAgeMs: accepted |ts - now| and replay window
  // Announcements stamped earlier are refused (wall-clock ms; default: when start() ran). The replay
  // cache lives in memory, so this is what stops datagrams recorded before a restart from being replayed.
  notBefore?: number;
  maxBytes?: number; // default 2048
  limits?: BudgetLimits; // verification work per source (default BEACON_LIMITS)
  extra?: () => Record<string, unknown>; // extra announced fields, covered by the MAC
  log: Logger;
  onAnnouncement(a: Announcement, from: { address: string; port: number }): void;
}

/** Cluster members whose beacons the replay cache holds at the fastest rate settings allow. */
export const REPLAY_NODES = 16;

/**
 * Entries of the replay cache: REPLAY_NODES nodes, each sending every 0.9 × interval (the jitter's
 * shortest) with its clock up to max_age ahead (a nonce is kept until ts + max_age, so up to twice
 * max_age), at least 10,000. Past it new nonces are refused, never a live one dropped.
 */
export function replayCapacity(maxAgeMs: number, intervalMs: number): number {
  return Math.max(10_000, REPLAY_NODES * Math.ceil((2 * maxAgeMs) / (0.9 * intervalMs)));
}

/** Our own nonces still inside the window (sent every 0.9 × interval at the fastest), plus 256 for sendNow(). */
export function ownNonceCapacity(maxAgeMs: number, intervalMs: number): number {
  return Math.ceil(maxAgeMs / (0.9 * intervalMs)) + 256;
}

export class Beacon {
  private socket: dgram.Socket | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly rejectLog: RejectLog;
  private readonly replays: ReplayCache;
  private readonly ownNonces: ReplayCache; // ours, to tell loopback from a duplicate node id
  /** Copies of each of our own beacons that came back (verify: more than the destinations send back are replays). */
  private readonly ownReturns = new Map<string, number>();
  private readonly destinations: HostPort[] = [];
  private readonly maxBytes: number;
  private nAccepted = 0;
  private nSendErrors = 0;
  private readonly failing = new Set<string>(); // destinations whose last send failed
  private stopped = false;
  private notBefore = Infinity; // nothing is accepted before start()
  private startedMono = 0; // performance.now() at start()
  private readonly budget: SourceBudget;

  constructor(private readonly o: BeaconOptions) {
    this.rejectLog = new RejectLog(o.log);
    this.maxBytes = o.maxBytes ?? 2048;
    this.replays = new ReplayCache(replayCapacity(o.maxAgeMs, o.intervalMs), "refuse");
    this.ownNonces = new ReplayCache(ownNonceCapacity(o.maxAgeMs, o.intervalMs), "evict");
    this.budget = new SourceBudget(o.limits ?? BEACON_LIMITS, performance.now());
    for (const d of [...o.broadcast, ...o.peers]) {
      try {
        this.destinations.push(parseHostPort(d, o.port));
      } catch (e) {
        o.log.warn(`beacon: ignoring destination: ${(e as Error).message}`);
      }
    }
  }

  start(): Promise<void> {
    if (this.socket) return Promise.resolve();
    this.notBefore = this.o.notBefore ?? Date.now();
    this.startedMono = performance.now();
    const s = dgram.createSocket({ type: "udp4", reuseAddr: true });
    this.socket = s;
    s.on("message", (data, rinfo) => {
      try {
        this.receive(data, { address: rinfo.address, port: rinfo.port });
      } catch (e) {
        this.o.log.error(`beacon: unexpected error handling a datagram: ${(e as Error).message}`);
      }
    });
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => reject(new Error(`beacon cannot bind UDP ${formatHostPort(this.o.bindHost ?? "0.0.0.0", this.o.port)}: ${e.message}`));
      s.once("error", fail);
      s.bind(this.o.port, this.o.bindHost ?? "0.0.0.0", () => {
        s.off("error", fail);
        s.on("error", (e) => this.o.log.warn(`beacon socket error: ${e.message}`));
        s.setBroadcast(true); // without it sends to broadcast addresses fail with EACCES
        this.sendNow();
        resolve();
      });
    });
  }

  /** Announces immediately (e.g. after a state change) and restarts the interval. */
  sendNow(): void {
    if (this.stopped || !this.socket) return;
    if (this.timer) clearTimeout(this.timer);
    // ±10% jitter so agents started together don't stay in lockstep.
    this.timer = setTimeout(() => this.sendNow(), this.o.intervalMs * (0.9 + Math.random() * 0.2));
    this.timer.unref();
    let data: Buffer;
    try {
      const ts = Date.now();
      const nonce = randomBytes(16).toString("hex");
      data = encodeAnnouncement(this.o.secret, {
        cluster: this.o.cluster, nodeId: this.o.nodeId, name: this.o.nodeName, mesh: this.o.meshAddr(),
        role: this.o.role, ts, nonce, extra: this.o.extra?.() ?? {},
      });
      if (data.length > this.maxBytes) throw new Error(`announcement of ${data.length} bytes exceeds maxBytes ${this.maxBytes}`);
      this.ownNonces.add(nonce, ts + this.o.maxAgeMs);
      if (this.ownReturns.size > ownNonceCapacity(this.o.maxAgeMs, this.o.intervalMs)) {
        for (const k of this.ownReturns.keys()) if (!this.ownNonces.has(k)) this.ownReturns.delete(k);
      }
    } catch (e) {
      this.nSendErrors++;
      this.o.log.error(`beacon: cannot build announcement: ${(e as Error).message}`);
      return;
    }
    for (const d of this.destinations) this.sendTo(data, d);
  }

  rejects(): Record<string, number> {
    return this.rejectLog.snapshot();
  }

  accepted(): number {
    return this.nAccepted;
  }

  /** Failed sends (unreachable destination, no route, ...): counted, never thrown. */
  sendErrors(): number {
    return this.nSendErrors;
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const s = this.socket;
    this.socket = undefined;
    if (!s) return Promise.resolve();
    return new Promise((r) => {
      try {
        s.close(() => r());
      } catch {
        r(); // already closed
      }
    });
  }

  private sendTo(data: Buffer, d: HostPort): void {
    const dest = formatHostPort(d.host, d.port);
    const onError = (e: Error | null) => {
      if (!e) return void this.failing.delete(dest);
      this.nSendErrors++;
      // Warn when a destination starts failing, not on every interval.
      const level = this.failing.has(dest) ? "debug" : "warn";
      this.failing.add(dest);
      this.o.log[level](`beacon: send to ${dest} failed: ${e.message}`);
    };
    try {
      this.socket?.send(data, d.port, d.host, onError);
    } catch (e) {
      onError(e as Error);
    }
  }

  /** Cheap checks first: the source's budget before any parsing, the MAC before the schema. */
  private receive(data: Buffer, from: { address: string; port: number }): void {
    const t = performance.now();
    if (!this.budget.allows(from.address, t)) return this.rejectLog.count("rate-limited");
    const refused = this.verify(data, from);
    if (refused === undefined) this.budget.succeeded(from.address, t);
    else if (refused !== "self") this.budget.failed(from.address, t);
  }

  /** Accepts an announcement or returns why not. */
  private verify(data: Buffer, from: { address: string; port: number }): string | undefined {
    const remote = formatHostPort(from.address, from.port);
    const refuse = (reason: string, detail: string, level: "warn" | "debug" = "warn") => {
      this.rejectLog.add(reason, remote, detail, level);
      return reason;
    };
    if (data.length > this.maxBytes) return refuse("oversized", `${data.length} bytes`);
    const r = decodeAnnouncement(this.o.secret, this.o.cluster, data);
    if (!r.ok) return refuse(r.reason, r.detail, r.reason === "wrong-cluster" ? "debug" : "warn");
    const a = r.a;
    const now = Date.now();
    if (Math.abs(a.ts - now) > this.o.maxAgeMs) return refuse("stale", `ts off by ${a.ts - now} ms (clock skew?) from ${a.nodeId}`);
    // This agent's start on the wall clock as it reads now: a clock stepped back after the start
    // (a host booted with its clock ahead, then corrected) does not refuse every fresh beacon (review).
    const notBefore = this.o.notBefore ?? (this.notBefore === Infinity ? Infinity : Math.min(this.notBefore, Math.floor(now - (performance.now() - this.startedMono))));
    if (a.ts < notBefore) return refuse("before-start", `${a.nodeId} stamped it ${notBefore - a.ts} ms before this agent started (replayed?)`);
    if (a.nodeId === this.o.nodeId) {
      // Broadcasts loop back to the sender. A fresh nonce we never sent means another host uses our id.
      if (this.ownNonces.has(a.nonce)) {
        // Each destination sends a beacon back at most once (a broadcast loops back; a static peer
        // list may name this host): more copies are someone's replays, charged to their source's
        // budget like any other replay (review: they were verified in full, never charged).
        const n = (this.ownReturns.get(a.nonce) ?? 0) + 1;
        this.ownReturns.set(a.nonce, n);
        if (n > Math.max(1, this.destinations.length)) return refuse("replay", `our own beacon came back ${n} times`);
        this.rejectLog.count("self");
        return "self";
      }
      return refuse("duplicate-id", `node ${JSON.stringify(a.name)} announces our node id`);
    }
    // Keep each nonce until its ts can no longer pass the freshness check above.
    const seen = this.replays.add(`${a.nodeId}/${a.nonce}`, a.ts + this.o.maxAgeMs);
    if (seen === "seen") return refuse("replay", `nonce of ${a.nodeId} seen before`);
    if (seen === "full") return refuse("replay-cache-full", `${this.replays.size()} nonces inside the replay window; ${a.nodeId}'s refused`);
    try {
      parseHostPort(a.mesh);
    } catch {
      return refuse("malformed", `bad mesh address from ${a.nodeId}`);
    }
    this.nAccepted++;
    this.o.onAnnouncement(a, from);
    return undefined;
  }
}

/** Broadcast address of every non-internal IPv4 interface; loopback broadcast if there is none. */
export function defaultBroadcastAddresses(ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): string[] {
  const out = new Set<string>();
  for (const list of Object.values(ifaces)) {
    for (const i of list ?? []) {
      if (i.internal || i.family !== "IPv4") continue;
      const b = broadcastOf(i.address, i.netmask);
      if (b) out.add(b);
    }
  }
  return out.size ? [...out] : ["127.255.255.255"];
}

/** address | ~netmask; undefined for /31 and /32 links (no broadcast) or unparsable input. */
export function broadcastOf(address: string, netmask: string): string | undefined {
  const addr = ipv4ToInt(address);
  const mask = ipv4ToInt(netmask);
  if (addr === undefined || mask === undefined || mask >= 0xfffffffe) return undefined;
  return intToIpv4((addr | ~mask) >>> 0);
}

function ipv4ToInt(s: string): number | undefined {
  const p = s.split(".").map((x) => (/^\d{1,3}$/.test(x) ? Number(x) : NaN));
  if (p.length !== 4 || p.some((x) => !(x >= 0 && x <= 255))) return undefined;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
