// Authenticated TCP peer mesh: listens, keeps dialling the addresses it is told about, and keeps
// exactly one live connection per peer. Per-connection protocol is in conn.ts.
import net from "node:net";
import type { z } from "zod";
import type { Logger } from "../log.ts";
import { formatHostPort, parseHostPort, unmappedHost, type HostPort } from "./addr.ts";
import { backoffDelay } from "./backoff.ts";
import { Conn, type ConnHost, type ConnSettings } from "./conn.ts";
import { RejectLog } from "./rejects.ts";

export interface PeerUp {
  id: string; name: string; addr: string; remoteAddress: string; remoteHost: string; localHost: string;
}

export interface MeshOptions {
  cluster: string; secret: string; nodeId: string; nodeName: string;
  listenHost: string; listenPort: number; // port 0 allowed (tests); address() tells the real one
  advertise?: string; // "host:port" others should dial; default listenHost:port
  maxFrameBytes: number;
  pingMs: number; deadMs: number; // ping every pingMs; a peer silent for deadMs is dead
  handshakeMs: number; // whole handshake deadline, TCP connect included
  maxBufferedBytes: number; // a peer whose unsent bytes exceed this is disconnected
  backoffMinMs: number; backoffMaxMs: number;
  /** How long an address that proved to be our own listener waits before it is dialled again (default 60 s). */
  selfRecheckMs?: number;
  /** A target waiting out its backoff is tried early on dial() (the peer's beacon), at most once per this long (default 1 s); its backoff's own tries do not count. */
  earlyRetryMs?: number;
  messageSchema: z.ZodType; // validates every decrypted application message
  log: Logger;
  onMessage(peerId: string, msg: unknown): void;
  /** `addr`: its advertised mesh address (covered by the handshake proof; a wildcard host is replaced
   *  by remoteHost); `remoteAddress` "ip:port" and `remoteHost` (IPv4-mapped prefix removed) of the
   *  authenticated connection; `localHost`: our IP on that connection. */
  onPeerUp(peer: PeerUp): void;
  onPeerDown(peerId: string, reason: string): void;
  onReject?(reason: string, remote: string): void;
}

/** Inbound unauthenticated connections allowed at once. At the cap a newcomer evicts the oldest
 *  handshake of the busiest source, so a flood from a few addresses cannot lock out a peer. */
const MAX_PENDING = 64;
/** Inbound unauthenticated connections per source address (a peer needs one or two at a time). */
const MAX_PENDING_PER_SOURCE = 8;
/** Outbound handshakes in progress at once; a separate budget, inbound floods never touch it. */
const MAX_DIALING = 32;
/** Default of MeshOptions.earlyRetryMs: however often beacons come (discovery.interval_ms may be 10 ms), a target is tried at most this often early. */
const EARLY_RETRY_MS = 1000;
/** Default of MeshOptions.selfRecheckMs: a loopback handshake a minute for a peer list naming this node. */
const SELF_RECHECK_MS = 60_000;

interface Target {
  addr: string;
  hp: HostPort;
  expectedId?: string;
  peerId?: string; // learned from the first successful handshake when no id was expected
  attempt: number;
  /** The last handshake proved the address is our own listener: the next dial waits selfRecheckMs. */
  selfSeen?: boolean;
  selfLogged?: boolean; // the first such finding is logged at info, later ones at debug
  timer?: ReturnType<typeof setTimeout>;
  conn?: Conn;
  /** When the last early try (dial() during the backoff) began (performance.now()). */
  earlyAt?: number;
}

export class Mesh {
  private readonly log: Logger;
  private readonly rejectLog: RejectLog;
  private readonly settings: ConnSettings;
  private readonly host: ConnHost;
  private server: net.Server | undefined;
  private readonly conns = new Set<Conn>();
  private readonly active = new Map<string, Conn>(); // peer id → the one connection in use
  private readonly targets = new Map<string, Target>();
  private readonly targetOf = new Map<Conn, Target>();
  private readonly pending = new Map<string, Set<Conn>>(); // source host → inbound handshakes (oldest first)
  private readonly sourceOf = new Map<Conn, string>(); // inbound handshakes only
  private readonly dialing = new Set<Conn>(); // outbound handshakes
  private stopping: Promise<void> | undefined;

  constructor(private readonly o: MeshOptions) {
    this.log = o.log;
    this.rejectLog = new RejectLog(o.log);
    this.settings = {
      cluster: o.cluster, secret: o.secret, nodeId: o.nodeId, nodeName: o.nodeName,
      advertise: () => o.advertise ?? formatHostPort(o.listenHost, this.address().port),
      maxFrameBytes: o.maxFrameBytes, handshakeMs: o.handshakeMs, pingMs: o.pingMs, deadMs: o.deadMs,
      maxBufferedBytes: o.maxBufferedBytes, messageSchema: o.messageSchema,
    };
    this.host = {
      authenticated: (c) => {
        this.settle(c);
        this.onAuthenticated(c);
      },
      message: (c, msg) => this.callback("onMessage", () => o.onMessage(c.peer!.nodeId, msg)),
      reject: (reason, remote, detail) => {
        this.rejectLog.add(reason, remote, detail, reason === "self" ? "debug" : "warn");
        if (o.onReject) this.callback("onReject", () => o.onReject!(reason, remote));
      },
      closed: (c, reason) => {
        this.settle(c);
        this.onClosed(c, reason);
      },
      self: (c) => this.onSelf(c),
    };
  }

  start(): Promise<void> {
    if (this.server) return Promise.resolve();
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    server.on("error", (e) => this.log.error(`mesh listener error: ${e.message}`));
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => reject(new Error(`mesh cannot listen on ${formatHostPort(this.o.listenHost, this.o.listenPort)}: ${e.message}`));
      server.once("error", fail);
      server.listen(this.o.listenPort, this.o.listenHost, () => {
        server.off("error", fail);
        this.log.info(`mesh listening on ${formatHostPort(this.o.listenHost, this.address().port)}`);
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    const a = this.server?.address();
    if (a && typeof a === "object") return { host: a.address, port: a.port };
    return { host: this.o.listenHost, port: this.o.listenPort };
  }

  /**
   * Keep (re)connecting to `addr` until forget()/stop(); idempotent. Called again for a target that
   * waits out its backoff (the peer's authenticated beacon: it is back, e.g. its agent restarted),
   * it is tried now instead of up to backoffMaxMs later, at most once per earlyRetryMs (the
   * backoff's own tries do not count: a try that found the agent still down just before its
   * restart must not hold off the one its first beacon asks for); a failed try backs off as before.
   */
  dial(addr: string, expectedId?: string): void {
    if (this.stopping) return;
    const known = this.targets.get(addr);
    if (known) {
      if (expectedId === undefined || expectedId === known.expectedId) {
        const earlyOk = performance.now() - (known.earlyAt ?? Number.NEGATIVE_INFINITY) >= (this.o.earlyRetryMs ?? EARLY_RETRY_MS);
        if (!known.conn && known.timer && !known.selfSeen && known.attempt > 0 && earlyOk) {
          clearTimeout(known.timer);
          known.earlyAt = performance.now();
          this.attempt(known);
        }
        return;
      }
      known.expectedId = expectedId;
      // A new expectation is a new question: a target parked as ourselves is asked again now.
      if (!known.conn && (known.selfSeen || !known.timer)) {
        clearTimeout(known.timer);
        known.selfSeen = false;
        this.attempt(known);
      }
      return;
    }
    let hp: HostPort;
    try {
      hp = parseHostPort(addr);
    } catch (e) {
      this.log.warn(`mesh: not dialling: ${(e as Error).message}`);
      return;
    }
    const t: Target = { addr, hp, expectedId, attempt: 0 };
    this.targets.set(addr, t);
    this.attempt(t);
  }

  /** Stop redialling `addr`. An established connection stays up (the peer may dial us anyway). */
  forget(addr: string): void {
    const t = this.targets.get(addr);
    if (!t) return;
    this.targets.delete(addr);
    if (t.timer) clearTimeout(t.timer);
    if (t.conn && !t.conn.authenticated) t.conn.close("forgotten");
  }

  send(peerId: string, msg: unknown): boolean {
    const c = this.active.get(peerId);
    if (!c) return false;
    try {
      return c.send(msg);
    } catch (e) {
      this.log.warn(`mesh: message to ${peerId} not sent: ${(e as Error).message}`);
      return false;
    }
  }

  connected(): string[] {
    return [...this.active.keys()];
  }

  /** The remote IP of the authenticated connection in use to `peerId` (IPv4-mapped prefix removed). */
  remoteHost(peerId: string): string | undefined {
    const c = this.active.get(peerId);
    return c ? unmappedHost(c.socketRemoteHost) : undefined;
  }

  /** The addresses this mesh keeps dialling (dial() until forget()), sorted: for status and tests. */
  dialling(): string[] {
    return [...this.targets.keys()].sort();
  }

  /** Open TCP connections of any state (handshaking, in use, retiring duplicates): for metrics and tests. */
  connectionCount(): number {
    return this.conns.size;
  }

  rejects(): Record<string, number> {
    return this.rejectLog.snapshot();
  }

  /** Closes listener and connections and stops timers; no peer events fire once stopping. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const t of this.targets.values()) if (t.timer) clearTimeout(t.timer);
      this.targets.clear();
      for (const c of this.conns) c.close("stopped");
      const server = this.server;
      if (server) await new Promise<void>((r) => server.close(() => r()));
    })();
    return this.stopping;
  }

  private accept(socket: net.Socket): void {
    const source = unmappedHost(socket.remoteAddress ?? "?");
    const remote = formatHostPort(source, socket.remotePort ?? 0);
    socket.on("error", () => {}); // Conn adds its own handler; this covers the early-destroy paths below
    if (this.stopping) return void socket.destroy();
    const mine = this.pending.get(source) ?? new Set<Conn>();
    if (mine.size >= MAX_PENDING_PER_SOURCE) {
      this.host.reject("too-many-pending", remote, `${MAX_PENDING_PER_SOURCE} handshakes from ${source} already in progress`);
      return void socket.destroy();
    }
    if (this.sourceOf.size >= MAX_PENDING) this.evictPending();
    const c = new Conn(socket, "acceptor", this.settings, this.host, remote);
    this.conns.add(c);
    mine.add(c);
    this.pending.set(source, mine);
    this.sourceOf.set(c, source);
  }

  /**
   * Closes the oldest handshake of the source holding the most (ties: the one seen first), among
   * those that sent no valid hello yet if there are any: a peer whose hello passed is a real one
   * more likely than a silent socket, and many addresses (an IPv6 /64) cost an attacker nothing.
   */
  private evictPending(): void {
    const victim = this.oldestOfBusiest((c) => c.awaitingHello) ?? this.oldestOfBusiest(() => true);
    if (!victim) return;
    victim.evict(`${MAX_PENDING} handshakes in progress; evicted the oldest of the busiest source`);
    this.settle(victim); // now, not when its socket's close event comes: the newcomer takes the slot
  }

  private oldestOfBusiest(which: (c: Conn) => boolean): Conn | undefined {
    let best: Conn[] = [];
    for (const set of this.pending.values()) {
      const xs = [...set].filter(which);
      if (xs.length > best.length) best = xs;
    }
    return best[0];
  }

  /** Drops a connection from the handshake budgets once it is authenticated or closed; idempotent. */
  private settle(c: Conn): void {
    this.dialing.delete(c);
    const source = this.sourceOf.get(c);
    if (source === undefined) return;
    this.sourceOf.delete(c);
    const set = this.pending.get(source)!;
    set.delete(c);
    if (set.size === 0) this.pending.delete(source);
  }

  private attempt(t: Target): void {
    t.timer = undefined;
    if (this.stopping || this.targets.get(t.addr) !== t || t.conn || t.expectedId === this.o.nodeId) return;
    t.selfSeen = false; // until this dial proves it again
    const id = t.expectedId ?? t.peerId;
    if (id !== undefined && this.active.has(id)) return; // redialled from onClosed when that peer goes down
    if (this.dialing.size >= MAX_DIALING) return this.schedule(t);
    const socket = net.connect({ host: t.hp.host, port: t.hp.port });
    const c = new Conn(socket, "dialer", this.settings, this.host, t.addr, t.expectedId);
    this.conns.add(c);
    this.dialing.add(c);
    this.targetOf.set(c, t);
    t.conn = c;
  }

  private schedule(t: Target): void {
    if (this.stopping || t.timer || t.conn || t.expectedId === this.o.nodeId || this.targets.get(t.addr) !== t) return;
    const delay = t.selfSeen ? (this.o.selfRecheckMs ?? SELF_RECHECK_MS) : backoffDelay(t.attempt++, this.o.backoffMinMs, this.o.backoffMaxMs);
    t.timer = setTimeout(() => this.attempt(t), delay);
    t.timer.unref();
  }

  private onAuthenticated(c: Conn): void {
    const peer = c.peer!;
    const t = this.targetOf.get(c);
    if (t) {
      t.attempt = 0;
      if (t.expectedId === undefined) t.peerId = peer.nodeId;
    }
    const current = this.active.get(peer.nodeId);
    if (!current) {
      this.active.set(peer.nodeId, c);
      this.log.info(`mesh: peer ${peer.nodeId} (${peer.name}) up via ${c.remote} as ${c.role}`);
      const up: PeerUp = {
        id: peer.nodeId, name: peer.name, addr: c.peerAddr, remoteAddress: c.socketRemote,
        remoteHost: unmappedHost(c.socketRemoteHost), localHost: c.socketLocalHost,
      };
      this.callback("onPeerUp", () => this.o.onPeerUp(up));
      return;
    }
    // Both ends apply the same rule so they converge on the same connection: the one dialled by
    // the lower node id; if both were dialled by the same node, the newer one (the older is
    // usually a leftover of a restarted peer). The loser drains before closing; no peer events.
    const keepNew = c.dialerId !== current.dialerId ? c.dialerId < current.dialerId : true;
    const [winner, loser] = keepNew ? [c, current] : [current, c];
    this.active.set(peer.nodeId, winner);
    this.log.debug(`mesh: duplicate connection to ${peer.nodeId}: keeping the one dialled by ${winner.dialerId}`);
    loser.retire();
  }

  /**
   * A dial reached our own listener, proved by the acceptor's proof (conn.ts): static peer lists
   * usually include the local node. The address is asked again after selfRecheckMs, never given up
   * for good: it may change hands, and whoever relays our own bytes back to us can make a real
   * peer's address look like ours. A target expecting another node never gets here (its dial
   * fails as wrong-peer first, then backs off as usual); the check below keeps it that way.
   */
  private onSelf(c: Conn): void {
    const t = this.targetOf.get(c);
    if (!t || (t.expectedId !== undefined && t.expectedId !== this.o.nodeId)) return;
    t.selfSeen = true;
    const every = Math.round((this.o.selfRecheckMs ?? SELF_RECHECK_MS) / 1000);
    this.log[t.selfLogged ? "debug" : "info"](`mesh: ${t.addr} is this node itself; dialling it again every ${every} s`);
    t.selfLogged = true;
  }

  private onClosed(c: Conn, reason: string): void {
    this.conns.delete(c);
    const t = this.targetOf.get(c);
    this.targetOf.delete(c);
    if (t && t.conn === c) t.conn = undefined;
    const id = c.peer?.nodeId;
    if (id !== undefined && this.active.get(id) === c) {
      this.active.delete(id);
      if (!this.stopping) {
        this.log.info(`mesh: peer ${id} down: ${reason}`);
        this.callback("onPeerDown", () => this.o.onPeerDown(id, reason));
        for (const other of this.targets.values()) if ((other.expectedId ?? other.peerId) === id) this.schedule(other);
      }
    }
    if (t) {
      if (reason.startsWith("connect-")) this.log.debug(`mesh: dial ${t.addr}: ${reason}`);
      this.schedule(t);
    }
  }

  /** Application callbacks must not break the mesh's bookkeeping. */
  private callback(name: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.error(`mesh: ${name} handler threw: ${(e as Error).message}`);
    }
  }
}
